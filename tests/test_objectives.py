"""Each objective's loss against hand-computed values, and the adaptive-β rule."""

import math

import numpy as np
import pytest
import torch as th

from sb3_ppo_variants import (
    AdaptiveKLPenalty,
    ClippedSurrogate,
    FixedKLPenalty,
    PolicyBatch,
    PPOVariant,
    UnclippedSurrogate,
    make_objective,
)

RATIO = th.tensor([0.5, 0.9, 1.0, 1.3, 1.5])
ADVANTAGES = th.tensor([1.0, -2.0, 0.5, 2.0, -1.0])
KL = th.tensor([0.02, 0.01, 0.0, 0.05, 0.1])


def batch(**kwargs) -> PolicyBatch:
    return PolicyBatch(ratio=RATIO, advantages=ADVANTAGES, kl=KL, **kwargs)


def test_clipped_surrogate_hand_computed():
    objective = ClippedSurrogate(clip_range=0.2)
    # min(r A, clip(r, 0.8, 1.2) A) per sample:
    # 0.5*1=0.5 vs 0.8*1=0.8 -> 0.5 ; 0.9*-2=-1.8 vs -1.8 -> -1.8 ; 0.5 vs 0.5 -> 0.5 ;
    # 1.3*2=2.6 vs 1.2*2=2.4 -> 2.4 ; 1.5*-1=-1.5 vs 1.2*-1=-1.2 -> -1.5
    expected = -np.mean([0.5, -1.8, 0.5, 2.4, -1.5])
    assert objective.loss(batch()).loss.item() == pytest.approx(expected, abs=1e-6)


def test_clipped_surrogate_schedule_is_evaluated_per_update():
    objective = ClippedSurrogate(clip_range=lambda progress: 0.4 * progress)
    objective.begin_update(0.5)  # epsilon = 0.2, same as above
    expected = -np.mean([0.5, -1.8, 0.5, 2.4, -1.5])
    assert objective.loss(batch()).loss.item() == pytest.approx(expected, abs=1e-6)


def test_unclipped_surrogate_hand_computed():
    expected = -np.mean([0.5, -1.8, 0.5, 2.6, -1.5])
    assert UnclippedSurrogate().loss(batch()).loss.item() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("objective_class", [FixedKLPenalty, AdaptiveKLPenalty])
def test_kl_penalty_hand_computed(objective_class):
    objective = objective_class(kl_coef=3.0)
    output = objective.loss(batch())
    surrogate = np.mean([0.5, -1.8, 0.5, 2.6, -1.5])
    penalty = 3.0 * np.mean([0.02, 0.01, 0.0, 0.05, 0.1])
    assert output.loss.item() == pytest.approx(-surrogate + penalty, abs=1e-6)
    assert output.diagnostics["kl_penalty"].item() == pytest.approx(penalty, abs=1e-6)


def test_fixed_kl_with_zero_coef_equals_none():
    assert FixedKLPenalty(kl_coef=0.0).loss(batch()).loss.item() == UnclippedSurrogate().loss(batch()).loss.item()


def test_mask_excludes_padded_samples():
    mask = th.tensor([True, True, False, False, True])
    expected = -np.mean([0.5, -1.8, -1.5])
    assert UnclippedSurrogate().loss(batch(mask=mask)).loss.item() == pytest.approx(expected, abs=1e-6)


def test_kl_penalty_requires_kl():
    with pytest.raises(ValueError, match="kl"):
        FixedKLPenalty().loss(PolicyBatch(ratio=RATIO, advantages=ADVANTAGES))


@pytest.mark.parametrize(
    "mean_kl, expected_coef",
    [
        (0.001, 0.5),  # d < d_targ / 1.5 -> halve
        (0.0066, 0.5),  # just below 0.01 / 1.5
        (0.0067, 1.0),  # inside the band -> keep
        (0.01, 1.0),
        (0.015, 1.0),  # d = 1.5 d_targ is not above it -> keep
        (0.0151, 2.0),  # above -> double
        (0.5, 2.0),
    ],
)
def test_adaptive_rule(mean_kl, expected_coef):
    objective = AdaptiveKLPenalty(kl_target=0.01, kl_coef=1.0)
    objective.begin_update(1.0)
    objective.end_update(mean_kl)
    assert objective.kl_coef == expected_coef


def test_adaptive_rule_stays_within_bounds():
    objective = AdaptiveKLPenalty(kl_target=0.01, kl_coef=1.0, kl_coef_bounds=(0.25, 4.0))
    for _ in range(10):
        objective.end_update(1e3)
    assert objective.kl_coef == 4.0
    for _ in range(10):
        objective.end_update(0.0)
    assert objective.kl_coef == 0.25
    # Default bounds: neither inf nor 0 after many updates
    objective = AdaptiveKLPenalty()
    for _ in range(200):
        objective.end_update(math.inf)
    assert objective.kl_coef == AdaptiveKLPenalty.DEFAULT_KL_COEF_BOUNDS[1]
    for _ in range(200):
        objective.end_update(0.0)
    assert objective.kl_coef == AdaptiveKLPenalty.DEFAULT_KL_COEF_BOUNDS[0]


def test_adaptive_kl_target_schedule():
    objective = AdaptiveKLPenalty(kl_target=lambda progress: 0.02 * progress, kl_coef=1.0)
    objective.begin_update(0.5)  # d_targ = 0.01
    objective.end_update(0.005)  # < 0.01 / 1.5 -> halve
    assert objective.kl_coef == 0.5
    assert objective.logs() == {"kl_target": pytest.approx(0.01)}


@pytest.mark.parametrize("name", ["clip", "adaptive_kl", "fixed_kl", "none"])
def test_make_objective_by_name(name):
    objective = make_objective(name, clip_range=0.1, kl_coef=3.0, kl_target=0.03)
    assert objective.name == name
    if name == "clip":
        assert objective.clip_range(1.0) == 0.1
    if name in ("adaptive_kl", "fixed_kl"):
        assert objective.kl_coef == 3.0
    if name == "adaptive_kl":
        assert objective.kl_target(1.0) == 0.03


class RecordingPenalty(FixedKLPenalty):
    """A user-defined objective: records what PPOVariant hands it."""

    name = "recording"

    def __init__(self, kl_coef: float = 1.0):
        super().__init__(kl_coef)
        self.updates: list[list[tuple[th.Tensor, float]]] = []
        self.end_calls: list[float] = []

    def begin_update(self, progress_remaining: float) -> None:
        self.updates.append([])

    def loss(self, batch):
        self.updates[-1].append((batch.kl.detach().clone(), self.kl_coef))
        return super().loss(batch)

    def end_update(self, mean_kl: float) -> None:
        self.end_calls.append(mean_kl)
        self.kl_coef *= 2  # change β between updates only


def test_user_objective_sees_exact_kl_zero_at_first_minibatch_and_updates_once():
    objective = RecordingPenalty(kl_coef=0.5)
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective=objective, n_steps=64, batch_size=16, n_epochs=2, seed=0)
    model.learn(3 * 64)
    assert len(objective.updates) == len(objective.end_calls) == 3  # end_update exactly once per update
    for update, (minibatches, coef) in enumerate(zip(objective.updates, [0.5, 1.0, 2.0], strict=True)):
        assert len(minibatches) == 2 * 4
        first_kl = minibatches[0][0]
        assert th.equal(first_kl, th.zeros_like(first_kl)), f"KL at the first minibatch of update {update} is not 0"
        assert max(kl.max().item() for kl, _ in minibatches[1:]) > 0  # π_θ moves away from π_old
        assert all(kl.min().item() >= -1e-6 for kl, _ in minibatches)  # KL >= 0 up to float32 rounding
        assert {used for _, used in minibatches} == {coef}  # β constant within an update
    assert all(d > 0 for d in objective.end_calls)
    assert model.kl_coef == 4.0


class RecordingAdaptive(AdaptiveKLPenalty):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.history: list[tuple[float, float, float]] = []  # (d, β before, β after)

    def end_update(self, mean_kl: float) -> None:
        before = self.kl_coef
        super().end_update(mean_kl)
        self.history.append((mean_kl, before, self.kl_coef))


def test_adaptive_beta_in_training_follows_measured_kl():
    """In real training, β after each update is the paper's rule applied to that update's measured d."""
    objective = RecordingAdaptive(kl_target=0.003, kl_coef=1.0)
    model = PPOVariant("MlpPolicy", "CartPole-v1", objective=objective, n_steps=64, batch_size=32, n_epochs=4, seed=1)
    model.learn(6 * 64)
    assert len(objective.history) == 6
    for d, before, after in objective.history:
        expected = before / 2 if d < 0.003 / 1.5 else before * 2 if d > 0.003 * 1.5 else before
        assert after == expected
    assert len({after for _, _, after in objective.history}) > 1  # β actually moved
    assert model.kl_coef == objective.history[-1][2]
