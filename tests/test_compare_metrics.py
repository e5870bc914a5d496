"""Comparison study, pure parts: objective specs, learning curves, normalisation and aggregation (hand-computed)."""

import math

import numpy as np
import pytest

from sb3_ppo_variants.compare.metrics import (
    Normalization,
    aggregate_intervals,
    curve_band,
    family_ranking,
    learning_curve,
    mean_of_last,
    normalization_constants,
    normalized_score,
    summarize,
)
from sb3_ppo_variants.compare.specs import Method, RunSpec, StudyError, parse_baselines, parse_method


@pytest.mark.parametrize(
    "spec, label, objective, value, title",
    [
        ("clip:0.2", "clip:0.2", "clip", 0.2, "Clipping, ε = 0.2"),
        ("clip:0.20", "clip:0.2", "clip", 0.2, "Clipping, ε = 0.2"),
        ("adaptive_kl:1e-2", "adaptive_kl:0.01", "adaptive_kl", 0.01, "Adaptive KL, d_targ = 0.01"),
        ("fixed_kl:1", "fixed_kl:1", "fixed_kl", 1.0, "Fixed KL, β = 1"),
        ("none", "none", "none", None, "No clipping or penalty"),
        ("clip", "clip", "clip", None, "Clipping"),
        ("clip:lin_0.2", "clip:lin_0.2", "clip", "lin_0.2", "Clipping, ε = lin_0.2"),
        (" adaptive_kl:lin_3e-3 ", "adaptive_kl:lin_0.003", "adaptive_kl", "lin_0.003", "Adaptive KL, d_targ = lin_0.003"),
    ],
)
def test_parse_method(spec, label, objective, value, title):
    method = parse_method(spec)
    assert (method.label, method.objective, method.value, method.title) == (label, objective, value, title)
    assert method.algo == "ppo_variant" and not method.is_baseline
    assert ":" not in RunSpec("CartPole-v1", method.label, method.algo, 0, 1).run_id  # a file-system safe folder


@pytest.mark.parametrize(
    "spec, message",
    [
        ("clipp:0.2", "unknown objective 'clipp'"),
        ("ppo", "unknown objective 'ppo'"),
        ("clip:0", "must be a finite number > 0"),
        ("clip:-0.1", "must be a finite number > 0"),
        ("fixed_kl:lin_1", "must be a number, got 'lin_1'"),
        ("adaptive_kl:abc", "must be a number or lin_<number>"),
        ("none:0.1", "takes no value"),
        ("", "empty objective spec"),
    ],
)
def test_parse_method_rejects(spec, message):
    with pytest.raises(StudyError, match="--objectives") as error:
        parse_method(spec)
    assert message in str(error.value)


def test_methods_sort_in_paper_order():
    specs = ["fixed_kl:10", "clip:0.3", "none", "adaptive_kl:0.003", "clip:0.1", "fixed_kl:0.3", "adaptive_kl:0.03"]
    methods = [parse_method(spec) for spec in specs] + parse_baselines(["a2c", "ppo"])
    ordered = [method.label for method in sorted(methods, key=Method.sort_key)]
    assert ordered == [
        "none",
        "clip:0.1",
        "clip:0.3",
        "adaptive_kl:0.003",
        "adaptive_kl:0.03",
        "fixed_kl:0.3",
        "fixed_kl:10",
        "ppo",
        "a2c",
    ]


def test_parse_baselines():
    assert [method.label for method in parse_baselines([])] == ["ppo", "trpo", "a2c"]
    assert [method.algo for method in parse_baselines(["trpo", "trpo"])] == ["trpo"]
    with pytest.raises(StudyError, match="--baselines: unknown baseline 'sac'"):
        parse_baselines(["sac"])


def test_learning_curve_and_score():
    # Episodes end at steps 10, 20 and 35; budget 40 in 4 points, window of 2 episodes.
    curve = learning_curve([10, 20, 35], [1.0, 2.0, 3.0], timesteps=40, points=4, window=2)
    assert curve == {"timesteps": [10, 20, 30, 40], "mean_return": [1.0, 1.5, 1.5, 2.5], "episodes": [1, 2, 2, 3]}
    # No episode finished by the first point; an episode that ends after the budget (last rollout) counts at the end.
    curve = learning_curve([15, 45], [4.0, 6.0], timesteps=40, points=4, window=100)
    assert curve["mean_return"] == [None, 4.0, 4.0, 5.0]
    assert mean_of_last([1.0, 2.0, 3.0, 4.0], count=2) == 3.5
    assert mean_of_last(list(range(250)), count=100) == np.mean(range(150, 250))
    assert mean_of_last([]) is None


def _result(env_id, method, seed, score, algo="ppo_variant", status="ok", eval_mean=None):
    return {
        "run_id": f"{env_id}/{method}/seed_{seed}",
        "config": {
            "env_id": env_id,
            "method": method,
            "algo": algo,
            "seed": seed,
            "hyperparams": {"objective": method.split(":")[0]} if algo == "ppo_variant" else {},
        },
        "status": status,
        "score": score,
        "eval_mean": eval_mean,
    }


# Env A: random 10, best objective run 50 (a TRPO baseline scores 90 but does not set the best).
# Env B: random -100, best objective run -20.
RESULTS = [
    _result("A", "clip:0.2", 0, 30.0, eval_mean=35.0),
    _result("A", "clip:0.2", 1, 50.0, eval_mean=45.0),
    _result("A", "none", 0, 0.0),
    _result("A", "none", 1, 20.0),
    _result("A", "trpo", 0, 90.0, algo="trpo"),
    _result("B", "clip:0.2", 0, -60.0),
    _result("B", "clip:0.2", 1, -20.0),
    _result("B", "none", 0, -100.0, status="diverged"),
    _result("B", "none", 1, -80.0),
    _result("B", "fixed_kl:1", 0, None, status="failed"),
]
RANDOM = {"A": 10.0, "B": -100.0}


def test_normalization_constants_and_scores():
    constants = normalization_constants(RESULTS, RANDOM)
    assert constants == {
        "A": Normalization(10.0, 50.0, "A/clip:0.2/seed_1"),
        "B": Normalization(-100.0, -20.0, "B/clip:0.2/seed_1"),
    }
    expected = [0.5, 1.0, -0.25, 0.25, 2.0, 0.5, 1.0, 0.0, 0.25, None]
    assert [normalized_score(result, constants) for result in RESULTS] == pytest.approx(expected)


def test_normalization_without_objective_runs_and_without_scale():
    # Only baselines on an env: they set the best. A best that does not beat the random policy gives no scale.
    constants = normalization_constants(
        [_result("C", "a2c", 0, 5.0, algo="a2c"), _result("D", "none", 0, 1.0)], {"C": 1.0, "D": 2.0}
    )
    assert constants["C"] == Normalization(1.0, 5.0, "C/a2c/seed_0")
    assert not constants["D"].valid and math.isnan(constants["D"](1.0))
    assert normalized_score(_result("D", "none", 0, 1.0), constants) is None


def test_summaries_table_values():
    summaries = summarize(RESULTS, normalization_constants(RESULTS, RANDOM))
    clip, none, fixed, trpo = (summaries[name] for name in ("clip:0.2", "none", "fixed_kl:1", "trpo"))
    # Table 1 value: mean over envs × seeds.
    assert clip.mean_normalized == pytest.approx((0.5 + 1.0 + 0.5 + 1.0) / 4)
    assert none.mean_normalized == pytest.approx((-0.25 + 0.25 + 0.0 + 0.25) / 4)
    assert trpo.mean_normalized == pytest.approx(2.0)
    assert fixed.mean_normalized is None and fixed.failed == ["B/fixed_kl:1/seed_0"] and fixed.runs == 1
    assert none.diverged == ["B/none/seed_0"]
    assert clip.per_env(clip.raw, "A") == [30.0, 50.0] and clip.per_env(clip.evaluation, "A") == [35.0, 45.0]
    np.testing.assert_array_equal(clip.matrix(["A", "B"]), [[0.5, 0.5], [1.0, 1.0]])
    # TRPO has no run on B: no complete seed, so rliable gets an empty matrix.
    assert trpo.matrix(["A", "B"]).shape == (0, 2)
    ranking = family_ranking(summaries, {"clip:0.2": "clip", "none": "none", "fixed_kl:1": "fixed_kl", "trpo": "baseline"})
    assert ranking == [("clip", "clip:0.2", pytest.approx(0.75)), ("none", "none", pytest.approx(0.0625))]


def test_rliable_aggregates_match_hand_computation():
    matrices = {
        "clip": np.array([[0.5, 0.5], [1.0, 1.0]]),
        "none": np.array([[-0.25, 0.0], [0.25, 0.25]]),
        "empty": np.zeros((0, 2)),
    }
    aggregates = aggregate_intervals(matrices, reps=500, seed=3)
    assert set(aggregates) == {"clip", "none"}
    # IQM: 25% trimmed mean of the 4 scores (the middle two); optimality gap: 1 - mean(min(score, 1)).
    expected = {"clip": (0.75, 0.75, 0.25), "none": ((0.0 + 0.25) / 2, 0.0625, 1 - 0.0625)}
    for method, points in expected.items():
        for name, point in zip(("IQM", "Mean", "Optimality gap"), points, strict=True):
            value, low, high = aggregates[method][name]
            assert value == pytest.approx(point)
            assert low <= value <= high
    # Bootstrap means of resampled seeds lie between the smallest and the largest seed mean.
    assert aggregates["clip"]["Mean"][1] >= 0.5 and aggregates["clip"]["Mean"][2] <= 1.0
    assert aggregate_intervals(matrices, reps=500, seed=3) == aggregates  # seeded: reproducible
    spread = {"x": np.random.default_rng(0).normal(size=(6, 3))}
    assert aggregate_intervals(spread, reps=500, seed=3) == aggregate_intervals(spread, reps=500, seed=3)
    assert aggregate_intervals(spread, reps=500, seed=3) != aggregate_intervals(spread, reps=500, seed=4)


def test_curve_band():
    curves = [
        {"timesteps": [10, 20, 30], "mean_return": [None, 2.0, 4.0]},
        {"timesteps": [10, 20, 30], "mean_return": [1.0, 4.0, 4.0]},
    ]
    timesteps, mean, low, high = curve_band(curves, reps=200)
    # The first point is dropped (one run had no episode yet); equal values give a zero-width interval.
    np.testing.assert_array_equal(timesteps, [20, 30])
    np.testing.assert_allclose(mean, [3.0, 4.0])
    np.testing.assert_allclose([low[1], high[1]], [4.0, 4.0])
    assert 2.0 <= low[0] <= 3.0 <= high[0] <= 4.0
