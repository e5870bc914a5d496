"""RecurrentPPOVariant: parity with sb3-contrib's RecurrentPPO, π_old replay, padding, objectives, save/load, bad input."""

import copy
import math

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import KeepRolloutPolicy, assert_close_training_state
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.ppo_recurrent.policies import MlpLstmPolicy
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.policies import ActorCriticPolicy

from sb3_ppo_variants import AdaptiveKLPenalty, recurrent_fast
from sb3_ppo_variants.loss import LossCoefficients
from sb3_ppo_variants.old_policy import OldPolicy
from sb3_ppo_variants.recurrent import RecurrentPPOVariant

SEED = 5
SMALL_POLICY = dict(lstm_hidden_size=16, net_arch=dict(pi=[16], vf=[16]))
KWARGS = dict(n_steps=32, batch_size=16, n_epochs=2, seed=SEED, device="cpu")
OBJECTIVES = ["clip", "adaptive_kl", "fixed_kl", "none"]
#: batch sizes that do not divide the rollout are tested on purpose
not_dividing = pytest.mark.filterwarnings("ignore:batch_size=.* does not divide")


class DictCartPole(gym.ObservationWrapper):
    """CartPole with a Dict observation: position part and velocity part."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        box = env.observation_space
        self.observation_space = spaces.Dict(
            {
                "position": spaces.Box(box.low[[0, 2]], box.high[[0, 2]], dtype=np.float32),
                "velocity": spaces.Box(box.low[[1, 3]], box.high[[1, 3]], dtype=np.float32),
            }
        )

    def observation(self, observation):
        return {"position": observation[[0, 2]], "velocity": observation[[1, 3]]}


def make_env(env_id: str = "CartPole-v1", n_envs: int = 1, dict_obs: bool = False):
    wrapper_class = DictCartPole if dict_obs else None
    return make_vec_env(env_id, n_envs=n_envs, seed=SEED, wrapper_class=wrapper_class)


PARITY_CASES = {
    # (env id, n_envs, Dict observations, extra arguments)
    "n_envs_2": ("CartPole-v1", 2, False, {}),
    "batch_not_dividing": ("CartPole-v1", 1, False, dict(batch_size=24)),
    "shared_lstm": ("CartPole-v1", 2, False, dict(policy_kwargs=dict(shared_lstm=True, enable_critic_lstm=False))),
    "no_critic_lstm": ("CartPole-v1", 1, False, dict(policy_kwargs=dict(enable_critic_lstm=False))),
    "dict_obs": ("CartPole-v1", 2, True, {}),
    "target_kl": ("CartPole-v1", 1, False, dict(n_epochs=5, learning_rate=1e-2, target_kl=5e-4)),
    "pendulum_vf_clip_ent": ("Pendulum-v1", 1, False, dict(clip_range_vf=0.2, ent_coef=0.01)),
}


@not_dividing
@pytest.mark.parametrize("case", list(PARITY_CASES))
def test_clip_matches_recurrent_ppo(case):
    env_id, n_envs, dict_obs, extra = PARITY_CASES[case]
    kwargs = {**KWARGS, **extra}
    kwargs["policy_kwargs"] = {**SMALL_POLICY, **extra.get("policy_kwargs", {})}
    policy = "MultiInputLstmPolicy" if dict_obs else "MlpLstmPolicy"
    models = []
    for algo in (RecurrentPPO, RecurrentPPOVariant):
        model = algo(policy, make_env(env_id, n_envs, dict_obs), **kwargs)
        models.append(model.learn(3 * kwargs["n_steps"] * n_envs))  # 3 updates
    theirs, ours = models
    assert ours._n_updates == theirs._n_updates >= 2
    if "target_kl" in extra:
        assert ours._n_updates < 3 * kwargs["n_epochs"]  # early stopping did happen
    # whole-sequence LSTM calls: the same computation as sb3-contrib's step loop, in another float order
    assert_close_training_state(ours, theirs)
    if dict_obs:  # sb3-contrib's code, with its reasons
        assert ours.fast_path.sequence_lstm == "policy class RecurrentMultiInputActorCriticPolicy (only MlpLstmPolicy)"
        assert ours.fast_path.minibatches == "rollout buffer class RecurrentDictRolloutBuffer (its own get())"
        assert ours.fast_path.rollout_loop.endswith("rollout buffer class RecurrentDictRolloutBuffer")
    else:
        assert ours.fast_path.sequence_lstm is ours.fast_path.minibatches is ours.fast_path.optimizer_step is None
        assert ours.fast_path.rollout_loop is None  # the fast rollout loop (recurrent_rollout.py)


class OwnSequencePolicy(MlpLstmPolicy):
    """A custom policy (a subclass): the whole-sequence LSTM does not know what it changes."""


FALLBACK_CASES = {
    # policy, env, algorithm arguments -> the reason fast_path gives for sequence_lstm
    "dict_obs": ("MultiInputLstmPolicy", dict(dict_obs=True), {}, "policy class RecurrentMultiInputActorCriticPolicy"),
    "custom_policy": (OwnSequencePolicy, {}, {}, "policy class OwnSequencePolicy (only MlpLstmPolicy)"),
    "fast_update_off": ("MlpLstmPolicy", {}, dict(fast_update=False), "fast_update = False"),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_unsupported_cases_run_sb3_contribs_code(case, monkeypatch):
    policy, env_kwargs, switches, reason = FALLBACK_CASES[case]
    for name, value in switches.items():
        monkeypatch.setattr(RecurrentPPOVariant, name, value)
    calls = []
    monkeypatch.setattr(recurrent_fast, "whole_sequence_lstm", lambda *args: calls.append(args))
    model = RecurrentPPOVariant(policy, make_env(n_envs=2, **env_kwargs), policy_kwargs=SMALL_POLICY, **KWARGS)
    model.learn(2 * 64)
    assert model.fast_path.sequence_lstm.startswith(reason)
    assert model.fast_path.optimizer_step is not None  # sb3-contrib's evaluation: the optimizer's own step
    assert not calls


def test_whole_sequence_lstm_is_sb3_contribs_step_loop():
    """Episode starts only at sequences' first steps: one LSTM call; anywhere else: sb3-contrib's loop, unchanged."""
    lstm = th.nn.LSTM(3, 5)
    generator = th.Generator().manual_seed(0)
    features = th.randn(4 * 6, 3, generator=generator)
    states = (th.randn(1, 4, 5, generator=generator), th.randn(1, 4, 5, generator=generator))
    for starts in ([1, 0, 1, 1], [0, 0, 0, 0]):
        episode_starts = th.zeros(4, 6)
        episode_starts[:, 0] = th.tensor(starts, dtype=th.float32)
        expected = RecurrentActorCriticPolicy._process_sequence(features, states, episode_starts.flatten(), lstm)
        got = recurrent_fast.whole_sequence_lstm(features, states, episode_starts.flatten(), lstm)
        for ours, theirs in zip((got[0], *got[1]), (expected[0], *expected[1]), strict=True):
            th.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)
    episode_starts[2, 3] = 1.0  # an episode starting inside a sequence
    expected = RecurrentActorCriticPolicy._process_sequence(features, states, episode_starts.flatten(), lstm)
    got = recurrent_fast.whole_sequence_lstm(features, states, episode_starts.flatten(), lstm)
    assert th.equal(got[0], expected[0])


@not_dividing
@pytest.mark.parametrize("n_envs, batch_size", [(1, 16), (2, 24), (3, None)])
def test_fast_minibatches_are_sb3_contribs(n_envs, batch_size):
    """recurrent_minibatches: the same random split, sequences and tensors as the buffer's get(), with their rows."""
    model = RecurrentPPOVariant("MlpLstmPolicy", make_env(n_envs=n_envs), policy_kwargs=SMALL_POLICY, **KWARGS)
    model.learn(2 * 32 * n_envs)
    twin = copy.deepcopy(model.rollout_buffer)
    np.random.seed(3)
    expected = list(model.rollout_buffer.get(batch_size))
    their_random_state = np.random.get_state()[1]
    np.random.seed(3)
    got = list(recurrent_fast.recurrent_minibatches(twin, batch_size))
    assert np.array_equal(np.random.get_state()[1], their_random_state)  # the same draws
    rows = []
    for ours, theirs in zip(got, expected, strict=True):
        for name, value in theirs._asdict().items():
            mine = getattr(ours, name)
            pairs = (
                zip((*mine.pi, *mine.vf), (*value.pi, *value.vf), strict=True) if name == "lstm_states" else [(mine, value)]
            )
            for part, expected_part in pairs:
                assert part.dtype == expected_part.dtype and th.equal(part, expected_part), name
        valid = ours.mask > 0
        th.testing.assert_close(ours.returns[valid], th.as_tensor(twin.returns[ours.rows[valid]]).flatten(), rtol=0, atol=0)
        rows.append(ours.rows[valid])
    assert sorted(th.cat(rows).tolist()) == list(range(32 * n_envs))  # every sample once


@pytest.mark.parametrize("objective", ["adaptive_kl", "fixed_kl"])
def test_kl_objectives_match_the_frozen_copy(objective, monkeypatch):
    """π_old replayed once per update (fast plan) trains as π_old's frozen copy on every minibatch (sb3-contrib's code)."""
    models = []
    for fast in (True, False):
        monkeypatch.setattr(RecurrentPPOVariant, "fast_update", fast)
        model = RecurrentPPOVariant(
            "MlpLstmPolicy", make_env(n_envs=2), objective=objective, learning_rate=3e-3, policy_kwargs=SMALL_POLICY, **KWARGS
        )
        models.append(model.learn(2 * 64))
    fast_model, reference = models
    assert fast_model.fast_path.old_policy is None and reference.fast_path.old_policy is not None
    assert_close_training_state(fast_model, reference, atol=1e-5)
    assert fast_model.kl_coef == pytest.approx(reference.kl_coef, rel=1e-4)


def test_predict_with_lstm_state_matches_recurrent_ppo():
    theirs = RecurrentPPO("MlpLstmPolicy", make_env(n_envs=2), policy_kwargs=SMALL_POLICY, **KWARGS).learn(64)
    ours = RecurrentPPOVariant("MlpLstmPolicy", make_env(n_envs=2), policy_kwargs=SMALL_POLICY, **KWARGS)
    ours.policy.load_state_dict(theirs.policy.state_dict())
    observations = np.random.default_rng(0).normal(size=(6, 2, 4)).astype(np.float32)
    episode_starts = np.array([[1, 1], [0, 0], [0, 1], [0, 0], [1, 0], [0, 0]], dtype=bool)
    for deterministic in (True, False):
        their_state = our_state = None
        for observation, episode_start in zip(observations, episode_starts, strict=True):
            th.manual_seed(0)
            their_action, their_state = theirs.predict(observation, their_state, episode_start, deterministic)
            th.manual_seed(0)
            our_action, our_state = ours.predict(observation, our_state, episode_start, deterministic)
            np.testing.assert_array_equal(our_action, their_action)
            for ours_part, theirs_part in zip(our_state, their_state, strict=True):
                np.testing.assert_array_equal(ours_part, theirs_part)
    assert their_state is not None and their_state[0].shape == (1, 2, 16)


def record_kl(model) -> list:
    """Wrap model.objective.loss: record (kl, mask) of every minibatch the objective receives."""
    records = []
    loss = model.objective.loss

    def recording_loss(batch):
        records.append((batch.kl.detach().clone(), batch.mask.clone()))
        return loss(batch)

    model.objective.loss = recording_loss
    return records


@pytest.mark.parametrize("objective", ["adaptive_kl", "fixed_kl"])
def test_kl_is_zero_on_first_minibatch_and_positive_later(objective):
    model = RecurrentPPOVariant(
        "MlpLstmPolicy", make_env(n_envs=2), objective=objective, learning_rate=3e-3, policy_kwargs=SMALL_POLICY, **KWARGS
    )
    records = record_kl(model)
    first_minibatches = []
    original_run_epochs = model._run_epochs

    def run_epochs(*args, **kwargs):
        first_minibatches.append(len(records))
        return original_run_epochs(*args, **kwargs)

    model._run_epochs = run_epochs
    model.learn(2 * 64)
    assert len(first_minibatches) == 2
    for index in first_minibatches:
        kl, mask = records[index]
        # π_old is replayed once per update over the rollout's sequences, π_θ over the minibatch's: the same LSTM
        # computation from the same stored states, up to float order
        assert mask.any() and kl[mask].abs().max() <= 1e-6
    later = [kl[mask] for index, (kl, mask) in enumerate(records) if index not in first_minibatches]
    assert all(th.isfinite(kl).all() and (kl > -1e-6).all() for kl in later)  # >= 0 up to float rounding
    assert max(kl.max().item() for kl in later) > 0


@not_dividing
@pytest.mark.parametrize(
    "env_id, n_envs, policy_kwargs",
    [
        ("CartPole-v1", 2, {}),
        ("CartPole-v1", 1, dict(shared_lstm=True, enable_critic_lstm=False)),
        ("Pendulum-v1", 2, {}),
    ],
)
def test_replayed_old_policy_reproduces_rollout_log_probs(env_id, n_envs, policy_kwargs):
    model = RecurrentPPOVariant(
        "MlpLstmPolicy",
        make_env(env_id, n_envs),
        log_kl=True,  # keeps π_old's frozen copy
        policy_kwargs={**SMALL_POLICY, **policy_kwargs},
        **{**KWARGS, "batch_size": 24},
    )
    keep = KeepRolloutPolicy()
    model.learn(2 * 32 * n_envs, callback=keep)
    old_policy = keep.policy  # the policy that collected the last rollout
    checked = 0
    for rollout_data in model._minibatches(24):
        valid = model._valid_mask(rollout_data)
        actions = rollout_data.actions.long().flatten() if env_id == "CartPole-v1" else rollout_data.actions
        with th.no_grad():
            log_prob = model._distribution(old_policy, rollout_data).log_prob(actions)
            current = model._distribution(model.policy, rollout_data).log_prob(actions)
        th.testing.assert_close(log_prob[valid], rollout_data.old_log_prob[valid], atol=1e-5, rtol=0)
        assert not th.allclose(current[valid], rollout_data.old_log_prob[valid], atol=1e-5)  # π_θ has moved
        checked += int(valid.sum())
    assert checked == 32 * n_envs  # every sample of the rollout, once


GARBAGE = {
    "observations": math.inf,
    "actions": math.nan,
    "old_log_prob": -math.inf,
    "advantages": 1e38,
    "returns": math.inf,
    "old_values": -1e38,
}


def with_garbage_padding(rollout_data, valid):
    replaced = {}
    for name, value in GARBAGE.items():
        tensor = getattr(rollout_data, name)
        shape = (-1,) + (1,) * (tensor.dim() - 1)
        if not tensor.is_floating_point():  # e.g. Discrete actions: an index far out of range
            value = 2**40
        replaced[name] = th.where(valid.view(shape), tensor, th.full_like(tensor, value))
    return rollout_data._replace(**replaced)


@not_dividing
@pytest.mark.parametrize("objective", OBJECTIVES)
def test_padding_garbage_changes_nothing(objective):
    model = RecurrentPPOVariant(
        "MlpLstmPolicy",
        make_env(n_envs=2),
        objective=objective,
        log_kl=True,
        clip_range_vf=0.2,
        ent_coef=0.01,
        policy_kwargs=SMALL_POLICY,
        **{**KWARGS, "batch_size": 24},
    )
    keep = KeepRolloutPolicy()
    model.learn(2 * 64, callback=keep)  # π_θ differs from π_old (the last rollout's policy)
    old_policy = OldPolicy(keep.policy, model._distribution)
    padded = [data for data in model._minibatches(24) if not model._valid_mask(data).all()]
    assert padded, "no minibatch with padding"
    for rollout_data in padded[:2]:
        valid = model._valid_mask(rollout_data)
        garbage = with_garbage_padding(rollout_data, valid)
        assert not th.isfinite(garbage.observations).all()
        results = []
        for data in (rollout_data, garbage):
            model.policy.optimizer.zero_grad()
            coefficients = LossCoefficients(0.2, 0.2, model.ent_coef, model.vf_coef, normalize_advantage=True)
            loss, terms = model._minibatch_loss(data, old_policy, coefficients)
            loss.backward()
            gradients = [parameter.grad.clone() for parameter in model.policy.parameters() if parameter.grad is not None]
            results.append((terms, gradients))
        (clean_terms, clean_gradients), (garbage_terms, garbage_gradients) = results
        assert clean_terms.keys() == garbage_terms.keys()
        for name, value in clean_terms.items():
            assert th.isfinite(garbage_terms[name]), name
            assert th.equal(garbage_terms[name], value), name
        assert garbage_gradients and all(th.isfinite(gradient).all() for gradient in garbage_gradients)
        for clean, dirty in zip(clean_gradients, garbage_gradients, strict=True):
            assert th.equal(clean, dirty)


@pytest.mark.parametrize("objective", OBJECTIVES)
def test_every_objective_trains(objective):
    model = RecurrentPPOVariant("MlpLstmPolicy", make_env(n_envs=2), objective=objective, policy_kwargs=SMALL_POLICY, **KWARGS)
    model.learn(4 * 64)
    values = model.logger.name_to_value
    assert math.isfinite(values["train/loss"])
    if objective in ("adaptive_kl", "fixed_kl"):
        assert values["train/kl"] > 0


def test_save_load_keeps_beta_and_objective(tmp_path):
    model = RecurrentPPOVariant(
        "MlpLstmPolicy", make_env(), objective="adaptive_kl", kl_target=1e-4, policy_kwargs=SMALL_POLICY, **KWARGS
    )
    model.learn(3 * 32)
    beta = model.kl_coef
    assert beta != 1.0
    model.save(tmp_path / "model")
    loaded = RecurrentPPOVariant.load(tmp_path / "model", env=make_env())
    assert isinstance(loaded, RecurrentPPOVariant) and isinstance(loaded.objective, AdaptiveKLPenalty)
    assert loaded.kl_coef == beta
    seen = []
    original_loss = loaded.objective.loss
    loaded.objective.loss = lambda batch: seen.append(loaded.objective.kl_coef) or original_loss(batch)
    loaded.learn(32, reset_num_timesteps=False)
    assert seen[0] == beta
    assert loaded.num_timesteps == 4 * 32


class NotAnEnv:
    """Creating a model with this env would fail; every check must fire before the env is touched."""


@pytest.mark.parametrize("policy", ["MlpPolicy", ActorCriticPolicy])
def test_non_recurrent_policy_is_rejected(policy):
    with pytest.raises((TypeError, ValueError), match="recurrent"):
        RecurrentPPOVariant(policy, NotAnEnv())  # type: ignore[arg-type]


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
        RecurrentPPOVariant("MlpLstmPolicy", NotAnEnv(), **kwargs)  # type: ignore[arg-type]
