"""Train PPO with the adaptive KL penalty on CartPole and watch β adapt.

python examples/quickstart.py
"""

from stable_baselines3.common.evaluation import evaluate_policy

from sb3_ppo_variants import PPOVariant

model = PPOVariant("MlpPolicy", "CartPole-v1", objective="adaptive_kl", kl_target=0.01, seed=0, verbose=1)
model.learn(5e4)  # logs train/kl (mean exact KL[π_old ‖ π_θ] of each update) and train/kl_coef (β)

print(f"β after training: {model.kl_coef:.4g}")
mean_return, std_return = evaluate_policy(model, model.get_env(), n_eval_episodes=10)
print(f"evaluation return: {mean_return:.1f} ± {std_return:.1f}")

model.save("ppo_adaptive_kl_cartpole")  # β and the objective are saved with the model
model = PPOVariant.load("ppo_adaptive_kl_cartpole", env=model.get_env())
print(f"β after loading: {model.kl_coef:.4g}")
