"""
The recurrent fast rollout loop (``recurrent_rollout.py``): the same rollouts as sb3-contrib's
``RecurrentPPO.collect_rollouts``, the same callbacks, and sb3-contrib's loop wherever the fast loop does not apply.

With ``rollout_lstm_cell = False`` the fast loop runs the same torch operations as sb3-contrib's (the kernel that
``nn.LSTM`` calls, the heads, the sampling) on tensors of the same shapes: its rollouts are compared bitwise
(``np.array_equal``/``th.equal``). With the default ``torch.lstm_cell`` step, the LSTM's float order differs from the
oneDNN primitive that ``nn.LSTM`` runs: values within 1e-6, the same draws (RNG states equal) and the same discrete
actions.
"""

import copy
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from conftest import assert_close_training_state, assert_same_training_state
from gymnasium.wrappers import FlattenObservation
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.envs import InvalidActionEnvDiscrete, InvalidActionEnvMultiDiscrete
from sb3_contrib.ppo_recurrent.policies import MlpLstmPolicy
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import FakeImageEnv
from stable_baselines3.common.vec_env import VecNormalize

from sb3_ppo_variants import MaskableRecurrentPPOVariant, RecurrentPPOVariant
from sb3_ppo_variants.recurrent_rollout import FastLstmActorCritic

SEED = 3
SMALL_POLICY = dict(lstm_hidden_size=16, net_arch=dict(pi=[16], vf=[16]))
#: the buffer's arrays that collect_rollouts fills (advantages and returns from its values and rewards)
FIELDS = (
    "observations",
    "actions",
    "rewards",
    "values",
    "log_probs",
    "episode_starts",
    "advantages",
    "returns",
    "hidden_states_pi",
    "cell_states_pi",
    "hidden_states_vf",
    "cell_states_vf",
)


class KeepRollouts(BaseCallback):
    """At every rollout's end (before the update flattens the buffer): the buffer, the LSTM states, the RNG states."""

    def __init__(self) -> None:
        super().__init__()
        self.rollouts: list[dict[str, Any]] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        buffer = self.model.rollout_buffer
        fields = [*FIELDS, "action_masks"] if hasattr(buffer, "action_masks") else FIELDS
        kept = {name: getattr(buffer, name).copy() for name in fields}
        kept["_last_lstm_states"] = [t.clone() for states in self.model._last_lstm_states for t in states]
        kept["_last_obs"] = self.model._last_obs.copy()
        kept["_last_episode_starts"] = self.model._last_episode_starts.copy()
        kept["torch_rng"] = th.get_rng_state()
        kept["numpy_rng"] = np.random.get_state()[1].copy()
        self.rollouts.append(kept)


def assert_same_rollout(ours: dict[str, Any], theirs: dict[str, Any], atol: float = 0.0) -> None:
    """
    Equal rollouts: bitwise (``atol=0``, the same operations as sb3-contrib's), or float values within ``atol`` (the
    LSTM cell's float order); the RNG states and integer arrays (discrete actions, episode starts) always exactly.
    """
    assert ours.keys() == theirs.keys()
    for name, value in theirs.items():
        if name == "_last_lstm_states":
            for our_state, their_state in zip(ours[name], value, strict=True):
                th.testing.assert_close(our_state, their_state, atol=atol, rtol=0, msg=name)
        elif name in ("torch_rng", "numpy_rng") or atol == 0:
            assert np.array_equal(ours[name], value), name
        else:
            np.testing.assert_allclose(ours[name], value, atol=atol, rtol=0, err_msg=name)


#: the two LSTM steps of the fast loop: nn.LSTM's kernel (bitwise sb3-contrib's), torch.lstm_cell (the default)
KERNELS = {"nn_lstm_kernel": (False, 0.0), "lstm_cell": (True, 1e-6)}


def make_env(env_id: str, n_envs: int, time_limit: int | None = None, normalize: bool = False) -> Any:
    env_kwargs = {} if time_limit is None else dict(max_episode_steps=time_limit)
    env = make_vec_env(env_id, n_envs=n_envs, seed=SEED, env_kwargs=env_kwargs)
    return VecNormalize(env) if normalize else env


def invalid_env(space: str, n_envs: int = 2, n_invalid_actions: int = 3) -> Any:
    if space == "Discrete":
        env_class, kwargs = InvalidActionEnvDiscrete, dict(dim=5)
    else:
        env_class, kwargs = InvalidActionEnvMultiDiscrete, dict(dims=[3, 3])
    kwargs = {**kwargs, "n_invalid_actions": n_invalid_actions, "ep_length": 7}
    # sb3-contrib's LSTM buffers take Box observations: the identity envs' Discrete ones as one-hot vectors
    return make_vec_env(env_class, n_envs=n_envs, seed=SEED, env_kwargs=kwargs, wrapper_class=FlattenObservation)


ROLLOUT_CASES = {
    # env id, n_envs, time limit (truncations bootstrapped with the critic's state), policy kwargs, extra arguments
    "cartpole_1_env": ("CartPole-v1", 1, None, {}, {}),
    "cartpole_3_envs_limit_9": ("CartPole-v1", 3, 9, {}, {}),
    "shared_lstm": ("CartPole-v1", 3, 12, dict(shared_lstm=True, enable_critic_lstm=False), {}),
    "no_critic_lstm": ("Pendulum-v1", 2, 15, dict(enable_critic_lstm=False), {}),
    "two_lstm_layers_separate_extractors": (
        "CartPole-v1",
        2,
        10,
        dict(n_lstm_layers=2, share_features_extractor=False),
        {},
    ),
    "pendulum_vecnormalize_relu": ("Pendulum-v1", 2, 15, dict(activation_fn=th.nn.ReLU), dict(normalize=True)),
}


def rollout_model(algo: type, case: str) -> Any:
    env_id, n_envs, time_limit, policy_kwargs, extra = ROLLOUT_CASES[case]
    env = make_env(env_id, n_envs, time_limit, normalize=extra.get("normalize", False))
    kwargs = dict(n_steps=24, batch_size=24, n_epochs=2, seed=SEED, device="cpu")
    return algo("MlpLstmPolicy", env, policy_kwargs={**SMALL_POLICY, **policy_kwargs}, **kwargs)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("case", list(ROLLOUT_CASES))
def test_first_rollout_is_recurrent_ppos(case, kernel, monkeypatch):
    """
    The same seed, the same parameters: the rollout buffer, LSTM states and RNG states RecurrentPPO's (bitwise with
    ``nn.LSTM``'s kernel, within 1e-6 with the LSTM cell).
    """
    lstm_cell, atol = KERNELS[kernel]
    monkeypatch.setattr(RecurrentPPOVariant, "rollout_lstm_cell", lstm_cell)
    kept = []
    for algo in (RecurrentPPO, RecurrentPPOVariant):
        model = rollout_model(algo, case)
        callback = KeepRollouts()
        model.learn(model.n_steps * model.n_envs, callback=callback)  # one rollout
        kept.append(callback.rollouts[0])
    assert model.fast_path.rollout_loop is None
    assert_same_rollout(kept[1], kept[0], atol)
    if ROLLOUT_CASES[case][2] is not None:  # a time limit shorter than the rollout: episodes ended inside it
        assert kept[0]["episode_starts"][1:].any()


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("case", list(ROLLOUT_CASES))
def test_fast_loop_trains_as_sb3_contribs_loop(case, kernel, monkeypatch):
    """
    Three rollouts and updates, with the fast loop and with sb3-contrib's (``fast_rollout = False``) under the same
    update: every rollout, the LSTM states carried between rollouts, the parameters and Adam's state equal (bitwise
    with ``nn.LSTM``'s kernel; with the LSTM cell, rollouts within 1e-6 and the training state within 1e-5).
    """
    lstm_cell, atol = KERNELS[kernel]
    monkeypatch.setattr(RecurrentPPOVariant, "rollout_lstm_cell", lstm_cell)
    runs = []
    for fast in (False, True):
        monkeypatch.setattr(RecurrentPPOVariant, "fast_rollout", fast)
        model = rollout_model(RecurrentPPOVariant, case)
        callback = KeepRollouts()
        model.learn(3 * model.n_steps * model.n_envs, callback=callback)
        assert (model.fast_path.rollout_loop is None) == fast
        runs.append((model, callback.rollouts))
    (slow, slow_rollouts), (fast_model, fast_rollouts) = runs
    assert len(fast_rollouts) == len(slow_rollouts) == 3
    for ours, theirs in zip(fast_rollouts, slow_rollouts, strict=True):
        assert_same_rollout(ours, theirs, atol)
    if atol == 0:
        assert_same_training_state(fast_model, slow)
    else:
        assert_close_training_state(fast_model, slow, atol=1e-5)


@pytest.mark.parametrize("kernel", list(KERNELS))
@pytest.mark.parametrize("use_masking", [True, False])
def test_masked_lstm_rollouts_are_sb3_contribs_loop(use_masking, kernel, monkeypatch):
    """The masked LSTM policy: masks read each step, applied to the logits and stored, as with sb3-contrib's loop."""
    lstm_cell, atol = KERNELS[kernel]
    monkeypatch.setattr(RecurrentPPOVariant, "rollout_lstm_cell", lstm_cell)
    runs = []
    for fast in (False, True):
        monkeypatch.setattr(RecurrentPPOVariant, "fast_rollout", fast)
        model = MaskableRecurrentPPOVariant(
            "MlpLstmPolicy", invalid_env("Discrete"), n_steps=16, batch_size=16, n_epochs=2, seed=SEED, device="cpu"
        )
        callback = KeepRollouts()
        model.learn(3 * 32, callback=callback, use_masking=use_masking)
        assert (model.fast_path.rollout_loop is None) == fast
        runs.append((model, callback.rollouts))
    (slow, slow_rollouts), (fast_model, fast_rollouts) = runs
    for ours, theirs in zip(fast_rollouts, slow_rollouts, strict=True):
        assert_same_rollout(ours, theirs, atol)
    # with masking some actions were illegal (stored masks hold zeros); without, every mask is all ones
    assert (fast_rollouts[0]["action_masks"].min() == 0) == use_masking
    if atol == 0:
        assert_same_training_state(fast_model, slow)
    else:
        assert_close_training_state(fast_model, slow, atol=1e-5)


def test_masked_lstm_without_masks_rolls_out_as_recurrent_ppo(monkeypatch):
    """
    ``use_masking=False``: the first rollout is RecurrentPPO's. sb3-contrib's ``MaskableCategorical`` normalises the
    logits twice (``apply_masking(None)`` in its constructor) where ``Categorical`` normalises them once, so the stored
    log-probabilities may differ in the last bit (within 1e-6); the probabilities, hence the draws, and everything
    else are bitwise equal.
    """
    monkeypatch.setattr(RecurrentPPOVariant, "rollout_lstm_cell", False)  # nn.LSTM's kernel: bitwise
    kept = []
    settings = dict(n_steps=16, batch_size=16, n_epochs=2, seed=SEED, device="cpu", policy_kwargs=SMALL_POLICY)
    for algo in (RecurrentPPO, MaskableRecurrentPPOVariant):
        callback = KeepRollouts()
        model = algo("MlpLstmPolicy", invalid_env("Discrete", n_invalid_actions=0), **settings)
        learn_kwargs = dict(use_masking=False) if algo is MaskableRecurrentPPOVariant else {}
        model.learn(32, callback=callback, **learn_kwargs)
        kept.append({name: value for name, value in callback.rollouts[0].items() if name != "action_masks"})
    assert model.fast_path.rollout_loop is None
    np.testing.assert_allclose(kept[1].pop("log_probs"), kept[0].pop("log_probs"), atol=1e-6, rtol=0)
    assert_same_rollout(kept[1], kept[0])


class RecordLocals(BaseCallback):
    """Every step's ``self.locals``: the values (copied), and for the objects, whether they are the model's own."""

    def __init__(self, stop_at: int | None = None) -> None:
        super().__init__()
        self.steps: list[dict[str, Any]] = []
        self.stop_at = stop_at

    def _on_step(self) -> bool:
        model, local = self.model, self.locals
        objects = {
            "self": local["self"] is model,
            "env": local["env"] is model.env,
            "rollout_buffer": local["rollout_buffer"] is model.rollout_buffer,
            "callback": isinstance(local["callback"], BaseCallback),
        }
        self.steps.append({name: objects.get(name, None) or copy.deepcopy(value) for name, value in local.items()})
        return self.stop_at is None or len(self.steps) < self.stop_at


def assert_same_locals(ours: Any, theirs: Any, name: str) -> None:
    if isinstance(theirs, th.Tensor):
        assert th.equal(ours, theirs), name
    elif isinstance(theirs, np.ndarray):
        assert np.array_equal(ours, theirs), name
    elif isinstance(theirs, dict):  # an info dict
        assert ours.keys() == theirs.keys(), name
        for key, value in theirs.items():
            if name.endswith("[episode]") and key == "t":  # Monitor's wall-clock time
                continue
            assert_same_locals(ours[key], value, f"{name}[{key}]")
    elif isinstance(theirs, tuple | list):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), name
        for our_item, their_item in zip(ours, theirs, strict=True):
            assert_same_locals(our_item, their_item, name)
    else:
        assert ours == theirs, name


@pytest.mark.parametrize("stop_at", [None, 7])
def test_callbacks_see_the_same_locals(stop_at, monkeypatch):
    """
    ``self.locals`` at every step: the same keys (``terminal_*`` after a truncation, ``idx``/``done_``) and values as
    in sb3-contrib's loop; a callback that stops training mid-rollout stops it at the same step.
    """
    monkeypatch.setattr(RecurrentPPOVariant, "rollout_lstm_cell", False)  # nn.LSTM's kernel: bitwise values
    fast_steps, fast_step = [], FastLstmActorCritic.step
    monkeypatch.setattr(FastLstmActorCritic, "step", lambda *a: fast_steps.append(1) or fast_step(*a))
    recorded = []
    for algo in (RecurrentPPO, RecurrentPPOVariant):
        model = algo(
            "MlpLstmPolicy",
            make_env("Pendulum-v1", 2, time_limit=5),
            n_steps=12,
            batch_size=24,
            n_epochs=1,
            seed=SEED,
            device="cpu",
            policy_kwargs=SMALL_POLICY,
        )
        callback = RecordLocals(stop_at)
        model.learn(24, callback=callback, tb_log_name="run")  # learn()'s locals are in self.locals too
        recorded.append((model, callback.steps))
    (theirs, their_steps), (ours, our_steps) = recorded
    assert len(fast_steps) == len(our_steps)  # the fast loop ran (a stopped run publishes no fast_path)
    assert len(our_steps) == len(their_steps) == (stop_at or 12)
    assert ours.num_timesteps == theirs.num_timesteps and ours.rollout_buffer.pos == theirs.rollout_buffer.pos
    assert "terminal_value" in their_steps[-1] or stop_at is not None
    for our_locals, their_locals in zip(our_steps, their_steps, strict=True):
        assert our_locals.keys() == their_locals.keys()
        for name, value in their_locals.items():
            assert_same_locals(our_locals[name], value, name)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
def test_nan_policy_output_raises_like_sb3_contrib(env_id, monkeypatch):
    """NaN parameters: the ValueError that torch's argument validation raises in sb3-contrib's loop at every step."""
    fast_steps, fast_step = [], FastLstmActorCritic.step
    monkeypatch.setattr(FastLstmActorCritic, "step", lambda *a: fast_steps.append(1) or fast_step(*a))
    errors = []
    for algo in (RecurrentPPO, RecurrentPPOVariant):
        model = algo("MlpLstmPolicy", env_id, n_steps=8, batch_size=8, seed=SEED, device="cpu", policy_kwargs=SMALL_POLICY)
        with th.no_grad():
            model.policy.action_net.bias.fill_(float("nan"))
        with pytest.raises(ValueError, match="Expected parameter") as error:
            model.learn(8)
        errors.append(str(error.value).split(" of ")[0])  # the parameter and its shape (torch also prints the values)
    assert fast_steps == [1]  # the variant's error came from the fast loop's first step
    assert errors[0] == errors[1]


class DictObservation(gym.ObservationWrapper):
    """An env's observation as the only entry of a Dict observation."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Dict({"obs": env.observation_space})

    def observation(self, observation: np.ndarray) -> dict[str, np.ndarray]:
        return {"obs": observation}


class OwnLstmPolicy(MlpLstmPolicy):
    """A custom policy (a subclass): the fast loop does not know what it changes."""


FALLBACK_CASES = {
    # algorithm, policy, env factory, arguments, learn arguments -> the reason fast_path gives for rollout_loop
    "gsde": (RecurrentPPOVariant, "MlpLstmPolicy", lambda: make_env("Pendulum-v1", 1), dict(use_sde=True), {}, "gSDE"),
    "custom_policy": (
        RecurrentPPOVariant,
        OwnLstmPolicy,
        lambda: make_env("CartPole-v1", 1),
        {},
        {},
        "policy class OwnLstmPolicy (only MlpLstmPolicy)",
    ),
    "cnn_lstm": (
        RecurrentPPOVariant,
        "CnnLstmPolicy",
        lambda: FakeImageEnv(screen_height=36, screen_width=36, n_channels=1),
        {},
        {},
        "policy class RecurrentActorCriticCnnPolicy (only MlpLstmPolicy)",
    ),
    "dict_observations": (
        RecurrentPPOVariant,
        "MultiInputLstmPolicy",
        lambda: make_vec_env("CartPole-v1", seed=SEED, wrapper_class=DictObservation),
        {},
        {},
        "rollout buffer class RecurrentDictRolloutBuffer",
    ),
    "masked_multidiscrete": (
        MaskableRecurrentPPOVariant,
        "MlpLstmPolicy",
        lambda: invalid_env("MultiDiscrete"),
        {},
        {},
        "action distribution MaskableMultiCategoricalDistribution",
    ),
    "fast_rollout_off": (
        MaskableRecurrentPPOVariant,
        "MlpLstmPolicy",
        lambda: invalid_env("Discrete"),
        dict(fast_rollout=False),
        dict(use_masking=True),
        "fast_rollout = False",
    ),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_unsupported_cases_run_sb3_contribs_loop(case, monkeypatch):
    """Every case the fast loop does not cover runs ``RecurrentPPO.collect_rollouts``, with the reason in the plan."""
    algo, policy, env_fn, arguments, learn_kwargs, reason = FALLBACK_CASES[case]
    arguments = dict(arguments)
    if "fast_rollout" in arguments:
        monkeypatch.setattr(RecurrentPPOVariant, "fast_rollout", arguments.pop("fast_rollout"))
    contrib_calls, fast_calls = [], []
    contrib_loop, fast_step = RecurrentPPO.collect_rollouts, FastLstmActorCritic.step
    monkeypatch.setattr(RecurrentPPO, "collect_rollouts", lambda *a: contrib_calls.append(1) or contrib_loop(*a))
    monkeypatch.setattr(FastLstmActorCritic, "step", lambda *a: fast_calls.append(1) or fast_step(*a))
    policy_kwargs = {} if policy == "CnnLstmPolicy" else SMALL_POLICY
    model = algo(policy, env_fn(), n_steps=8, batch_size=8, n_epochs=1, seed=SEED, policy_kwargs=policy_kwargs, **arguments)
    model.learn(2 * 8 * model.n_envs, **learn_kwargs)
    assert model.fast_path.rollout_loop == f"sb3-contrib's RecurrentPPO.collect_rollouts: {reason}"
    assert len(contrib_calls) == 2 and not fast_calls
