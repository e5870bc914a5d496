"""
The update's fast paths (sb3_ppo_variants.update) give SB3 PPO's numbers: with objective="clip" and the same seed,
PPOVariant equals SB3 PPO bitwise (every parameter and optimizer state tensor) while the fast minibatches, the fast
policy evaluation and the flat Adam run; every case they do not cover runs SB3's code and is still equal.
"""

import numpy as np
import pytest
import torch as th
from conftest import assert_same_training_state
from stable_baselines3 import PPO
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import IdentityEnvMultiBinary, IdentityEnvMultiDiscrete

from sb3_ppo_variants import ClippedSurrogate, ObjectiveOutput, PPOVariant, fast_policy
from sb3_ppo_variants import kl as kl_module
from sb3_ppo_variants import update as fast_update
from sb3_ppo_variants.engine import clone_tensors
from sb3_ppo_variants.old_policy import OldDistributions, OldPolicy

FAST_CASES = {
    # Categorical, 4 envs, entropy bonus
    "cartpole_4_envs": ("CartPole-v1", 4, dict(n_steps=64, batch_size=32, n_epochs=3, ent_coef=0.01)),
    # 1-d Gaussian, value clipping, a batch size that leaves a truncated last minibatch
    "pendulum_vf_clip": ("Pendulum-v1", 1, dict(n_steps=128, batch_size=48, n_epochs=3, clip_range_vf=0.1, ent_coef=0.01)),
    # 3-d Gaussian, float64 observations, SB3 PPO's defaults but a shorter rollout
    "hopper": ("Hopper-v5", 1, dict(n_steps=256, n_epochs=3)),
    # separate extractors and networks of different sizes, ReLU, schedules
    "acrobot_separate_relu": (
        "Acrobot-v1",
        2,
        dict(
            n_steps=64,
            batch_size=32,
            n_epochs=2,
            learning_rate=lambda p: 1e-3 * p,
            clip_range=lambda p: 0.3 * p,
            policy_kwargs=dict(net_arch=dict(pi=[32, 16], vf=[24]), activation_fn=th.nn.ReLU, share_features_extractor=False),
        ),
    ),
    # early stopping on the approximate KL
    "cartpole_target_kl": (
        "CartPole-v1",
        1,
        dict(n_steps=128, batch_size=32, n_epochs=10, learning_rate=3e-3, target_kl=0.002),
    ),
    # the whole rollout as one minibatch
    "pendulum_full_batch": ("Pendulum-v1", 2, dict(n_steps=64, batch_size=128, n_epochs=4)),
}


def train_pair(env_id, n_envs, kwargs, updates=3, variant_kwargs=None, callback=None):
    """SB3 PPO and PPOVariant (clip), same seed and hyperparameters, after ``updates`` updates."""
    models = []
    for algo in (PPO, PPOVariant):
        env = make_vec_env(env_id, n_envs=n_envs, seed=5)
        extra = dict(variant_kwargs or {}) if algo is PPOVariant else {}
        model = algo("MlpPolicy", env, seed=5, device="cpu", **kwargs, **extra)
        models.append(model.learn(updates * kwargs["n_steps"] * n_envs, callback=callback() if callback else None))
    return models


def assert_fast_update_ran(model):
    """The fast evaluation and the flat Adam were in use for the last update (the gradients share one flat buffer)."""
    assert model.fast_path.policy_evaluation is None and model.fast_path.optimizer_step is None, model.fast_path
    storages = {parameter.grad.untyped_storage().data_ptr() for parameter in model.policy.parameters()}
    assert len(storages) == 1


@pytest.mark.parametrize("case", list(FAST_CASES))
def test_fast_update_matches_sb3_ppo(case):
    env_id, n_envs, kwargs = FAST_CASES[case]
    sb3_ppo, variant = train_pair(env_id, n_envs, kwargs)
    assert_fast_update_ran(variant)
    assert variant._n_updates == sb3_ppo._n_updates
    assert_same_training_state(variant, sb3_ppo)
    # the buffer is left as SB3's get() leaves it (flattened in place)
    assert variant.rollout_buffer.generator_ready and sb3_ppo.rollout_buffer.generator_ready
    for name in ("observations", "actions", "values", "log_probs", "advantages", "returns"):
        assert np.array_equal(getattr(variant.rollout_buffer, name), getattr(sb3_ppo.rollout_buffer, name)), name


def test_fast_minibatches_are_sb3s():
    """Same minibatches (values, dtypes, shapes) and the same NumPy RNG state afterwards, float64 observations."""
    model = PPOVariant("MlpPolicy", "Hopper-v5", n_steps=100, seed=0, device="cpu")
    model.learn(100)  # one rollout (and one update, which flattens the buffer)
    buffer = model.rollout_buffer
    for batch_size in (32, None):
        np.random.seed(3)
        expected = list(buffer.get(batch_size))
        state = np.random.get_state()
        np.random.seed(3)
        got = list(fast_update.fast_minibatches(buffer, batch_size))
        assert np.array_equal(np.random.get_state()[1], state[1])
        assert len(got) == len(expected)
        for ours, theirs in zip(got, expected, strict=True):
            assert ours._fields[:-1] == theirs._fields and ours._fields[-1] == "rows"  # SB3's fields, then the rows
            for our_tensor, their_tensor in zip(ours[:-1], theirs, strict=True):
                assert our_tensor.dtype == their_tensor.dtype and our_tensor.shape == their_tensor.shape
                assert th.equal(our_tensor, their_tensor)


@pytest.mark.parametrize("env_id", ["Pendulum-v1", "CartPole-v1"])
@pytest.mark.parametrize("objective", ["adaptive_kl", "fixed_kl", "clip_log_kl"])
def test_kl_objectives_same_with_and_without_fast_update(objective, env_id, monkeypatch):
    """
    The exact KL reads π_θ from the fast evaluation and π_old from its parameters computed once per update
    (OldDistributions): the same β, train/kl and training state as SB3's evaluation with π_old's frozen copy.
    """
    kwargs = dict(n_steps=128, batch_size=32, n_epochs=3, seed=1, device="cpu")
    if objective == "clip_log_kl":
        kwargs.update(objective="clip", log_kl=True)
    else:
        kwargs.update(objective=objective)
    models, kls = [], []
    for fast in (True, False):
        monkeypatch.setattr(PPOVariant, "fast_update", fast)
        model = PPOVariant("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=1), **kwargs)
        model.learn(3 * 256)
        models.append(model)
        kls.append(model.logger.name_to_value.get("train/kl"))
    fast_model, slow_model = models
    assert_fast_update_ran(fast_model)
    assert slow_model.fast_path.policy_evaluation == "fast_update = False"
    assert slow_model.fast_path.optimizer_step is not None
    # π_old: parameters vs frozen copy
    assert fast_model.fast_path.old_policy is None
    assert slow_model.fast_path.old_policy == "frozen copy: the minibatches do not carry their rows"
    assert_same_training_state(fast_model, slow_model)
    assert fast_model.kl_coef == slow_model.kl_coef
    assert kls[0] is not None and kls[0] == kls[1]


class LoggingBuffer(RolloutBuffer):
    """A RolloutBuffer subclass (so not covered by the fast minibatches) that counts get() calls."""

    calls = 0

    def get(self, batch_size=None):
        type(self).calls += 1
        return super().get(batch_size)


class ConstantObjective(ClippedSurrogate):
    """A policy loss that ignores the ratio: the actor head gets no gradient, which SB3's Adam skips."""

    def loss(self, batch):
        return ObjectiveOutput(batch.advantages.mean() * 0.0)


FALLBACK_CASES = {
    # custom buffer class: SB3's get() (the evaluation and Adam stay fast)
    "buffer_subclass": dict(kwargs=dict(rollout_buffer_class=LoggingBuffer), fast_adam=True),
    # other optimizers or Adam settings: SB3's clip_grad_norm_ and optimizer.step()
    "rmsprop": dict(kwargs=dict(policy_kwargs=dict(optimizer_class=th.optim.RMSprop)), fast_adam=False),
    "adam_amsgrad_weight_decay": dict(
        kwargs=dict(policy_kwargs=dict(optimizer_kwargs=dict(amsgrad=True, weight_decay=1e-3))), fast_adam=False
    ),
    # gSDE: SB3's evaluate_actions, hence SB3's optimizer step too
    "gsde": dict(kwargs=dict(use_sde=True, sde_sample_freq=4), fast_adam=False),
}


@pytest.mark.parametrize("case", list(FALLBACK_CASES))
def test_fallbacks_match_sb3_ppo(case):
    LoggingBuffer.calls = 0
    setup = FALLBACK_CASES[case]
    kwargs = dict(n_steps=64, batch_size=32, n_epochs=2, **setup["kwargs"])
    sb3_ppo, variant = train_pair("Pendulum-v1", 2, kwargs)
    assert (variant.fast_path.optimizer_step is None) == setup["fast_adam"], variant.fast_path
    if case == "buffer_subclass":
        assert LoggingBuffer.calls == 2 * 3 * 2  # n_epochs × updates, for each of the two models
    assert_same_training_state(variant, sb3_ppo)


def test_parameters_without_gradient_fall_back(monkeypatch):
    """A loss whose graph misses parameters runs the optimizer's own step (parameters without grad are skipped)."""
    models = []
    for fast in (True, False):
        monkeypatch.setattr(PPOVariant, "fast_update", fast)
        model = PPOVariant("MlpPolicy", "Pendulum-v1", objective=ConstantObjective(0.2), n_steps=64, batch_size=32, seed=2)
        models.append(model.learn(3 * 64))
    # fast evaluation, SB3's optimizer step: after the first update, the parameters' Adam step counts differ
    assert models[0].fast_path.policy_evaluation is None
    assert models[0].fast_path.optimizer_step.startswith("the optimizer's state is not one flat layout can hold")
    assert models[0].policy.action_net.weight.grad is None
    # log_std is reached only through the entropy (ent_coef = 0): the graph was built again with it, as SB3's is
    assert models[0].fast_path.entropy_graph == "a parameter is reached only through the entropy"
    assert models[0].policy.log_std.grad is not None
    assert_same_training_state(*models)


def test_zero_entropy_coefficient_leaves_entropy_out_of_the_graph():
    """With ent_coef = 0 the fast evaluation computes the entropy without autograd; ent_coef > 0 keeps it in."""
    for ent_coef, expected in ((0.0, False), (0.01, True)):
        model = PPOVariant("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=32, n_epochs=1, ent_coef=ent_coef, seed=0)
        model.learn(64)
        assert (model.fast_path.entropy_graph is not None) is expected
        minibatch = next(iter(model._minibatches(32)))
        _, _, entropy, _ = model._evaluate_actions(minibatch, minibatch.actions.long().flatten())
        assert entropy.requires_grad is expected
        assert np.isfinite(model.logger.name_to_value["train/entropy_loss"])


OLD_DISTRIBUTION_CASES = {
    "gaussian": ("Hopper-v5", {}),
    "categorical": ("CartPole-v1", {}),
    "multi_categorical": (lambda: IdentityEnvMultiDiscrete(3), {}),
    "bernoulli": (lambda: IdentityEnvMultiBinary(3), {}),
    "squashed_gsde": ("Pendulum-v1", dict(use_sde=True, policy_kwargs=dict(squash_output=True))),
}


@pytest.mark.parametrize("case", list(OLD_DISTRIBUTION_CASES))
def test_old_distributions_equal_the_frozen_copy(case):
    """
    π_old's parameters, computed once per update over the rollout in chunks and gathered by each minibatch's rows,
    give bitwise the KL that π_old's frozen copy gives on the minibatch; and the KL is exactly 0 before any step.
    """
    env, kwargs = OLD_DISTRIBUTION_CASES[case]
    env = make_vec_env(env, seed=0)
    model = PPOVariant("MlpPolicy", env, n_steps=1500, batch_size=64, n_epochs=1, objective="fixed_kl", seed=0, **kwargs)
    model.learn(1500)  # one rollout and update
    old_distributions = model._capture_old_policy()
    assert isinstance(old_distributions, OldDistributions)
    assert all(len(parameter) == 1500 for parameter in old_distributions.parameters)
    frozen = OldPolicy(model.policy, model._distribution)
    generator = th.Generator().manual_seed(0)
    model.policy.set_training_mode(False)
    with th.no_grad():
        for rollout_data in model._minibatches(64):  # the last one is truncated (1500 = 23 * 64 + 28)
            observations = rollout_data.observations
            kl = old_distributions.kl(rollout_data, model.policy.get_distribution(observations))
            assert th.equal(kl, th.zeros(len(observations)))
    # a different π_θ, so that the comparison is not one of zeros
    with th.no_grad():
        for parameter in model.policy.parameters():
            parameter.add_(0.1 * th.randn(parameter.shape, generator=generator))
        for rollout_data in model._minibatches(64):
            observations = rollout_data.observations
            ours = old_distributions.kl(rollout_data, model.policy.get_distribution(observations))
            new = model.policy.get_distribution(observations)
            theirs = kl_module.kl_between(frozen.policy.get_distribution(observations), new)
            assert ours.max() > 1e-3 and th.equal(ours, theirs)


def test_old_policy_falls_back_to_the_frozen_copy(monkeypatch):
    """SB3's minibatches (fast_update=False, a buffer subclass) carry no rows: π_old is then the frozen copy."""
    for fast, kwargs in ((False, {}), (True, dict(rollout_buffer_class=LoggingBuffer))):
        monkeypatch.setattr(PPOVariant, "fast_update", fast)
        model = PPOVariant("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, objective="adaptive_kl", **kwargs)
        model.learn(64)
        assert model.fast_path.old_policy == "frozen copy: the minibatches do not carry their rows"
        assert isinstance(model._capture_old_policy(), OldPolicy)
    # a distribution family without a closed-form KL: no parameters to keep
    assert OldDistributions.capture([object()]) is None


class ReloadOptimizer(BaseCallback):
    """Replaces the optimizer's state tensors (load_state_dict) before every update."""

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        optimizer = self.model.policy.optimizer
        optimizer.load_state_dict(
            {"state": clone_tensors(optimizer.state_dict()["state"]), "param_groups": optimizer.state_dict()["param_groups"]}
        )


def test_replaced_optimizer_state_is_adopted():
    """load_state_dict replaces Adam's state tensors: the next update adopts them, and training stays SB3's."""
    sb3_ppo, variant = train_pair(
        "CartPole-v1", 1, dict(n_steps=64, batch_size=32, n_epochs=2), updates=4, callback=ReloadOptimizer
    )
    assert_fast_update_ran(variant)
    assert_same_training_state(variant, sb3_ppo)


def test_fast_evaluation_unsupported_cases():
    model = PPOVariant("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, device="cpu")
    assert fast_policy.fast_policy_unsupported_reason(model.policy, use_sde=False) is None
    assert fast_policy.fast_policy_unsupported_reason(model.policy, use_sde=True) == "gSDE"
    handle = model.policy.action_net.register_full_backward_hook(lambda *args: None)
    assert "hooks" in fast_policy.fast_policy_unsupported_reason(model.policy, use_sde=False)
    handle.remove()
    optimizer, parameters = model.policy.optimizer, list(model.policy.parameters())
    assert fast_update.flat_adam_unsupported_reason(optimizer, parameters) is None
    assert "policy's parameters" in fast_update.flat_adam_unsupported_reason(optimizer, parameters[:-1])
    handle = optimizer.register_step_pre_hook(lambda *args: None)
    assert fast_update.flat_adam_unsupported_reason(optimizer, parameters) == "optimizer hooks"
    handle.remove()


@pytest.mark.parametrize("n", [7, 80, 500])
@pytest.mark.parametrize("batch", [1, 8, 256])
def test_one_hot_linear_is_linear_of_one_hot_rows(n, batch):
    """
    A first linear layer on one-hot Discrete observations, as fast_policy computes it (the weight's columns gathered;
    addmm's gradients from the one-hot rows), gives bitwise F.linear's outputs and weight and bias gradients.
    """
    generator = th.Generator().manual_seed(n + batch)
    weight = (0.3 * th.randn(64, n, generator=generator)).requires_grad_()
    bias = (0.1 * th.randn(64, generator=generator)).requires_grad_()
    indices = th.randint(0, n, (batch,), generator=generator)
    rows = th.nn.functional.one_hot(indices, n).float()
    output_grad = th.randn(batch, 64, generator=generator)
    expected = th.nn.functional.linear(rows, weight, bias)
    fast = fast_policy._one_hot_linear(fast_policy.OneHot(indices, rows), weight, bias)
    assert th.equal(fast, expected)
    with th.no_grad():  # the rollout's form: no rows
        assert th.equal(fast_policy._one_hot_linear(fast_policy.OneHot(indices, None), weight, bias), expected)
    expected_grads = th.autograd.grad(th.tanh(expected), (weight, bias), output_grad)
    fast_grads = th.autograd.grad(th.tanh(fast), (weight, bias), output_grad)
    assert all(th.equal(a, b) for a, b in zip(fast_grads, expected_grads, strict=True))


@pytest.mark.parametrize("seed", range(3))
def test_adam_kernels_do_not_depend_on_position(seed):
    """
    FlatAdam's premise: each element-wise operation of Adam (and the clip coefficient's multiplication) gives the
    same result per element on one flat tensor as on the per-parameter tensors (vectorised body or scalar tail).
    """
    generator = th.Generator().manual_seed(seed)
    sizes = [704, 64, 4096, 64, 704, 64, 4096, 64, 192, 3, 64, 1, 3, 7, 17, 33]
    total = sum(sizes)

    def parts(flat):
        return list(th.split(flat.clone(), sizes))

    grad = th.randn(total, generator=generator) * 10 ** -th.randint(0, 6, (total,), generator=generator)
    exp_avg = th.randn(total, generator=generator) * 1e-3
    exp_avg_sq = th.rand(total, generator=generator) * 1e-5
    param = th.randn(total, generator=generator)
    coef = th.rand((), generator=generator)
    operations = {
        "mul_tensor": lambda p, e, s, g: g.mul_(coef),
        "lerp": lambda p, e, s, g: e.lerp_(g, 1 - 0.9),
        "mul": lambda p, e, s, g: s.mul_(0.999),
        "addcmul": lambda p, e, s, g: s.addcmul_(g, g, value=1 - 0.999),
        "sqrt_div_add": lambda p, e, s, g: s.sqrt().div_(0.3**0.5).add_(1e-5),
        "addcdiv": lambda p, e, s, g: p.addcdiv_(e, s + 1e-5, value=-3e-4 / 0.1),
    }
    for name, operation in operations.items():
        flat = operation(param.clone(), exp_avg.clone(), exp_avg_sq.clone(), grad.clone())
        per_tensor = [
            operation(*tensors) for tensors in zip(parts(param), parts(exp_avg), parts(exp_avg_sq), parts(grad), strict=True)
        ]
        assert th.equal(flat, th.cat(per_tensor)), name


class EvenRowsValid(PPOVariant):
    """A variant that counts only the even rows of each minibatch (as a padded recurrent minibatch would)."""

    def _valid_mask(self, rollout_data):
        return th.arange(len(rollout_data.returns)) % 2 == 0


def test_old_distributions_keep_rows_through_invalid_row_zeroing():
    """Zeroing the invalid rows (a new named tuple) keeps the minibatch's rows, so the cached π_old still applies."""
    model = EvenRowsValid("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=32, n_epochs=2, objective="fixed_kl", seed=0)
    model.learn(128)
    assert isinstance(model._capture_old_policy(), OldDistributions)
    assert model.logger.name_to_value["train/kl"] > 0
