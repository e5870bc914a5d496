"""Train every surrogate objective of the PPO paper on CartPole-v1 and print their evaluation returns.

    python examples/compare_objectives_cartpole.py [--timesteps 100000]

Uses rl-zoo's tuned PPO hyperparameters for CartPole-v1 (8 envs, 100k steps reach 500 with SB3 PPO).
"""

import argparse
import time

from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.evaluation import evaluate_policy

from sb3_ppo_variants import OBJECTIVES, PPOVariant

# rl-zoo's hyperparameters for CartPole-v1 (rl_zoo3/hyperparams/ppo.yml); lin_x means x * progress_remaining
ZOO_CARTPOLE = dict(
    n_steps=32,
    batch_size=256,
    gae_lambda=0.8,
    gamma=0.98,
    n_epochs=20,
    ent_coef=0.0,
    learning_rate=lambda progress: 1e-3 * progress,
    clip_range=lambda progress: 0.2 * progress,
)

parser = argparse.ArgumentParser()
parser.add_argument("--timesteps", type=int, default=100_000)
parser.add_argument("--seed", type=int, default=0)
args = parser.parse_args()

rows = []
for objective in OBJECTIVES:
    start = time.perf_counter()
    env = make_vec_env("CartPole-v1", n_envs=8, seed=args.seed)
    model = PPOVariant("MlpPolicy", env, objective=objective, seed=args.seed, **ZOO_CARTPOLE)
    model.learn(args.timesteps, progress_bar=True)
    mean_return, std_return = evaluate_policy(model, env, n_eval_episodes=20, deterministic=True)
    rows.append((objective, mean_return, std_return, model.kl_coef, time.perf_counter() - start))

print(f"\nCartPole-v1, {args.timesteps} steps, seed {args.seed}, deterministic evaluation over 20 episodes\n")
print(f"| {'objective':<12} | {'return':>15} | {'final β':>8} | {'time (s)':>8} |")
print(f"|{'-' * 14}|{'-' * 17}|{'-' * 10}|{'-' * 10}|")
for objective, mean_return, std_return, kl_coef, seconds in rows:
    print(f"| {objective:<12} | {mean_return:7.1f} ± {std_return:5.1f} | {kl_coef:8.3g} | {seconds:8.1f} |")
