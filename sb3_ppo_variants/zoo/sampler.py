"""Optuna search spaces of the variants for rl-zoo's ``-optimize``: the objective, its parameters and rl-zoo's space."""

from collections.abc import Callable
from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params, sample_ppo_lstm_params, sample_ppo_params

#: The four objectives of the paper's Table 1.
PAPER_OBJECTIVES = ("clip", "adaptive_kl", "fixed_kl", "none")
#: Log-uniform range of β for ``fixed_kl`` (the paper tried 0.3, 1, 3, 10).
KL_COEF_RANGE = (0.1, 10.0)
#: Log-uniform range of d_targ for ``adaptive_kl`` (the paper tried 0.003, 0.01, 0.03).
KL_TARGET_RANGE = (0.001, 0.05)
#: Objectives since the paper.
VARIANT_OBJECTIVES = ("dual_clip", "asymmetric_clip")
#: Objectives sampled unless ``--hyperparams objective:...`` fixes some: every built-in one.
DEFAULT_OBJECTIVES = PAPER_OBJECTIVES + VARIANT_OBJECTIVES
#: Uniform range of c for ``dual_clip`` (Ye et al. 2020 use 3).
DUAL_CLIP_RANGE = (1.5, 5.0)
#: Uniform range of ε_high - ε_low for ``asymmetric_clip`` (DAPO: 0.28 - 0.2 = 0.08).
CLIP_RANGE_HIGH_DELTA_RANGE = (0.0, 0.2)
#: rl-zoo's sampler signature: (trial, n_actions, n_envs, additional_args) -> hyperparameters.
Sampler = Callable[[optuna.Trial, int, int, dict], dict[str, Any]]
#: Trial user attribute holding the objectives a trial may sample (set by the experiment manager).
OBJECTIVE_CHOICES_ATTR = "objective_choices"


def objective_sampler(sample_base_params: Sampler) -> Sampler:
    """
    An rl-zoo sampler for a variant of this package: the objective and its parameter, then ``sample_base_params``
    (the sampler of the algorithm the variant extends).

    Samples ``objective`` among the trial's ``objective_choices`` user attribute (default: the six built-in objectives),
    then the base algorithm's parameters (for PPO: n_steps, batch_size, γ, λ, learning rate, entropy coefficient,
    ε = ``clip_range``, epochs, gradient clipping, network), then the objective's own parameter: d_targ
    (``kl_target``) for ``adaptive_kl``, β (``kl_coef``) for ``fixed_kl``, c (Optuna parameter ``dual_clip``) for
    ``dual_clip`` and ε_high - ε_low (``clip_range_high_delta``) for ``asymmetric_clip``; the last two are passed as
    ``objective_kwargs``. ε is the clipped objectives' (ε_low of ``asymmetric_clip``); for the others it is the
    threshold of the ``train/clip_fraction`` diagnostic.
    """

    def sample(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
        choices = list(trial.user_attrs.get(OBJECTIVE_CHOICES_ATTR, DEFAULT_OBJECTIVES))
        objective = trial.suggest_categorical("objective", choices)
        hyperparams = sample_base_params(trial, n_actions, n_envs, additional_args)
        hyperparams["objective"] = objective
        if objective == "adaptive_kl":
            hyperparams["kl_target"] = trial.suggest_float("kl_target", *KL_TARGET_RANGE, log=True)
        elif objective == "fixed_kl":
            hyperparams["kl_coef"] = trial.suggest_float("kl_coef", *KL_COEF_RANGE, log=True)
        elif objective == "dual_clip":
            trial.suggest_float("dual_clip", *DUAL_CLIP_RANGE)
        elif objective == "asymmetric_clip":
            trial.suggest_float("clip_range_high_delta", *CLIP_RANGE_HIGH_DELTA_RANGE)
        hyperparams.update(objective_kwargs_of(trial.params, hyperparams))
        return hyperparams

    sample.__doc__ = f"rl-zoo sampler: the objective and its parameter, then {sample_base_params.__name__}."
    return sample


def objective_kwargs_of(params: dict[str, Any], hyperparams: dict[str, Any]) -> dict[str, Any]:
    """
    ``{"objective_kwargs": ...}`` from a trial's flat Optuna parameters (c of ``dual_clip``; ε_high = ε_low +
    ``clip_range_high_delta`` of ``asymmetric_clip``), or ``{}`` for the other objectives.

    :param params: the trial's Optuna parameters
    :param hyperparams: the hyperparameters converted from them (``clip_range``, ε_low; 0.2 when not sampled)
    """
    if "dual_clip" in params:
        return {"objective_kwargs": {"dual_clip": params["dual_clip"]}}
    if "clip_range_high_delta" in params:
        return {"objective_kwargs": {"clip_range_high": hyperparams.get("clip_range", 0.2) + params["clip_range_high_delta"]}}
    return {}


def convert_variant_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    rl-zoo's ``--trial-id`` converter for the variants: rl-zoo's on-policy converter (which passes ``objective``,
    ``kl_target`` and ``kl_coef`` through), with the newer objectives' flat parameters put back into
    ``objective_kwargs``, as the sampler gave them to the trial's model.
    """
    own: dict[str, Any] = {
        name: sampled_params[name] for name in ("dual_clip", "clip_range_high_delta") if name in sampled_params
    }
    hyperparams = convert_onpolicy_params({name: value for name, value in sampled_params.items() if name not in own})
    hyperparams.update(objective_kwargs_of(own, hyperparams))
    return hyperparams


#: ``ppo_variant`` and ``ppo_mask_variant``: rl-zoo's PPO search space (rl-zoo has none for MaskablePPO).
sample_ppo_variant_params = objective_sampler(sample_ppo_params)
#: ``ppo_lstm_variant`` and ``ppo_mask_lstm_variant``: rl-zoo's RecurrentPPO search space.
sample_ppo_lstm_variant_params = objective_sampler(sample_ppo_lstm_params)
