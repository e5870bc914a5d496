"""The variants since the paper: dual-clip, asymmetric clip, the KL-adaptive learning rate, coefficient schedules."""

import copy

import pytest
import torch as th
from conftest import assert_same_training_state
from sb3_contrib.common.envs import InvalidActionEnvDiscrete

from sb3_ppo_variants import (
    AsymmetricClipSurrogate,
    DualClipSurrogate,
    KLAdaptiveLR,
    MaskablePPOVariant,
    MaskableRecurrentPPOVariant,
    PolicyBatch,
    PPOVariant,
    RecurrentPPOVariant,
)
from sb3_ppo_variants.checks import ArgumentValueError

TINY = dict(n_steps=32, batch_size=16, n_epochs=2, seed=0, device="cpu")
LSTM = dict(policy_kwargs=dict(lstm_hidden_size=8, net_arch=[8]))
ALGORITHMS = ("ppo", "maskable", "recurrent", "maskable_recurrent")


def make_model(algorithm: str, **kwargs):
    """A tiny model of one of the four algorithms (masked ones on sb3-contrib's invalid-action env)."""
    settings = {**TINY, **kwargs}
    if algorithm == "ppo":
        return PPOVariant("MlpPolicy", "CartPole-v1", **settings)
    masked_env = InvalidActionEnvDiscrete(dim=8, n_invalid_actions=4)
    if algorithm == "maskable":
        return MaskablePPOVariant("MlpPolicy", masked_env, **settings)
    if algorithm == "recurrent":
        return RecurrentPPOVariant("MlpLstmPolicy", "CartPole-v1", **LSTM, **settings)
    return MaskableRecurrentPPOVariant("MlpLstmPolicy", masked_env, **LSTM, **settings)


# ----------------------------------------------------------------------------------------------------------------------
# The losses equal their formulas
# ----------------------------------------------------------------------------------------------------------------------


def test_dual_clip_hand_computed():
    ratio = th.tensor([0.5, 1.0, 1.5, 4.0, 5.0, 0.7])
    advantages = th.tensor([1.0, -1.0, 2.0, -1.0, -2.0, -0.5])
    # min(r Â, clip(r, 0.8, 1.2) Â), then max(·, 3 Â) where Â < 0: the 4th and 5th samples hit the bound 3 Â.
    expected = th.tensor([0.5, -1.0, 2.4, -3.0, -6.0, -0.4])
    out = DualClipSurrogate(clip_range=0.2, dual_clip=3.0).loss(PolicyBatch(ratio, advantages))
    assert th.allclose(out.loss, -expected.mean())
    assert out.diagnostics["dual_clip_fraction"].item() == pytest.approx(2 / 6)


def test_dual_clip_gradient_is_zero_where_the_bound_is_active():
    ratio = th.tensor([4.0, 1.1], requires_grad=True)
    DualClipSurrogate(0.2, 3.0).loss(PolicyBatch(ratio, th.tensor([-1.0, -1.0]))).loss.backward()
    assert ratio.grad is not None and ratio.grad[0] == 0 and ratio.grad[1] == pytest.approx(0.5)


def test_asymmetric_clip_hand_computed():
    ratio = th.tensor([0.5, 1.3, 1.25, 0.7])
    advantages = th.tensor([1.0, 1.0, -1.0, -1.0])
    # min(r Â, clip(r, 0.8, 1.28) Â)
    expected = th.tensor([0.5, 1.28, -1.25, -0.8])
    out = AsymmetricClipSurrogate(clip_range=0.2, clip_range_high=0.28).loss(PolicyBatch(ratio, advantages))
    assert th.allclose(out.loss, -expected.mean())


def test_asymmetric_clip_schedules_are_evaluated_per_update():
    objective = AsymmetricClipSurrogate(clip_range=lambda p: 0.2 * p, clip_range_high=lambda p: 0.4 * p)
    objective.begin_update(0.5)
    assert objective.logs() == {"clip_range_high": pytest.approx(0.2)}
    out = objective.loss(PolicyBatch(th.tensor([1.5, 0.5]), th.tensor([1.0, 1.0])))
    assert th.allclose(out.loss, -th.tensor([1.2, 0.5]).mean())


# ----------------------------------------------------------------------------------------------------------------------
# Limits that are clip exactly, and constant schedules that are the number exactly
# ----------------------------------------------------------------------------------------------------------------------


def _trained(algorithm: str, **kwargs):
    return make_model(algorithm, **kwargs).learn(128)


@pytest.mark.parametrize("algorithm", ["ppo", "recurrent"])
@pytest.mark.parametrize(
    "variant",
    [
        dict(objective="dual_clip", objective_kwargs=dict(dual_clip=1e12)),
        dict(objective="asymmetric_clip", objective_kwargs=dict(clip_range_high=0.2)),
    ],
    ids=["dual_clip_huge_c", "asymmetric_equal_bounds"],
)
def test_limits_of_the_variants_are_clip_bitwise(algorithm, variant):
    assert_same_training_state(_trained(algorithm, **variant), _trained(algorithm, objective="clip"))


@pytest.mark.parametrize(
    "name, value, extra",
    [("ent_coef", 0.01, {}), ("vf_coef", 0.7, {}), ("kl_coef", 0.3, dict(objective="fixed_kl"))],
)
def test_constant_schedule_is_the_number_bitwise(name, value, extra):
    scheduled = _trained("ppo", **{name: lambda _: value}, **extra)
    assert_same_training_state(scheduled, _trained("ppo", **{name: value}, **extra))


def test_entropy_graph_follows_the_current_ent_coef(capsys):
    # Two updates, at progress 0.5 (ent_coef 0.01: the entropy has a gradient) and 0 (ent_coef 0: left out of it).
    model = make_model("ppo", ent_coef=lambda progress: 0.01 if progress > 0.25 else 0.0, verbose=2)
    model.learn(64)
    assert "entropy_graph      fallback: ent_coef = 0.01" in capsys.readouterr().out
    assert model.fast_path.entropy_graph is None
    assert model.logger.name_to_value["train/ent_coef"] == 0.0


def test_schedules_are_logged_and_saved(tmp_path):
    model = make_model("ppo", objective="fixed_kl", kl_coef=lambda p: 1 + 2 * p, vf_coef=lambda p: 0.5 + p)
    model.learn(64)  # the last update is at progress 0
    logged = model.logger.name_to_value
    assert (logged["train/kl_coef"], logged["train/vf_coef"]) == (1.0, 0.5)
    model.save(tmp_path / "model")
    loaded = PPOVariant.load(tmp_path / "model", device="cpu")
    assert loaded.vf_coef(0.25) == 0.75 and loaded.objective.kl_coef_schedule(0.25) == 1.5


# ----------------------------------------------------------------------------------------------------------------------
# Every new option trains with every algorithm
# ----------------------------------------------------------------------------------------------------------------------

OPTIONS = {
    "dual_clip": dict(objective="dual_clip", objective_kwargs=dict(dual_clip=2.0), log_kl=True),
    "asymmetric_clip": dict(objective="asymmetric_clip", objective_kwargs=dict(clip_range_high=lambda p: 0.2 + 0.1 * p)),
    "coefficient_schedules": dict(ent_coef=lambda p: 0.01 * p, vf_coef=lambda p: 0.5 + p),
    "fixed_kl_schedule": dict(objective="fixed_kl", kl_coef=lambda p: 0.5 + p),
    "kl_adaptive_lr": dict(learning_rate=KLAdaptiveLR(3e-4, kl_target=100.0)),
}


@pytest.mark.parametrize("option", sorted(OPTIONS))
@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_every_option_trains_with_every_algorithm(algorithm, option):
    model = make_model(algorithm, **copy.deepcopy(OPTIONS[option])).learn(64)
    logged = model.logger.name_to_value
    assert model.num_timesteps == 64 and th.isfinite(th.tensor(logged["train/loss"]))
    if option == "dual_clip":
        assert "train/dual_clip_fraction" in logged and logged["train/kl"] >= 0
    if option == "asymmetric_clip":
        assert logged["train/clip_range_high"] == pytest.approx(0.2)  # the last update is at progress 0
    if option == "fixed_kl_schedule":
        assert logged["train/kl_coef"] == pytest.approx(0.5)
    if option == "kl_adaptive_lr":  # d > 0 is far below the target after both updates: the rate rose twice
        assert logged["train/kl"] > 0 and logged["train/learning_rate"] == 3e-4 * 1.5
        assert model.learning_rate.value == 3e-4 * 1.5 * 1.5


# ----------------------------------------------------------------------------------------------------------------------
# The KL-adaptive learning rate
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mean_kl, expected",
    [(0.03, 1e-3 / 1.5), (0.02, 1e-3), (0.006, 1e-3), (0.004, 1e-3 * 1.5), (0.0, 1e-3), (1e9, 1e-5), (1e-9, 1e-2)],
)
def test_kl_adaptive_rule(mean_kl, expected):
    rate = KLAdaptiveLR(1e-3, kl_target=0.01)
    for _ in range(1 if expected in (1e-3, 1e-3 / 1.5, 1e-3 * 1.5) else 50):  # 50 steps reach a bound
        rate.update(mean_kl)
    assert rate(0.3) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kl_target, expected", [(1e-9, 3e-4 / 1.5**4), (100.0, 3e-4 * 1.5**4)])
def test_kl_adaptive_rate_moves_the_right_way(kl_target, expected):
    model = make_model("ppo", learning_rate=KLAdaptiveLR(3e-4, kl_target=kl_target)).learn(128)
    assert model.learning_rate.value == pytest.approx(expected)
    assert model.policy.optimizer.param_groups[0]["lr"] == model.logger.name_to_value["train/learning_rate"]


def test_kl_adaptive_rate_reaches_the_fast_adam_step():
    # A schedule giving the same sequence of rates (the same float operations) trains bitwise the same.
    def same_rates(progress):
        value = 3e-4
        for _ in range(round((0.75 - progress) * 4)):  # updates at progress 0.75, 0.5, 0.25, 0
            value *= 1.5
        return value

    adaptive = _trained("ppo", learning_rate=KLAdaptiveLR(3e-4, kl_target=100.0), log_kl=True)
    assert adaptive.fast_path.optimizer_step is None
    assert_same_training_state(adaptive, _trained("ppo", learning_rate=same_rates, log_kl=True))


@pytest.mark.parametrize("algorithm", ["ppo", "maskable_recurrent"])
def test_kl_adaptive_rate_survives_save_load_and_continued_training(tmp_path, algorithm):
    model = make_model(algorithm, learning_rate=KLAdaptiveLR(3e-4, kl_target=100.0)).learn(64)
    assert model.learning_rate.value == pytest.approx(3e-4 * 1.5**2, rel=1e-12)
    model.save(tmp_path / "model")
    loaded = type(model).load(tmp_path / "model", env=model.get_env(), device="cpu")
    assert loaded.learning_rate.value == pytest.approx(3e-4 * 1.5**2, rel=1e-12)
    assert loaded.lr_schedule(1.0) == loaded.learning_rate.value
    loaded.learn(64, reset_num_timesteps=False)
    assert loaded.logger.name_to_value["train/learning_rate"] == pytest.approx(3e-4 * 1.5**3, rel=1e-12)
    assert loaded.learning_rate.value == pytest.approx(3e-4 * 1.5**4, rel=1e-12)
    # rl-zoo passes the file's learning rate again when it continues training: the saved rate goes on
    again = type(model).load(
        tmp_path / "model", learning_rate=KLAdaptiveLR(3e-4, kl_target=100.0), env=model.get_env(), device="cpu"
    )
    assert again.learning_rate.value == pytest.approx(3e-4 * 1.5**2, rel=1e-12)
    assert type(model).load(tmp_path / "model", learning_rate=1e-4).lr_schedule(1.0) == 1e-4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(kl_target=0.0), r"kl_target must be > 0, got 0\.0"),
        (dict(kl_target=-0.01), r"kl_target must be > 0"),
        (dict(bounds=(1e-2, 1e-5)), r"bounds must be \(min, max\) with min < max, got \(0\.01, 1e-05\)"),
        (dict(bounds=(0.0, 1e-2)), r"bounds\[0\] must be > 0"),
        (dict(initial_value=1.0), r"initial_value must be in \[1e-05, 0\.01\], got 1\.0"),
        (dict(factor=1.0), r"factor must be > 1"),
        (dict(tolerance=0.5), r"tolerance must be > 1"),
    ],
)
def test_bad_kl_adaptive_rate_is_rejected(kwargs, message):
    with pytest.raises(ArgumentValueError, match=message):
        KLAdaptiveLR(**kwargs)


def test_kl_adaptive_rate_with_adaptive_kl_is_rejected(tmp_path):
    with pytest.raises(ArgumentValueError, match="cannot be combined with objective='adaptive_kl'"):
        make_model("maskable", learning_rate=KLAdaptiveLR(), objective="adaptive_kl")
    make_model("ppo", objective="adaptive_kl").save(tmp_path / "model")
    with pytest.raises(ArgumentValueError, match="cannot be combined"):
        PPOVariant.load(tmp_path / "model", learning_rate=KLAdaptiveLR())


def test_objective_kwargs_are_saved_with_the_model(tmp_path):
    model = make_model("maskable", objective="dual_clip", objective_kwargs=dict(dual_clip=2.5))
    model.save(tmp_path / "model")
    loaded = MaskablePPOVariant.load(tmp_path / "model", device="cpu")
    assert loaded.objective_kwargs == {"dual_clip": 2.5} and loaded.objective.dual_clip == 2.5
    # rl-zoo passes the saved name again: kept; another objective gets the objective_kwargs given to load() only
    assert MaskablePPOVariant.load(tmp_path / "model", objective="dual_clip").objective.dual_clip == 2.5
    other = MaskablePPOVariant.load(tmp_path / "model", objective="asymmetric_clip")
    assert other.objective_kwargs == {} and other.objective._epsilon_high == 0.28


# ----------------------------------------------------------------------------------------------------------------------
# Bad input: rejected before any env or network is made, naming the parameter, the value and the range
# ----------------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        (dict(objective="dual_clip", objective_kwargs=dict(dual_clip=1.0)), ArgumentValueError, r"dual_clip must be > 1"),
        (dict(objective="dual_clip", objective_kwargs=dict(dual_clip=0.5)), ArgumentValueError, r"got 0\.5"),
        (
            dict(objective="asymmetric_clip", objective_kwargs=dict(clip_range_high=0.1)),
            ArgumentValueError,
            r"clip_range_high \(ε_high\) must be >= clip_range \(ε_low\), got 0\.1 < 0\.2",
        ),
        (dict(objective="asymmetric_clip", objective_kwargs=dict(clip_range_high=-0.3)), ArgumentValueError, r"> 0"),
        (dict(objective="asymmetric_clip", clip_range=-0.2), ArgumentValueError, r"clip_range must be > 0"),
        (
            dict(objective="asymmetric_clip", clip_range=lambda p: 0.6 - 0.4 * p, objective_kwargs=dict(clip_range_high=0.25)),
            ArgumentValueError,
            r"progress_remaining=0\.75",
        ),
        (dict(objective="dual_clip", objective_kwargs=dict(c=3.0)), ArgumentValueError, r"unknown key 'c'.*'dual_clip'"),
        (dict(objective="clip", objective_kwargs=dict(dual_clip=3.0)), ArgumentValueError, r"accepts no keys"),
        (dict(objective="dual_clip", objective_kwargs=dict(clip_range=0.1)), ArgumentValueError, r"clip_range=\.\.\."),
        (dict(objective="fixed_kl", objective_kwargs=dict(kl_coef=0.1)), ArgumentValueError, r"repeats"),
        (dict(objective=DualClipSurrogate(), objective_kwargs=dict(dual_clip=2.0)), ArgumentValueError, r"own"),
        (dict(objective_kwargs="dict(dual_clip=3.0)"), TypeError, r"objective_kwargs must be a dict"),
        (dict(ent_coef=lambda p: float("nan")), ArgumentValueError, r"ent_coef .* gives nan at progress_remaining=1"),
        (dict(vf_coef=lambda p: 1 / p if p else float("inf")), ArgumentValueError, r"vf_coef .* inf"),
        (dict(ent_coef=lambda p: p - 0.5), ArgumentValueError, r"ent_coef must be a finite number >= 0"),
        (dict(clip_range=lambda p: 0.2 if p > 0.4 else float("nan")), ArgumentValueError, r"clip_range .* nan"),
        (dict(objective="adaptive_kl", kl_coef=lambda p: 1.0), TypeError, r"start value, a number"),
    ],
)
@pytest.mark.parametrize("algorithm", ["ppo", "maskable_recurrent"])
def test_bad_input_is_rejected_before_any_work(algorithm, kwargs, error, message):
    with pytest.raises(error, match=message):
        make_model(algorithm, **kwargs)
