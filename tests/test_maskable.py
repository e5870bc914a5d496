"""MaskablePPOVariant: parity with sb3-contrib's MaskablePPO, the masked π_old in the KL, objectives, save/load, bad input."""

import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import assert_same_training_state
from sb3_contrib import MaskablePPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiBinary, InvalidActionEnvMultiDiscrete
from sb3_contrib.common.maskable.distributions import MaskableCategoricalDistribution, MaskableMultiCategoricalDistribution
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor

from sb3_ppo_variants import AdaptiveKLPenalty, PPOVariant
from sb3_ppo_variants.kl import kl_between
from sb3_ppo_variants.maskable import MaskablePPOVariant
from sb3_ppo_variants.old_policy import OldPolicy
from sb3_ppo_variants.wrappers import InfoActionMasker

SEED = 3
KWARGS = dict(n_steps=64, batch_size=32, n_epochs=2, seed=SEED, device="cpu")

ENVS = {
    "discrete": lambda: InvalidActionEnvDiscrete(dim=8, ep_length=20, n_invalid_actions=4),
    # Discrete(500) observations (one-hot: the first layers gather the weights' columns), masks from info
    "taxi": lambda: InfoActionMasker(gym.make("Taxi-v4", max_episode_steps=30)),
    "multidiscrete": lambda: InvalidActionEnvMultiDiscrete(dims=[3, 4], ep_length=20, n_invalid_actions=3),
    "multibinary": lambda: InvalidActionEnvMultiBinary(dims=4, ep_length=20, n_invalid_actions=2),
}


def make_env(name: str, n_envs: int = 1):
    return make_vec_env(ENVS[name], n_envs=n_envs, seed=SEED) if n_envs > 1 else ENVS[name]()


PARITY_CASES = {
    "discrete": ("discrete", 1, True, {}),
    "multidiscrete": ("multidiscrete", 1, True, {}),
    "multibinary": ("multibinary", 1, True, {}),
    "no_masking": ("discrete", 1, False, {}),
    "n_envs_2_vf_clip_ent": ("discrete", 2, True, dict(clip_range_vf=0.2, ent_coef=0.01)),
    "multidiscrete_n_envs_3_ent": ("multidiscrete", 3, True, dict(ent_coef=0.01)),
    "multibinary_n_envs_2_ent": ("multibinary", 2, True, dict(ent_coef=0.01, clip_range_vf=0.2)),
    "multidiscrete_no_masking": ("multidiscrete", 1, False, dict(ent_coef=0.01)),
    "taxi_n_envs_2_ent": ("taxi", 2, True, dict(ent_coef=0.01)),
    "taxi_separate_extractors": ("taxi", 1, True, dict(policy_kwargs=dict(share_features_extractor=False))),
}


@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_clip_matches_maskable_ppo(case):
    env_name, n_envs, use_masking, extra = PARITY_CASES[case]
    models = []
    for algo in (MaskablePPO, MaskablePPOVariant):
        model = algo("MlpPolicy", make_env(env_name, n_envs), **KWARGS, **extra)
        models.append(model.learn(3 * KWARGS["n_steps"] * n_envs, use_masking=use_masking))  # 3 updates
    theirs, ours = models
    assert ours._n_updates == theirs._n_updates >= 2 * KWARGS["n_epochs"]
    assert_same_training_state(ours, theirs)
    # the masked fast path (Discrete, MultiDiscrete and MultiBinary actions): rollout loop, minibatches, evaluation, Adam
    fallbacks = ours.fast_path.fallbacks()
    assert set(fallbacks) <= {"entropy_graph", "old_policy"}, fallbacks
    assert ("entropy_graph" in fallbacks) == ("ent_coef" in extra)
    assert ours._fast_policy(ours.policy).one_hot_inputs == (env_name in ("discrete", "taxi"))  # type: ignore[union-attr]


class CustomExtractor(FlattenExtractor):
    """A features extractor that is not SB3's own class (it could change what the policy computes)."""


def test_custom_extractor_falls_back():
    """Outside the masked fast path, sb3-contrib's rollout and evaluation run (the plan says why), with its numbers."""
    kwargs = dict(policy_kwargs=dict(features_extractor_class=CustomExtractor), **KWARGS)
    theirs = MaskablePPO("MlpPolicy", make_env("multidiscrete"), **kwargs).learn(2 * KWARGS["n_steps"])
    ours = MaskablePPOVariant("MlpPolicy", make_env("multidiscrete"), **kwargs).learn(2 * KWARGS["n_steps"])
    assert_same_training_state(ours, theirs)
    fallbacks = ours.fast_path.fallbacks()
    assert fallbacks["policy_evaluation"] == "features extractor other than FlattenExtractor"
    assert fallbacks["rollout_loop"] == f"sb3-contrib's MaskablePPO.collect_rollouts (masks): {fallbacks['policy_evaluation']}"


def test_predict_with_masks_matches_maskable_ppo():
    env = make_env("discrete")
    theirs = MaskablePPO("MlpPolicy", env, **KWARGS).learn(64)
    ours = MaskablePPOVariant("MlpPolicy", make_env("discrete"), **KWARGS)
    ours.policy.load_state_dict(theirs.policy.state_dict())
    observations = np.arange(8)
    rng = np.random.default_rng(0)
    masks = rng.random((8, 8)) < 0.5
    masks[np.arange(8), rng.integers(0, 8, 8)] = True  # at least one valid action per row
    for deterministic in (True, False):
        th.manual_seed(0)
        their_actions, _ = theirs.predict(observations, action_masks=masks, deterministic=deterministic)
        th.manual_seed(0)
        our_actions, _ = ours.predict(observations, action_masks=masks, deterministic=deterministic)
        np.testing.assert_array_equal(our_actions, their_actions)
        assert masks[np.arange(8), our_actions].all()  # only valid actions


class Recorder:
    """Wraps a model's objective.loss and _minibatch_loss: records the minibatch and the KL the objective receives."""

    def __init__(self, model):
        self.model = model
        self.records: list[dict] = []
        self._rollout_data = None
        loss, minibatch_loss = model.objective.loss, model._minibatch_loss

        def record_minibatch(rollout_data, old_policy, *args, **kwargs):
            self._rollout_data, self.old_policy = rollout_data, old_policy
            return minibatch_loss(rollout_data, old_policy, *args, **kwargs)

        def record_loss(batch):
            self.records.append(self.snapshot(self._rollout_data, batch))
            return loss(batch)

        model._minibatch_loss = record_minibatch
        model.objective.loss = record_loss

    def snapshot(self, rollout_data, batch) -> dict:
        return {"kl": batch.kl.detach().clone(), "mask": None if batch.mask is None else batch.mask.clone()}


class MaskedKLRecorder(Recorder):
    """Also computes, with π_θ as it is at that minibatch, the KL between the masked distributions and the unmasked π_old."""

    def __init__(self, model):
        super().__init__(model)
        train = model.train

        def train_with_copy():
            # π_old as a frozen copy of the policy that collected the rollout (the model may hold its distributions)
            self.frozen = OldPolicy(model.policy, model._distribution)
            train()

        model.train = train_with_copy

    def snapshot(self, rollout_data, batch) -> dict:
        record = super().snapshot(rollout_data, batch)
        model = self.model
        observations, masks = rollout_data.observations, rollout_data.action_masks
        # SB3 policies refill one distribution object in place: use each before the next get_distribution() call.
        with th.no_grad():
            new = model.policy.get_distribution(observations, action_masks=masks)
            old = self.frozen.policy.get_distribution(observations, action_masks=masks)
            record["expected_kl"] = kl_between(old, new)
            old_unmasked = self.frozen.policy.get_distribution(observations)
            record["unmasked_old_kl"] = kl_between(old_unmasked, new)
        return record


@pytest.mark.parametrize("objective", ["adaptive_kl", "fixed_kl"])
@pytest.mark.parametrize("env_name", ["discrete", "multidiscrete", "multibinary"])
def test_kl_uses_masked_old_policy(objective, env_name):
    model = MaskablePPOVariant("MlpPolicy", make_env(env_name), objective=objective, learning_rate=3e-3, **KWARGS)
    recorder = MaskedKLRecorder(model)
    model.learn(2 * 64)
    minibatches_per_update = 2 * (64 // 32)
    records = recorder.records
    assert len(records) == 2 * minibatches_per_update
    for update in range(2):
        # First minibatch of each update: π_θ is π_old, the KL is exactly 0.
        assert th.equal(records[update * minibatches_per_update]["kl"], th.zeros(32))
    later = [record for index, record in enumerate(records) if index % minibatches_per_update]
    for record in later:
        # The KL the objective receives is the one between the *masked* distributions ...
        th.testing.assert_close(record["kl"], record["expected_kl"], atol=1e-6, rtol=1e-5)
        assert th.isfinite(record["kl"]).all() and (record["kl"] > -1e-6).all()  # >= 0 up to float rounding
    assert max(record["kl"].max().item() for record in later) > 0  # the policy moved
    # ... while π_old without its masks puts mass on actions π_θ gives ~exp(-1e8): a KL of order 1e7.
    assert min(record["unmasked_old_kl"].min().item() for record in later) > 1e6


def masked_distributions(kind: str, logits: th.Tensor, masks: th.Tensor, monkeypatch):
    """sb3-contrib's masked distribution on ``logits``, with masked logits set to -inf instead of -1e8."""
    original_where = th.where

    def where_with_inf(condition, value, other):
        if isinstance(other, th.Tensor) and other.dim() == 0 and other.item() == -1e8:
            other = th.tensor(-math.inf, dtype=other.dtype)
        return original_where(condition, value, other)

    monkeypatch.setattr(th, "where", where_with_inf)
    try:
        if kind == "categorical":
            distribution = MaskableCategoricalDistribution(logits.shape[-1]).proba_distribution(logits)
        else:
            distribution = MaskableMultiCategoricalDistribution([3, logits.shape[-1] - 3]).proba_distribution(logits)
        distribution.apply_masking(masks)
    finally:
        monkeypatch.setattr(th, "where", original_where)
    return distribution


@pytest.mark.parametrize("kind", ["categorical", "multi_categorical"])
def test_kl_is_finite_with_inf_masked_logits(kind, monkeypatch):
    generator = th.Generator().manual_seed(0)
    masks = th.tensor([[1, 0, 1, 1, 0, 1, 1], [0, 1, 1, 0, 1, 1, 0], [1, 1, 0, 1, 1, 0, 1]], dtype=th.bool)
    old_logits = th.randn(3, 7, generator=generator, requires_grad=True)
    new_logits = th.randn(3, 7, generator=generator, requires_grad=True)
    old = masked_distributions(kind, old_logits, masks, monkeypatch)
    new = masked_distributions(kind, new_logits, masks, monkeypatch)
    torch_distributions = new.distributions if kind == "multi_categorical" else [new.distribution]
    assert all(th.isinf(d.logits).any() for d in torch_distributions)  # the masked logits are really -inf

    kl = kl_between(old, new)
    assert kl.shape == (3,) and th.isfinite(kl).all() and (kl > 0).all()
    # Same value as the KL over the valid actions only, computed by hand.
    expected = []
    for row in range(3):
        total = th.zeros(())
        groups = [slice(0, 7)] if kind == "categorical" else [slice(0, 3), slice(3, 7)]
        for group in groups:
            valid = masks[row, group]
            old_log_p = th.log_softmax(old_logits[row, group][valid], -1)
            new_log_p = th.log_softmax(new_logits[row, group][valid], -1)
            total = total + (old_log_p.exp() * (old_log_p - new_log_p)).sum()
        expected.append(total)
    th.testing.assert_close(kl, th.stack(expected))
    kl.sum().backward()
    assert th.isfinite(old_logits.grad).all() and th.isfinite(new_logits.grad).all()
    # Masked actions get no gradient (up to float noise: the gradient reaches them through the normalisation).
    th.testing.assert_close(new_logits.grad[~masks], th.zeros(int((~masks).sum())), atol=1e-6, rtol=0)
    # Identical distributions: exactly 0.
    assert th.equal(kl_between(old, old), th.zeros(3))


@pytest.mark.parametrize("objective", ["clip", "adaptive_kl", "fixed_kl", "none"])
def test_every_objective_trains(objective):
    model = MaskablePPOVariant("MlpPolicy", make_env("discrete"), objective=objective, **KWARGS)
    model.learn(4 * 64)
    values = model.logger.name_to_value
    assert math.isfinite(values["train/loss"])
    if objective in ("adaptive_kl", "fixed_kl"):
        assert values["train/kl"] > 0
    # Every action of the last rollout was valid under its stored mask.
    buffer = model.rollout_buffer
    actions = buffer.actions.reshape(-1).astype(int)
    masks = buffer.action_masks.reshape(len(actions), -1)
    assert masks[np.arange(len(actions)), actions].all()


def test_save_load_keeps_beta_and_objective(tmp_path):
    model = MaskablePPOVariant("MlpPolicy", make_env("discrete"), objective="adaptive_kl", kl_target=1e-4, **KWARGS)
    model.learn(3 * 64)
    beta = model.kl_coef
    assert beta != 1.0
    model.save(tmp_path / "model")
    loaded = MaskablePPOVariant.load(tmp_path / "model", env=make_env("discrete"))
    assert isinstance(loaded, MaskablePPOVariant) and isinstance(loaded.objective, AdaptiveKLPenalty)
    assert loaded.kl_coef == beta
    seen = []
    original_loss = loaded.objective.loss
    loaded.objective.loss = lambda batch: seen.append(loaded.objective.kl_coef) or original_loss(batch)
    loaded.learn(64, reset_num_timesteps=False)
    assert seen[0] == beta
    assert loaded.num_timesteps == 4 * 64


def test_use_masking_on_env_without_masks_raises_before_any_step():
    model = MaskablePPOVariant("MlpPolicy", "CartPole-v1", **KWARGS)
    with pytest.raises(ValueError, match="use_masking"):
        model.learn(64)
    assert model.num_timesteps == 0 and model._last_obs is None  # the env was not even reset
    model.learn(64, use_masking=False)  # allowed without masks
    assert model.num_timesteps == 64


class NotAnEnv:
    """Creating a model with this env would fail; every check must fire before the env is touched."""


@pytest.mark.parametrize("algo", [PPOVariant, MaskablePPOVariant])
def test_recurrent_policy_is_rejected(algo):
    with pytest.raises((TypeError, ValueError), match="recurrent"):
        algo(RecurrentActorCriticPolicy, NotAnEnv())  # type: ignore[arg-type]


def test_non_maskable_policy_class_is_rejected():
    with pytest.raises((TypeError, ValueError), match="MaskableActorCriticPolicy"):
        MaskablePPOVariant(ActorCriticPolicy, NotAnEnv())  # type: ignore[arg-type]
    assert issubclass(MaskablePPOVariant.policy_base, MaskableActorCriticPolicy)


@pytest.mark.parametrize(
    "kwargs, exception, fragment",
    [
        ({"clip_range": -1}, ValueError, "clip_range"),
        ({"kl_coef": math.nan}, ValueError, "kl_coef"),
        ({"objective": "klpen"}, ValueError, "objective"),
        ({"kl_target": 0.0}, ValueError, "kl_target"),
        ({"batch_size": 1}, ValueError, "batch_size"),
        ({"n_epochs": 0}, ValueError, "n_epochs"),
    ],
)
def test_bad_argument(kwargs, exception, fragment):
    with pytest.raises(exception, match=fragment):
        MaskablePPOVariant("MlpPolicy", NotAnEnv(), **kwargs)  # type: ignore[arg-type]
