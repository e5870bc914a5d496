"""
What a study compares: methods (objective configurations such as ``clip:0.2``, ``dual_clip:0.2,3`` or
``clip:0.2+kl_lr:0.01``, and baseline algorithms) and the runs of the grid envs × methods × seeds. A run is fully
described by a :class:`RunSpec`; its fingerprint identifies a finished result so a rerun can skip it.
"""

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from sb3_ppo_variants.objectives import OBJECTIVES

#: The hyperparameter each objective's spec value sets, and how the paper names it.
SPEC_PARAMETERS: dict[str, tuple[str, str]] = {
    "clip": ("clip_range", "ε"),
    "adaptive_kl": ("kl_target", "d_targ"),
    "fixed_kl": ("kl_coef", "β"),
    "dual_clip": ("clip_range", "ε"),
    "asymmetric_clip": ("clip_range", "ε_low"),
}
#: The ``objective_kwargs`` key a spec's second value sets (``dual_clip:0.2,3``), and how its paper names it.
SECOND_SPEC_PARAMETERS: dict[str, tuple[str, str]] = {
    "dual_clip": ("dual_clip", "c"),
    "asymmetric_clip": ("clip_range_high", "ε_high"),
}
#: Objectives whose spec value may be an rl-zoo linear schedule (``lin_<start>``).
SCHEDULE_OBJECTIVES = ("clip", "adaptive_kl", "dual_clip", "asymmetric_clip")
#: Suffix of a spec whose learning rate adapts to the KL: ``<objective spec>+kl_lr:<kl_target>``
#: (:class:`~sb3_ppo_variants.KLAdaptiveLR`, starting at the hyperparameter file's learning rate).
KL_LR_SUFFIX = "+kl_lr:"
#: Row titles of Table 1 of the paper, by objective name.
PAPER_TITLES = {
    "none": "No clipping or penalty",
    "clip": "Clipping",
    "adaptive_kl": "Adaptive KL",
    "fixed_kl": "Fixed KL",
    "dual_clip": "Dual clip",
    "asymmetric_clip": "Asymmetric clip",
}
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_SPEC_VALUE = re.compile(rf"^(?:lin_)?{_NUMBER}$")


class StudyError(ValueError):
    """Bad study input (unknown env, objective spec or preset, bad budget, ...), raised before any run starts."""


@dataclass(frozen=True)
class Method:
    """
    One row of the comparison table.

    :param label: canonical spec (``clip:0.2``, ``none``) or baseline name (``trpo``)
    :param algo: rl-zoo algorithm key: the variant's (``ppo_variant``) for objective configurations, else the baseline's
    :param objective: objective name for objective configurations, ``None`` for baselines
    :param value: the spec value (a number or an rl-zoo ``lin_<start>`` string); ``None`` keeps the hyperparameter file's
    :param second: the spec's second value (c of ``dual_clip``, ε_high of ``asymmetric_clip``); ``None``: the default
    :param kl_lr_target: d_targ of a KL-adaptive learning rate (``+kl_lr:<d_targ>``); ``None``: the file's rate
    """

    label: str
    algo: str
    objective: str | None = None
    value: float | str | None = None
    second: float | None = None
    kl_lr_target: float | None = None

    @property
    def is_baseline(self) -> bool:
        return self.objective is None

    @property
    def family(self) -> str:
        """Objective name, or ``"baseline"``."""
        return self.objective if self.objective is not None else "baseline"

    @property
    def title(self) -> str:
        """Paper-style row title, e.g. ``Clipping, ε = 0.2``."""
        if self.objective is None:
            from sb3_ppo_variants.zoo.adapter import REGISTRY

            return REGISTRY[self.label].title if self.label in REGISTRY else self.label
        title = PAPER_TITLES.get(self.objective, self.objective)
        if self.value is not None and self.objective in SPEC_PARAMETERS:
            value = f"{self.value:g}" if isinstance(self.value, float) else self.value
            title += f", {SPEC_PARAMETERS[self.objective][1]} = {value}"
        if self.second is not None:
            title += f", {SECOND_SPEC_PARAMETERS[self.objective][1]} = {self.second:g}"
        if self.kl_lr_target is not None:
            title += f", KL-adaptive step size (d_targ = {self.kl_lr_target:g})"
        return title

    def sort_key(self) -> tuple[int, str, float, str, str]:
        """The paper's row order (none, clip, adaptive KL, fixed KL, other objectives), then the baselines."""
        families = ["none", "clip", "adaptive_kl", "fixed_kl"]
        if self.is_baseline:
            from sb3_ppo_variants.zoo.adapter import REGISTRY

            registered = list(REGISTRY).index(self.label) if self.label in REGISTRY else len(REGISTRY)
            return (len(families) + 1, "", float(registered), self.label, "")
        rank = families.index(self.family) if self.family in families else len(families)
        number = -math.inf if self.value is None else float(str(self.value).removeprefix("lin_"))
        return (rank, self.family, number, str(self.value), self.label)


def parse_method(spec: str, algo: str = "ppo_variant") -> Method:
    """
    Parse an objective spec ``name[:value[,second]][+kl_lr:<d_targ>]``: ``clip:0.2``, ``adaptive_kl:0.01``,
    ``fixed_kl:1``, ``none``, ``dual_clip:0.2`` (c = 3), ``dual_clip:0.2,3``, ``asymmetric_clip:0.2,0.28``,
    ``clip:0.2+kl_lr:0.01``.

    The value sets ε for ``clip`` and ``dual_clip``, ε_low for ``asymmetric_clip``, d_targ for ``adaptive_kl`` and β
    for ``fixed_kl``; all but ``fixed_kl`` also accept an rl-zoo linear schedule ``lin_<start>``. The second value
    sets c of ``dual_clip`` (> 1) or ε_high of ``asymmetric_clip`` (>= ε_low). ``+kl_lr:<d_targ>`` makes the
    learning rate a :class:`~sb3_ppo_variants.KLAdaptiveLR` with that target, starting at the hyperparameter file's
    learning rate, so one study can put ``clip:0.2`` and ``clip:0.2+kl_lr:0.01`` side by side. Without a value the
    hyperparameter file's setting (or the algorithm's default) is kept.

    :param spec: the objective spec
    :param algo: the variant's rl-zoo key (``--algo``)
    :raises StudyError: unknown name or bad value, naming the accepted ones
    """
    if not isinstance(spec, str) or not spec.strip():
        raise StudyError(f"--objectives: empty objective spec {spec!r}; use name[:value], e.g. clip:0.2")
    objective_spec, _, kl_lr = spec.strip().partition(KL_LR_SUFFIX)
    name, _, values = objective_spec.partition(":")
    if name not in OBJECTIVES:
        raise StudyError(
            f"--objectives: unknown objective {name!r} in spec {spec!r}; choose one of {', '.join(sorted(OBJECTIVES))} "
            "(format name[:value[,second]][+kl_lr:<d_targ>], e.g. clip:0.2, dual_clip:0.2,3, clip:0.2+kl_lr:0.01)"
        )
    value_text, _, second_text = values.partition(",")
    if value_text and name not in SPEC_PARAMETERS:
        raise StudyError(f"--objectives: objective {name!r} takes no value, got spec {spec!r}")
    if second_text and name not in SECOND_SPEC_PARAMETERS:
        raise StudyError(f"--objectives: objective {name!r} takes one value, got spec {spec!r}")
    value = _spec_value(spec, SPEC_PARAMETERS[name][0], value_text, name in SCHEDULE_OBJECTIVES) if value_text else None
    second = float(_spec_value(spec, SECOND_SPEC_PARAMETERS[name][0], second_text, False)) if second_text else None
    if kl_lr and name == "adaptive_kl":
        raise StudyError(f"--objectives: {spec!r}: a KL-adaptive learning rate cannot be combined with adaptive_kl")
    target = float(_spec_value(spec, "kl_lr", kl_lr, False)) if kl_lr else None
    _check_second_value(spec, name, value, second)
    label = name + (f":{value}" if value is not None else "") + (f",{second:g}" if second is not None else "")
    label += f"{KL_LR_SUFFIX}{target:g}" if target is not None else ""
    parsed = value if value is None or value.startswith("lin_") else float(value)
    return Method(label=label, algo=algo, objective=name, value=parsed, second=second, kl_lr_target=target)


def _spec_value(spec: str, parameter: str, text: str, schedule: bool) -> str:
    """One value of a spec, checked, as canonical text (``0.20`` → ``0.2``, ``lin_2.5e-4`` → ``lin_0.00025``)."""
    if not _SPEC_VALUE.match(text) or (text.startswith("lin_") and not schedule):
        accepted = "a number or lin_<number>" if schedule else "a number"
        raise StudyError(f"--objectives: the value of {spec!r} ({parameter}) must be {accepted}, got {text!r}")
    number = float(text.removeprefix("lin_"))
    if not math.isfinite(number) or number <= 0:
        raise StudyError(f"--objectives: the value of {spec!r} ({parameter}) must be a finite number > 0, got {text!r}")
    return f"{'lin_' if text.startswith('lin_') else ''}{number:g}"


def _check_second_value(spec: str, name: str, value: str | None, second: float | None) -> None:
    """c > 1 for ``dual_clip``; ε_high >= ε_low for ``asymmetric_clip`` (ε_low: the spec's, or 0.2)."""
    if second is None:
        return
    if name == "dual_clip" and second <= 1:
        raise StudyError(f"--objectives: c of {spec!r} (dual_clip) must be > 1, got {second:g}")
    low = 0.2 if value is None else float(value.removeprefix("lin_"))
    if name == "asymmetric_clip" and second < low:
        raise StudyError(f"--objectives: ε_high of {spec!r} (clip_range_high) must be >= ε_low = {low:g}, got {second:g}")


def apply_method(hyperparams: dict[str, Any], method: Method) -> None:
    """
    Set an objective configuration's hyperparameters (YAML form) in a copy of the env's entry: ``objective``, the
    spec's value, its second value (``objective_kwargs``) and a KL-adaptive ``learning_rate``.

    :param hyperparams: the env's entry, changed in place
    :param method: an objective configuration (not a baseline)
    """
    assert method.objective is not None
    hyperparams["objective"] = method.objective
    if method.value is not None:
        hyperparams[SPEC_PARAMETERS[method.objective][0]] = method.value
    if method.second is not None:
        hyperparams["objective_kwargs"] = f"dict({SECOND_SPEC_PARAMETERS[method.objective][0]}={method.second!r})"
    if method.kl_lr_target is not None:
        initial = float(str(hyperparams.get("learning_rate", 3e-4)).removeprefix("lin_"))
        hyperparams["learning_rate"] = f"kl_adaptive_{initial!r}_{method.kl_lr_target!r}"


def parse_baselines(names: list[str], algo: str = "ppo_variant") -> list[Method]:
    """
    Baseline methods from ``--baselines``: the algorithms registered for the variant ``algo`` (an empty list: all).

    :raises StudyError: a name that is not one of them
    """
    from sb3_ppo_variants.zoo.adapter import REGISTRY

    accepted = REGISTRY[algo].baselines
    for name in names:
        if name not in accepted:
            raise StudyError(f"--baselines: unknown baseline {name!r} for --algo {algo}; choose from {', '.join(accepted)}")
    return [Method(label=name, algo=name) for name in dict.fromkeys(names or accepted)]


@dataclass
class RunSpec:
    """
    One training run: everything its result depends on. A run is a pure function of this.

    :param env_id: Gymnasium id
    :param method: the method's label (see :class:`Method`)
    :param algo: rl-zoo algorithm key (``ppo_variant``, ``ppo``, ``trpo``, ``a2c``...)
    :param seed: seed of the model and the environments
    :param timesteps: training budget in environment steps
    :param hyperparams: rl-zoo-style hyperparameters as read from YAML (schedules as ``lin_`` strings, ``policy_kwargs``
        as a string...), with the method's settings applied; converted by rl_zoo3 in the worker
    :param eval_episodes: episodes of the final deterministic evaluation
    :param curve_points: points of the stored learning curve
    :param gym_packages: modules to import for the env to be registered (``--gym-packages``, ``module:EnvId``)
    """

    env_id: str
    method: str
    algo: str
    seed: int
    timesteps: int
    hyperparams: dict[str, Any] = field(default_factory=dict)
    eval_episodes: int = 10
    curve_points: int = 100
    gym_packages: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return f"{self.env_id}/{self.method.replace(':', '_')}/seed_{self.seed}"

    @property
    def fingerprint(self) -> str:
        """Hash of everything the result depends on: a stored result with the same fingerprint is this run's."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if not self.gym_packages:  # left out so that results of runs without them keep their fingerprint
            del data["gym_packages"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(**data)
