"""
PPOVariant's rollout collection (the fast loop of sb3_ppo_variants.rollout, or SB3's loop where the fast one does not
apply) must give exactly SB3 PPO's training: with objective="clip" and the same seed, the same parameters and optimizer
state (bitwise), rollout buffer, RNG streams, episode statistics, and the same ``self.locals`` seen by callbacks.
"""

import copy
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, StopTrainingOnMaxEpisodes
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv, IdentityEnv, SimpleMultiObsEnv
from stable_baselines3.common.torch_layers import FlattenExtractor
from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

from sb3_ppo_variants import PPOVariant, rollout

BUFFER_FIELDS = ("observations", "actions", "rewards", "episode_starts", "values", "log_probs", "advantages", "returns")


class SpyPaths:
    """Counts the rollouts collected by the fast loop and by SB3's loop."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch):
        self.fast = self.sb3 = 0
        fast, sb3 = rollout._collect_rollouts_fast, rollout.sb3_collect_rollouts

        def count_fast(*args: Any) -> bool:
            self.fast += 1
            return fast(*args)

        def count_sb3(*args: Any) -> bool:
            self.sb3 += 1
            return sb3(*args)

        monkeypatch.setattr(rollout, "_collect_rollouts_fast", count_fast)
        monkeypatch.setattr(rollout, "sb3_collect_rollouts", count_sb3)


@pytest.fixture
def paths(monkeypatch: pytest.MonkeyPatch) -> SpyPaths:
    return SpyPaths(monkeypatch)


def train(
    algo: type[BaseAlgorithm],
    make_env: Callable[[], Any],
    total_timesteps: int,
    callback: BaseCallback | None = None,
    policy: str = "MlpPolicy",
    **kwargs: Any,
) -> tuple[BaseAlgorithm, dict[str, Any]]:
    """Train one model; return it with the global RNG states right after ``learn``."""
    model = algo(policy, make_env(), seed=3, device="cpu", **kwargs)
    model.learn(total_timesteps, callback=callback)
    rng = {"torch": th.get_rng_state(), "numpy": np.random.get_state()}
    return model, rng


def assert_same_training(sb3_ppo: BaseAlgorithm, sb3_rng: dict, variant: BaseAlgorithm, variant_rng: dict) -> None:
    """Bitwise the same parameters, optimizer state, rollout buffer, RNG streams, counters and episode statistics."""
    assert variant.num_timesteps == sb3_ppo.num_timesteps
    assert variant._n_updates == sb3_ppo._n_updates
    sb3_state, variant_state = sb3_ppo.policy.state_dict(), variant.policy.state_dict()
    assert sb3_state.keys() == variant_state.keys()
    for name in sb3_state:
        assert th.equal(sb3_state[name], variant_state[name]), name
    sb3_optimizer, variant_optimizer = sb3_ppo.policy.optimizer.state_dict(), variant.policy.optimizer.state_dict()
    assert sb3_optimizer["state"].keys() == variant_optimizer["state"].keys()
    for index, state in sb3_optimizer["state"].items():
        for key, value in state.items():
            assert th.equal(value, variant_optimizer["state"][index][key]), (index, key)
    sb3_buffer, variant_buffer = sb3_ppo.rollout_buffer, variant.rollout_buffer
    assert (variant_buffer.pos, variant_buffer.full) == (sb3_buffer.pos, sb3_buffer.full)
    for field in BUFFER_FIELDS:
        sb3_data, variant_data = sb3_buffer.__dict__[field], variant_buffer.__dict__[field]
        if isinstance(sb3_data, dict):  # DictRolloutBuffer observations
            assert sb3_data.keys() == variant_data.keys()
            for key in sb3_data:
                np.testing.assert_array_equal(variant_data[key], sb3_data[key], strict=True, err_msg=f"{field}[{key}]")
        else:
            np.testing.assert_array_equal(variant_data, sb3_data, strict=True, err_msg=field)
    assert th.equal(variant_rng["torch"], sb3_rng["torch"])
    assert_equal(variant_rng["numpy"], sb3_rng["numpy"], "numpy RNG")
    assert_equal(variant._last_obs, sb3_ppo._last_obs, "_last_obs")
    np.testing.assert_array_equal(variant._last_episode_starts, sb3_ppo._last_episode_starts, strict=True)
    episodes = [[(info["r"], info["l"]) for info in model.ep_info_buffer] for model in (sb3_ppo, variant)]
    assert episodes[0] == episodes[1]


def assert_equal(actual: Any, expected: Any, where: str) -> None:
    """Exact equality of nested containers of arrays, tensors and scalars (Monitor's wall-clock ``t`` excepted)."""
    assert type(actual) is type(expected), f"{where}: {type(actual)} != {type(expected)}"
    if isinstance(expected, th.Tensor):
        assert actual.dtype == expected.dtype and th.equal(actual, expected), where
    elif isinstance(expected, np.ndarray):
        np.testing.assert_array_equal(actual, expected, strict=True, err_msg=where)
    elif isinstance(expected, dict):
        assert actual.keys() == expected.keys(), where
        for key in expected:
            if key != "t":
                assert_equal(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for index, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_equal(a, e, f"{where}[{index}]")
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def make_env(env_id: str, n_envs: int = 1, normalize: bool = False, **env_kwargs: Any) -> Callable[[], Any]:
    def build() -> Any:
        env = make_vec_env(env_id, n_envs=n_envs, seed=5, env_kwargs=env_kwargs or None)
        return VecNormalize(env, gamma=0.9) if normalize else env

    return build


def make_custom_env(env_class: Callable[[], gym.Env], n_envs: int = 1) -> Callable[[], Any]:
    def build() -> Any:
        np.random.seed(11)  # SimpleMultiObsEnv draws its observation table from the global RNG at creation
        return make_vec_env(env_class, n_envs=n_envs, seed=5)

    return build


# name: (environment factory, PPO kwargs, total timesteps, fast loop expected)
CASES: dict[str, tuple[Callable[[], Any], dict[str, Any], int, bool]] = {
    # Box actions: Gaussian policy and clipping to the bounds; Pendulum only ends by its 200-step time limit
    "pendulum": (make_env("Pendulum-v1"), dict(n_steps=128, batch_size=64, n_epochs=2), 512, True),
    # Discrete actions, terminations
    "cartpole": (make_env("CartPole-v1"), dict(n_steps=64, batch_size=32, n_epochs=2), 256, True),
    # several envs; truncation at 15 steps (bootstrapped with the terminal value) mixed with terminations
    "cartpole_4_envs_time_limit": (
        make_env("CartPole-v1", n_envs=4, max_episode_steps=15),
        dict(n_steps=32, batch_size=64, n_epochs=2),
        384,
        True,
    ),
    # several envs, truncation at 30 steps (every episode is bootstrapped), VecNormalize, value clipping
    "pendulum_3_envs_time_limit_vecnormalize_vf_clip": (
        make_env("Pendulum-v1", n_envs=3, normalize=True, max_episode_steps=30),
        dict(n_steps=40, batch_size=40, n_epochs=2, clip_range_vf=0.2, ent_coef=0.01),
        360,
        True,
    ),
    # gSDE (noise resampled every 4 steps) and value clipping: SB3's loop
    "pendulum_gsde_vf_clip": (
        make_env("Pendulum-v1", max_episode_steps=50),
        dict(n_steps=64, batch_size=32, n_epochs=2, use_sde=True, sde_sample_freq=4, clip_range_vf=0.2),
        256,
        False,
    ),
    # separate actor and critic feature extractors, ReLU, another net_arch: still the fast loop
    "cartpole_separate_extractors_relu": (
        make_env("CartPole-v1", n_envs=2),
        dict(
            n_steps=32,
            batch_size=32,
            n_epochs=2,
            policy_kwargs=dict(share_features_extractor=False, activation_fn=th.nn.ReLU, net_arch=dict(pi=[32], vf=[16, 16])),
        ),
        192,
        True,
    ),
    # Discrete observations (one-hot encoded), several envs
    "discrete_observations": (
        make_custom_env(lambda: IdentityEnv(4, ep_length=10), n_envs=2),
        dict(n_steps=16, batch_size=16, n_epochs=2),
        96,
        True,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_rollouts_match_sb3_ppo(case: str, paths: SpyPaths) -> None:
    make, kwargs, total_timesteps, fast = CASES[case]
    sb3_ppo, sb3_rng = train(PPO, make, total_timesteps, **kwargs)
    assert paths.fast == paths.sb3 == 0  # SB3 PPO does not go through this package
    variant, variant_rng = train(PPOVariant, make, total_timesteps, **kwargs)
    assert variant._n_updates >= 2
    assert_same_training(sb3_ppo, sb3_rng, variant, variant_rng)
    rollouts = total_timesteps // (kwargs["n_steps"] * variant.n_envs)
    assert (paths.fast, paths.sb3) == ((rollouts, 0) if fast else (0, rollouts))
    if isinstance(variant.env, VecNormalize):
        for name in ("obs_rms", "ret_rms"):
            sb3_rms, variant_rms = getattr(sb3_ppo.env, name), getattr(variant.env, name)
            assert_equal(
                (variant_rms.mean, variant_rms.var, variant_rms.count), (sb3_rms.mean, sb3_rms.var, sb3_rms.count), name
            )


class CustomFlattenExtractor(FlattenExtractor):
    """A custom features extractor (same numbers as FlattenExtractor): not covered by the fast loop."""


def fake_image_env() -> gym.Env:
    env = FakeImageEnv(screen_height=36, screen_width=36, n_channels=1, discrete=False)
    env.observation_space.seed(0)  # its observations are samples of its observation space
    return env


# Cases the fast loop does not cover: SB3's loop runs, with SB3's results.
FALLBACK_CASES: dict[str, tuple[Callable[[], Any], str, dict[str, Any]]] = {
    "dict_observations": (make_custom_env(lambda: SimpleMultiObsEnv(random_start=True), n_envs=2), "MultiInputPolicy", {}),
    "cnn_policy": (
        make_custom_env(fake_image_env),
        "CnnPolicy",
        {},
    ),
    "custom_features_extractor": (
        make_env("CartPole-v1"),
        "MlpPolicy",
        dict(policy_kwargs=dict(features_extractor_class=CustomFlattenExtractor)),
    ),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_unsupported_cases_fall_back_to_sb3_loop(case: str, paths: SpyPaths) -> None:
    make, policy, kwargs = FALLBACK_CASES[case]
    kwargs = dict(n_steps=16, batch_size=16, n_epochs=2, **kwargs)
    sb3_ppo, sb3_rng = train(PPO, make, 48 * make().num_envs, policy=policy, **kwargs)
    variant, variant_rng = train(PPOVariant, make, 48 * make().num_envs, policy=policy, **kwargs)
    assert variant.fast_path.rollout_loop is not None
    assert (paths.fast, paths.sb3) == (0, 3)
    assert_same_training(sb3_ppo, sb3_rng, variant, variant_rng)


def test_fast_rollout_switch(paths: SpyPaths, monkeypatch: pytest.MonkeyPatch) -> None:
    """``PPOVariant.fast_rollout = False`` runs SB3's loop for a case the fast loop covers, with the same results."""
    make, kwargs, total_timesteps, _ = CASES["cartpole"]
    fast, fast_rng = train(PPOVariant, make, total_timesteps, **kwargs)
    monkeypatch.setattr(PPOVariant, "fast_rollout", False)
    slow, slow_rng = train(PPOVariant, make, total_timesteps, **kwargs)
    assert (paths.fast, paths.sb3) == (4, 4)
    assert fast.fast_path.rollout_loop is None and slow.fast_path.rollout_loop == "fast_rollout = False"
    assert_same_training(slow, slow_rng, fast, fast_rng)


class LocalsRecorder(BaseCallback):
    """Records a copy of ``self.locals`` at every step and rollout end (and can stop training after ``stop_after`` calls)."""

    def __init__(self, stop_after: int | None = None):
        super().__init__()
        self.stop_after = stop_after
        self.records: list[tuple[str, dict[str, Any]]] = []

    def snapshot(self) -> dict[str, Any]:
        copied = {}
        for key, value in self.locals.items():
            if value is self.model:
                copied[key] = "<the model>"
            elif isinstance(value, (BaseCallback, DummyVecEnv, VecNormalize)) or key == "rollout_buffer":
                copied[key] = f"<{type(value).__name__} {'the env' if value is self.model.env else ''}>"
            elif isinstance(value, th.Tensor):
                copied[key] = value.clone()
            else:
                copied[key] = copy.deepcopy(value)
        return copied

    def _on_step(self) -> bool:
        self.records.append(("step", self.snapshot()))
        return self.stop_after is None or self.n_calls < self.stop_after

    def _on_rollout_end(self) -> None:
        self.records.append(("rollout_end", self.snapshot()))


@pytest.mark.parametrize("case", ["cartpole_4_envs_time_limit", "pendulum_3_envs_time_limit_vecnormalize_vf_clip"])
def test_callbacks_see_the_same_locals(case: str, paths: SpyPaths) -> None:
    make, kwargs, total_timesteps, _ = CASES[case]
    recorders = [LocalsRecorder(), LocalsRecorder()]
    sb3_ppo, sb3_rng = train(PPO, make, total_timesteps, callback=recorders[0], **kwargs)
    variant, variant_rng = train(PPOVariant, make, total_timesteps, callback=recorders[1], **kwargs)
    assert paths.fast > 0
    assert_same_training(sb3_ppo, sb3_rng, variant, variant_rng)
    sb3_records, variant_records = recorders[0].records, recorders[1].records
    rollouts = total_timesteps // (kwargs["n_steps"] * variant.n_envs)
    assert len(variant_records) == len(sb3_records) == recorders[0].n_calls + rollouts
    # the bootstrapping of truncated episodes left terminal_obs/terminal_value among the locals
    assert "terminal_value" in sb3_records[-1][1]
    for index, ((sb3_event, sb3_locals), (variant_event, variant_locals)) in enumerate(
        zip(sb3_records, variant_records, strict=True)
    ):
        assert variant_event == sb3_event
        # tb_log_name is learn()'s argument, whose default names the algorithm
        sb3_locals.pop("tb_log_name"), variant_locals.pop("tb_log_name")
        assert variant_locals.keys() == sb3_locals.keys(), (index, variant_locals.keys() ^ sb3_locals.keys())
        assert_equal(variant_locals, sb3_locals, f"record {index} ({sb3_event})")


@pytest.mark.parametrize("stop_after", [1, 75, 128])
def test_callback_stopping_training(stop_after: int, paths: SpyPaths) -> None:
    """A callback returning False mid-rollout (or at its last step) stops both at the same point, buffer included."""
    make, kwargs, total_timesteps, _ = CASES["pendulum"]
    sb3_ppo, sb3_rng = train(PPO, make, total_timesteps, callback=LocalsRecorder(stop_after), **kwargs)
    variant, variant_rng = train(PPOVariant, make, total_timesteps, callback=LocalsRecorder(stop_after), **kwargs)
    assert variant.num_timesteps == stop_after
    assert paths.fast == 1
    assert_same_training(sb3_ppo, sb3_rng, variant, variant_rng)


def test_stop_training_on_max_episodes(paths: SpyPaths) -> None:
    make, kwargs, total_timesteps, _ = CASES["cartpole_4_envs_time_limit"]
    trained = [
        train(algo, make, total_timesteps, callback=StopTrainingOnMaxEpisodes(max_episodes=3), **kwargs)
        for algo in (PPO, PPOVariant)
    ]
    (sb3_ppo, sb3_rng), (variant, variant_rng) = trained
    assert 0 < variant.num_timesteps < total_timesteps
    assert paths.fast > 0
    assert_same_training(sb3_ppo, sb3_rng, variant, variant_rng)


def test_nan_policy_output_raises_like_sb3() -> None:
    """NaN parameters: the fast loop raises the ValueError that torch's argument validation raises in SB3's loop."""
    for env_id in ("Pendulum-v1", "CartPole-v1"):
        errors = []
        for algo in (PPO, PPOVariant):
            model = algo("MlpPolicy", env_id, n_steps=16, batch_size=16, seed=0, device="cpu")
            with th.no_grad():
                model.policy.action_net.bias.fill_(float("nan"))
            with pytest.raises(ValueError, match="Expected parameter") as error:
                model.learn(16)
            errors.append(str(error.value).split(" of ")[0])
        assert errors[0] == errors[1]
