"""
MaskableRecurrentPPOVariant: masks and LSTM policies together, with every objective.

Small, seeded runs on sb3-contrib's invalid-action identity envs (observations flattened to one-hot vectors: sb3-contrib's
LSTM cannot take a Discrete observation) and on this package's CueCorridorEnv.
"""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium.wrappers import FlattenObservation
from sb3_contrib import MaskablePPO, RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.wrappers import ActionMasker
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy

import sb3_ppo_variants
from sb3_ppo_variants import MaskableRecurrentPPOVariant
from sb3_ppo_variants.envs import CueCorridorEnv
from sb3_ppo_variants.loss import LossCoefficients
from sb3_ppo_variants.maskable_recurrent import (
    MaskableRecurrentActorCriticPolicy,
    MaskableRecurrentDictRolloutBuffer,
    MaskableRecurrentRolloutBuffer,
)
from sb3_ppo_variants.old_policy import OldDistributions

SMALL_POLICY = {"lstm_hidden_size": 8, "net_arch": [8]}
INVALID_ENVS = {
    "Discrete": (InvalidActionEnvDiscrete, {"dim": 5, "n_invalid_actions": 3}),
    "MultiDiscrete": (InvalidActionEnvMultiDiscrete, {"dims": [3, 3], "n_invalid_actions": 3}),
    "MultiBinary": (InvalidActionEnvMultiBinary, {"dims": 3, "n_invalid_actions": 2}),
}


class LegalityChecker(gym.Wrapper):
    """Counts the steps whose action the env's current mask forbids (the mask is read before the step)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.illegal = 0
        self.steps = 0

    def action_masks(self) -> np.ndarray:
        return np.asarray(self.env.get_wrapper_attr("action_masks")(), dtype=bool)

    def step(self, action: Any) -> Any:
        masks = self.action_masks()
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete):
            legal = masks[int(action)]
        else:  # MultiDiscrete, MultiBinary (2 outcomes per dimension): one block of the mask per sub-action
            sizes = space.nvec if isinstance(space, gym.spaces.MultiDiscrete) else [2] * int(space.n)
            offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            legal = all(masks[offset + int(a)] for offset, a in zip(offsets, np.asarray(action).ravel(), strict=True))
        self.illegal += not legal
        self.steps += 1
        return self.env.step(action)


def invalid_env(space: str, n_envs: int = 2, seed: int = 0, ep_length: int = 7, checked: bool = False, **overrides: Any):
    env_class, kwargs = INVALID_ENVS[space]
    kwargs = {**kwargs, **overrides, "ep_length": ep_length}

    def wrap(env: gym.Env) -> gym.Env:
        env = FlattenObservation(env)
        return LegalityChecker(env) if checked else env

    return make_vec_env(env_class, n_envs=n_envs, seed=seed, env_kwargs=kwargs, wrapper_class=wrap)


def make_model(env: Any, **kwargs: Any) -> MaskableRecurrentPPOVariant:
    settings = {"n_steps": 16, "batch_size": 16, "n_epochs": 2, "seed": 0, "device": "cpu", "policy_kwargs": SMALL_POLICY}
    return MaskableRecurrentPPOVariant("MlpLstmPolicy", env, **{**settings, **kwargs})


def illegal_steps(vec_env: Any) -> int:
    return sum(vec_env.get_attr("illegal"))


# ----------------------------------------------------------------------------------------------------------------------
# Without masks it is RecurrentPPO
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["Discrete", "MultiDiscrete"])
@pytest.mark.parametrize("use_masking", [False, True])
def test_reproduces_recurrent_ppo_without_masks(space: str, use_masking: bool) -> None:
    # n_invalid_actions=0: the env's masks allow every action, so masking (use_masking=True) must change nothing either.
    # Episodes of 7 steps in rollouts of 16 x 2 envs: sequences start mid-rollout and minibatches are padded.
    settings = {"n_steps": 16, "batch_size": 16, "n_epochs": 2, "seed": 3, "device": "cpu", "policy_kwargs": SMALL_POLICY}
    reference = RecurrentPPO("MlpLstmPolicy", invalid_env(space, seed=3, n_invalid_actions=0), **settings)
    reference.learn(3 * 32)
    model = MaskableRecurrentPPOVariant("MlpLstmPolicy", invalid_env(space, seed=3, n_invalid_actions=0), **settings)
    model.learn(3 * 32, use_masking=use_masking)
    assert model._n_updates == reference._n_updates == 6
    expected = reference.policy.state_dict()
    for name, value in model.policy.state_dict().items():
        assert th.allclose(value, expected[name], atol=1e-6, rtol=0), name
    # and training did move the parameters (the comparison is not between two untouched initialisations)
    untrained = MaskableRecurrentPPOVariant("MlpLstmPolicy", invalid_env(space, seed=3), **settings).policy.state_dict()
    assert any(not th.allclose(value, untrained[name]) for name, value in model.policy.state_dict().items())


# ----------------------------------------------------------------------------------------------------------------------
# Masked actions are never taken
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("space", list(INVALID_ENVS))
def test_rollouts_never_take_a_masked_action(space: str) -> None:
    env = invalid_env(space, checked=True)
    model = make_model(env)
    model.learn(4 * 32)  # stochastic rollouts, through RecurrentPPO's collect_rollouts
    assert sum(env.get_attr("steps")) >= 4 * 32
    assert illegal_steps(env) == 0
    # The stored masks are those the actions were drawn with, and forbid some actions.
    buffer = model.rollout_buffer
    assert isinstance(buffer, MaskableRecurrentRolloutBuffer)
    assert buffer.action_masks.min() == 0 and buffer.action_masks.shape == (32, buffer.mask_dims)

    # Unmasked, the same policy does take forbidden actions (so the checks above are not vacuous).
    unmasked = invalid_env(space, checked=True)
    make_model(unmasked).learn(4 * 32, use_masking=False)
    assert illegal_steps(unmasked) > 0


@pytest.mark.parametrize("space", list(INVALID_ENVS))
@pytest.mark.parametrize("deterministic", [True, False])
def test_predict_never_takes_a_masked_action(space: str, deterministic: bool) -> None:
    model = make_model(invalid_env(space))
    # Bias the action layer hard towards one outcome per sub-action so that, unmasked, the policy takes forbidden actions.
    with th.no_grad():
        model.policy.action_net.bias.copy_(th.arange(model.policy.action_net.bias.numel(), dtype=th.float32) * 3.0)
    for use_masks in (True, False):
        env = invalid_env(space, seed=1, checked=True)
        observations = env.reset()
        state, episode_starts = None, np.ones((env.num_envs,), dtype=bool)
        for _ in range(60):
            masks = np.stack(env.env_method("action_masks")) if use_masks else None
            actions, state = model.predict(observations, state, episode_starts, deterministic, action_masks=masks)
            observations, _, episode_starts, _ = env.step(actions)
        if use_masks:
            assert illegal_steps(env) == 0
        else:
            assert illegal_steps(env) > 0


# ----------------------------------------------------------------------------------------------------------------------
# Exact KL with masks and sequences
# ----------------------------------------------------------------------------------------------------------------------


class KLSpy(MaskableRecurrentPPOVariant):
    """Records the per-sample KL, the valid rows and π_old of the first minibatch of each update."""

    def train(self) -> None:
        self.first_kl: th.Tensor | None = None
        super().train()

    def _minibatch_loss(self, rollout_data: Any, old_policy: Any, coefficients: Any) -> Any:
        self._current_valid = self._valid_mask(rollout_data)
        return super()._minibatch_loss(rollout_data, old_policy, coefficients)

    def _capture_old_policy(self) -> Any:
        return RecordingOldPolicy(self, super()._capture_old_policy())


class RecordingOldPolicy:
    """π_old (the frozen copy, or its distributions replayed once per update) that records its first minibatch's KL."""

    def __init__(self, model: KLSpy, old_policy: Any) -> None:
        self.model, self.old_policy, self.kl_is_estimate = model, old_policy, False

    def kl(self, rollout_data: Any, new_distribution: Any, new_log_prob: th.Tensor) -> th.Tensor:
        model = self.model
        kl = self.old_policy.kl(rollout_data, new_distribution, new_log_prob)
        if model.first_kl is None:
            model.first_kl, model.first_valid = kl.detach().clone(), model._current_valid.clone()
            if isinstance(self.old_policy, OldDistributions):  # normalised logits of each part, at the minibatch's rows
                parts = [logits.index_select(0, rollout_data.rows).exp() for logits in self.old_policy.parameters]
            else:
                old = model._distribution(self.old_policy.policy, rollout_data)
                parts = [part.probs for part in (old.distributions if hasattr(old, "distributions") else [old.distribution])]
            model.first_old_probs = th.cat(parts, dim=1)
            model.first_masks = model._action_masks(rollout_data)
        return kl


@pytest.mark.parametrize("space", list(INVALID_ENVS))
def test_kl_is_zero_on_the_first_minibatch_and_uses_masked_distributions(space: str) -> None:
    model = KLSpy(
        "MlpLstmPolicy",
        invalid_env(space),
        objective="adaptive_kl",
        n_steps=16,
        batch_size=16,
        n_epochs=2,
        seed=0,
        device="cpu",
        policy_kwargs=SMALL_POLICY,
    )
    model.learn(2 * 32)
    kl, valid = model.first_kl, model.first_valid
    assert kl is not None and not valid.all() and valid.any()  # padded rows are present
    # π_old is replayed once per update over the rollout's own sequences, π_θ over the minibatch's: the same LSTM
    # computation from the same stored states, up to float order
    assert kl[valid].abs().max() <= 1e-6
    assert th.isfinite(kl).all() and model.fast_path.old_policy is None
    # π_old is the masked distribution: forbidden actions of valid rows have (numerically) zero probability
    forbidden = ~model.first_masks.bool() & valid.unsqueeze(-1)
    assert forbidden.any() and model.first_old_probs[forbidden].max() < 1e-30
    # d, measured after the update over the valid samples, is positive and finite
    d = model.logger.name_to_value["train/kl"]
    assert np.isfinite(d) and d > 0


# ----------------------------------------------------------------------------------------------------------------------
# Padding changes nothing
# ----------------------------------------------------------------------------------------------------------------------


def fill_padding(rollout_data: Any, valid: th.Tensor) -> Any:
    """
    The same minibatch with every per-sample tensor holding garbage in its padded rows: inf, -inf, 1e30 (the largest
    integer for integer observations), and all-forbidden action masks.
    """

    def garbage(value: Any, fill: float) -> Any:
        if isinstance(value, dict):
            return {key: garbage(item, fill) for key, item in value.items()}
        if isinstance(value, th.Tensor) and value.dim() > 0 and value.shape[0] == valid.shape[0]:
            junk = th.tensor(fill if value.is_floating_point() else th.iinfo(value.dtype).max, dtype=value.dtype)
            return th.where(valid.view(-1, *(1,) * (value.dim() - 1)), value, junk)
        return value

    fills = {
        "observations": float("inf"),
        "actions": 1e30,
        "old_values": float("-inf"),
        "old_log_prob": float("inf"),
        "advantages": 1e30,
        "returns": float("-inf"),
        "episode_starts": 1e30,
        "action_masks": 0.0,
    }
    return rollout_data._replace(**{name: garbage(getattr(rollout_data, name), fill) for name, fill in fills.items()})


class GarbagePadding(MaskableRecurrentPPOVariant):
    """Every minibatch (training and d) arrives with garbage in its padded rows."""

    def _minibatches(self, batch_size: int) -> Any:
        for rollout_data in super()._minibatches(batch_size):
            yield fill_padding(rollout_data, self._valid_mask(rollout_data))


@pytest.mark.parametrize("objective", ["clip", "adaptive_kl"])
def test_padded_rows_change_nothing(objective: str) -> None:
    settings = {
        "objective": objective,
        "n_steps": 16,
        "batch_size": 16,
        "n_epochs": 2,
        "seed": 0,
        "device": "cpu",
        "policy_kwargs": SMALL_POLICY,
    }
    clean = MaskableRecurrentPPOVariant("MlpLstmPolicy", invalid_env("Discrete"), **settings)
    clean.learn(3 * 32)

    # Loss terms of one padded minibatch, clean and with garbage, from the same parameters and the same π_old.
    old_policy = clean._capture_old_policy()
    batch = next(b for b in clean._minibatches(16) if not clean._valid_mask(b).all())
    coefficients = LossCoefficients(clip_range=0.2, clip_range_vf=None, ent_coef=0.0, vf_coef=0.5, normalize_advantage=True)
    clean_terms = clean._minibatch_loss(batch, old_policy, coefficients)[1]
    dirty_terms = clean._minibatch_loss(fill_padding(batch, clean._valid_mask(batch)), old_policy, coefficients)[1]
    for name, value in clean_terms.items():
        assert th.isfinite(dirty_terms[name]) and th.equal(dirty_terms[name], value), name

    # Whole training runs: the same parameters, β and logged figures.
    dirty = GarbagePadding("MlpLstmPolicy", invalid_env("Discrete"), **settings)
    dirty.learn(3 * 32)
    expected = clean.policy.state_dict()
    for name, value in dirty.policy.state_dict().items():
        assert th.equal(value, expected[name]), name
    assert dirty.kl_coef == clean.kl_coef
    for key in ("train/loss", "train/approx_kl", "train/value_loss"):
        assert dirty.logger.name_to_value[key] == clean.logger.name_to_value[key]


# ----------------------------------------------------------------------------------------------------------------------
# Every objective trains; β survives save/load; other observation layouts
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("objective", ["clip", "adaptive_kl", "fixed_kl", "none"])
def test_every_objective_trains(objective: str) -> None:
    env = make_vec_env(CueCorridorEnv, n_envs=4, seed=0, env_kwargs={"length": 3})
    model = make_model(env, objective=objective, n_steps=32, batch_size=64, kl_coef=0.5, log_kl=True)
    model.learn(384)
    assert model.num_timesteps == 384 and model._n_updates == 3 * 2
    assert all(th.isfinite(p).all() for p in model.policy.parameters())
    assert np.isfinite(model.logger.name_to_value["train/kl"])
    if objective == "fixed_kl":
        assert model.kl_coef == 0.5
    if objective == "adaptive_kl":
        assert model.kl_coef in {0.5 * 2.0**k for k in range(-3, 4)} and model.kl_coef != 0.5


def test_save_load_keeps_beta_and_masking(tmp_path: Any) -> None:
    env = invalid_env("Discrete")
    model = make_model(env, objective="adaptive_kl", kl_coef=4.0)
    model.learn(2 * 32)
    beta = model.kl_coef
    assert beta != 4.0
    model.save(tmp_path / "model")
    loaded = MaskableRecurrentPPOVariant.load(tmp_path / "model", env=invalid_env("Discrete", checked=True), device="cpu")
    assert loaded.kl_coef == beta
    assert isinstance(loaded.policy, MaskableRecurrentActorCriticPolicy)
    assert isinstance(loaded.rollout_buffer, MaskableRecurrentRolloutBuffer)
    for name, value in loaded.policy.state_dict().items():
        assert th.equal(value, model.policy.state_dict()[name]), name
    loaded.learn(32, reset_num_timesteps=False)
    assert illegal_steps(loaded.get_env()) == 0


class DictObservation(gym.ObservationWrapper):
    """The observation as {"state": observation}, keeping the env's action_masks()."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"state": env.observation_space})

    def observation(self, observation: Any) -> dict[str, Any]:
        return {"state": observation}

    def action_masks(self) -> np.ndarray:
        return self.env.get_wrapper_attr("action_masks")()


def test_dict_observations() -> None:
    env = make_vec_env(CueCorridorEnv, n_envs=2, seed=0, env_kwargs={"length": 3}, wrapper_class=DictObservation)
    model = MaskableRecurrentPPOVariant(
        "MultiInputLstmPolicy",
        env,
        objective="fixed_kl",
        n_steps=16,
        batch_size=16,
        n_epochs=1,
        seed=0,
        device="cpu",
        policy_kwargs=SMALL_POLICY,
    )
    model.learn(64)
    assert isinstance(model.rollout_buffer, MaskableRecurrentDictRolloutBuffer)
    assert model.rollout_buffer.action_masks.min() == 0
    observation, _ = DictObservation(CueCorridorEnv(length=3)).reset(seed=0)
    action, state = model.predict(observation, deterministic=True, action_masks=np.array([0, 1, 0, 0], dtype=bool))
    assert action == CueCorridorEnv.RIGHT and state is not None


def test_policy_aliases_and_lazy_export() -> None:
    assert sb3_ppo_variants.MaskableRecurrentPPOVariant is MaskableRecurrentPPOVariant
    assert "MaskableRecurrentPPOVariant" in sb3_ppo_variants.__all__
    for name, policy_class in MaskableRecurrentPPOVariant.policy_aliases.items():
        assert issubclass(policy_class, MaskableRecurrentActorCriticPolicy) and name.endswith("LstmPolicy")
    assert issubclass(MaskableRecurrentPPOVariant.policy_aliases["CnnLstmPolicy"], RecurrentActorCriticPolicy)


# ----------------------------------------------------------------------------------------------------------------------
# Bad inputs
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "policy", ["MlpPolicy", "MlpLstmPolicyy", ActorCriticPolicy, MaskableActorCriticPolicy, RecurrentActorCriticPolicy]
)
def test_rejects_policies_that_are_not_masked_and_recurrent(policy: Any) -> None:
    with pytest.raises((ValueError, TypeError), match="MaskableRecurrentPPOVariant"):
        MaskableRecurrentPPOVariant(policy, invalid_env("Discrete"))


def test_use_masking_on_an_env_without_masks_fails_before_any_step() -> None:
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0)  # no action_masks()
    model = make_model(env)
    with pytest.raises(ValueError, match="use_masking=True"):
        model.learn(64)
    assert model.num_timesteps == 0 and model._last_obs is None
    model.learn(32, use_masking=False)  # without masks it trains
    assert model.num_timesteps == 32


def test_rejects_continuous_actions_and_sde() -> None:
    with pytest.raises(AssertionError, match="only supports"):
        MaskableRecurrentPPOVariant("MlpLstmPolicy", "Pendulum-v1")
    with pytest.raises(ValueError, match="use_sde"):
        MaskableRecurrentPPOVariant("MlpLstmPolicy", invalid_env("Discrete"), use_sde=True)


def test_masks_from_action_masker_and_maskable_ppo_env_agree() -> None:
    # The same ActionMasker-wrapped env serves MaskablePPO and MaskableRecurrentPPOVariant.
    def make() -> gym.Env:
        return ActionMasker(CueCorridorEnv(length=3), lambda env: env.unwrapped.action_masks())

    env = make_vec_env(make, n_envs=2, seed=0)
    MaskablePPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, device="cpu").learn(32)
    model = make_model(make_vec_env(make, n_envs=2, seed=0))
    model.learn(32)
    assert model.rollout_buffer.action_masks.min() == 0
