"""Optuna search space of ``ppo_variant`` for rl-zoo's ``-optimize``: the objective, its parameters and rl-zoo's PPO space."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import sample_ppo_params

#: Objectives sampled by default: the four of the paper's Table 1.
PAPER_OBJECTIVES = ("clip", "adaptive_kl", "fixed_kl", "none")
#: Log-uniform range of β for ``fixed_kl`` (the paper tried 0.3, 1, 3, 10).
KL_COEF_RANGE = (0.1, 10.0)
#: Log-uniform range of d_targ for ``adaptive_kl`` (the paper tried 0.003, 0.01, 0.03).
KL_TARGET_RANGE = (0.001, 0.05)
#: Trial user attribute holding the objectives a trial may sample (set by the experiment manager).
OBJECTIVE_CHOICES_ATTR = "objective_choices"


def sample_ppo_variant_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for PPOVariant hyperparameters, registered as ``HYPERPARAMS_SAMPLER["ppo_variant"]``.

    Samples ``objective`` among the trial's ``objective_choices`` user attribute (default: the paper's four), then
    rl-zoo's PPO parameters (``sample_ppo_params``: n_steps, batch_size, γ, λ, learning rate, entropy coefficient,
    ε = ``clip_range``, epochs, gradient clipping, network), then the objective's own parameter: d_targ
    (``kl_target``) for ``adaptive_kl``, β (``kl_coef``) for ``fixed_kl``. ε only matters for ``clip`` (for the
    others it is the threshold of the ``train/clip_fraction`` diagnostic).

    :param trial: the Optuna trial
    :param n_actions: size of the action space (unused, as for PPO)
    :param n_envs: number of environments (unused, as for PPO)
    :param additional_args: rl-zoo's extra arguments (unused, as for PPO)
    :return: constructor arguments of PPOVariant, in rl-zoo's converted form (``policy_kwargs`` etc.)
    """
    choices = list(trial.user_attrs.get(OBJECTIVE_CHOICES_ATTR, PAPER_OBJECTIVES))
    objective = trial.suggest_categorical("objective", choices)
    hyperparams = sample_ppo_params(trial, n_actions, n_envs, additional_args)
    hyperparams["objective"] = objective
    if objective == "adaptive_kl":
        hyperparams["kl_target"] = trial.suggest_float("kl_target", *KL_TARGET_RANGE, log=True)
    elif objective == "fixed_kl":
        hyperparams["kl_coef"] = trial.suggest_float("kl_coef", *KL_COEF_RANGE, log=True)
    return hyperparams
