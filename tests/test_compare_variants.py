"""compare's specs of the variants: dual_clip:ε,c, asymmetric_clip:ε_low,ε_high and the +kl_lr:<d_targ> suffix."""

import pytest

from sb3_ppo_variants.compare.hyperparams import method_hyperparams
from sb3_ppo_variants.compare.specs import RunSpec, StudyError, parse_baselines, parse_method

ENTRY = {"policy": "MlpPolicy", "n_timesteps": 1000, "learning_rate": "lin_3e-4", "clip_range": 0.1}


@pytest.mark.parametrize(
    "spec, label, title, settings",
    [
        ("dual_clip:0.2", "dual_clip:0.2", "Dual clip, ε = 0.2", {"clip_range": 0.2}),
        (
            "dual_clip:0.20,3",
            "dual_clip:0.2,3",
            "Dual clip, ε = 0.2, c = 3",
            {"clip_range": 0.2, "objective_kwargs": "dict(dual_clip=3.0)"},
        ),
        (
            "asymmetric_clip:0.2,0.28",
            "asymmetric_clip:0.2,0.28",
            "Asymmetric clip, ε_low = 0.2, ε_high = 0.28",
            {"clip_range": 0.2, "objective_kwargs": "dict(clip_range_high=0.28)"},
        ),
        (
            "clip:0.2+kl_lr:1e-2",
            "clip:0.2+kl_lr:0.01",
            "Clipping, ε = 0.2, KL-adaptive step size (d_targ = 0.01)",
            {"clip_range": 0.2, "learning_rate": "kl_adaptive_0.0003_0.01"},
        ),
        ("clip+kl_lr:0.02", "clip+kl_lr:0.02", "Clipping, KL-adaptive step size (d_targ = 0.02)", {}),
    ],
)
def test_variant_specs(spec, label, title, settings):
    method = parse_method(spec)
    assert (method.label, method.title) == (label, title)
    assert parse_method(method.label) == method  # the label is the canonical spec (reports parse it again)
    hyperparams = method_hyperparams(ENTRY, method, "CartPole-v1")
    expected = {key: value for key, value in ENTRY.items() if key != "n_timesteps"}
    if "kl_lr" in spec and "learning_rate" not in settings:
        settings = {"learning_rate": "kl_adaptive_0.0003_0.02"}
    assert hyperparams == {**expected, "objective": method.objective, **settings}
    assert ":" not in RunSpec("CartPole-v1", method.label, method.algo, 0, 1).run_id


def test_clip_with_and_without_the_kl_adaptive_rate_are_two_methods():
    plain, adaptive = parse_method("clip:0.2"), parse_method("clip:0.2+kl_lr:0.01")
    assert plain != adaptive and plain.family == adaptive.family == "clip"
    assert sorted([adaptive, plain], key=type(plain).sort_key) == [plain, adaptive]
    # baselines never get the variants' keys
    baseline = parse_baselines(["ppo"])[0]
    assert "objective_kwargs" not in method_hyperparams({**ENTRY, "objective_kwargs": "dict()"}, baseline, "CartPole-v1")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("dual_clip:0.2,1", "c of 'dual_clip:0.2,1' (dual_clip) must be > 1, got 1"),
        ("asymmetric_clip:0.2,0.1", "ε_high of 'asymmetric_clip:0.2,0.1' (clip_range_high) must be >= ε_low = 0.2"),
        ("asymmetric_clip:0.2,-0.3", "must be a finite number > 0, got '-0.3'"),
        ("asymmetric_clip:-0.2,0.3", "must be a finite number > 0, got '-0.2'"),
        ("clip:0.2,3", "objective 'clip' takes one value"),
        ("dual_clip:0.2,lin_3", "(dual_clip) must be a number, got 'lin_3'"),
        ("adaptive_kl:0.01+kl_lr:0.01", "cannot be combined with adaptive_kl"),
        ("clip:0.2+kl_lr:0", "(kl_lr) must be a finite number > 0"),
    ],
)
def test_bad_variant_specs(spec, message):
    with pytest.raises(StudyError, match="--objectives") as error:
        parse_method(spec)
    assert message in str(error.value)
