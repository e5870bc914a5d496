"""
The one way a model of this package's registry is evaluated and played, shared by ``compare``, rl-zoo's ``train``
(EvalCallback), ``-optimize`` (trial evaluation and pruning), ``enjoy`` and ``record-video``.

Whether a model uses action masks is decided by its algorithm (the registry entry's ``maskable``:
:func:`~sb3_ppo_variants.zoo.adapter.uses_action_masks`), not by its class: ``MaskableRecurrentPPOVariant`` is not a
``MaskablePPO``. A maskable model is evaluated with sb3-contrib's masked ``evaluate_policy`` (and, in callbacks, its
``MaskableEvalCallback``), through a :class:`MaskedPredictor` that also carries the LSTM state of recurrent models.
"""

from typing import Any

import numpy as np
from rl_zoo3.callbacks import TrialEvalCallback
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.evaluation import evaluate_policy as evaluate_masked_policy
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.evaluation import evaluate_policy as evaluate_unmasked_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.zoo.adapter import ZooConfigError, uses_action_masks


class MaskedPredictor:
    """
    A maskable model whose ``predict`` takes the env's current masks when none are given and keeps the model's
    recurrent state when none is passed back; every other attribute is the model's.

    The state matters for sb3-contrib's masked ``evaluate_policy`` (2.9.2): with masks it stores ``predict``'s state
    in a variable it never passes back (``actions, state = model.predict(..., state=states, ...)``), so a recurrent
    model would be evaluated with a fresh LSTM state at every step. Each evaluation starts with ``episode_start`` set
    for every env, which resets the kept state.

    :param model: a model whose ``predict`` takes ``action_masks``
    :param env: where the masks come from (``None``: the caller passes them)
    """

    def __init__(self, model: Any, env: Any = None) -> None:
        self.model = model
        self.env = env
        self.state: Any = None

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, Any]:
        if action_masks is None:
            action_masks = get_action_masks(self.env)
        actions, self.state = self.model.predict(
            observation,
            state=self.state if state is None else state,
            episode_start=episode_start,
            deterministic=deterministic,
            action_masks=action_masks,
        )
        return actions, self.state

    def __getattr__(self, name: str) -> Any:
        return getattr(self.model, name)


def check_action_masks(algo: str, env: Any, role: str) -> None:
    """
    :param algo: rl-zoo key of the algorithm
    :param env: an env (or VecEnv) the algorithm will use
    :param role: what the env is for, for the message (``"evaluation"``, ...)
    :raises ZooConfigError: the algorithm uses action masks and ``env`` provides none
    """
    if uses_action_masks(algo) and not is_masking_supported(env):
        raise ZooConfigError(
            f"{algo} plays with action masks, but its {role} env provides none (no action_masks() method). Give the env "
            "an action_masks() method returning the legal actions (a bool array of the action space's size), or wrap it: "
            "env_wrapper: sb3_contrib.common.wrappers.ActionMasker (with a mask function), or "
            "sb3_ppo_variants.wrappers.InfoActionMasker for envs that report info['action_mask']."
        )


def evaluate_policy(model: Any, env: VecEnv, algo: str, **kwargs: Any) -> Any:
    """
    SB3's ``evaluate_policy``, or for an algorithm that uses action masks sb3-contrib's masked one (with the model's
    recurrent state kept, see :class:`MaskedPredictor`).

    :param model: the model to evaluate
    :param env: the evaluation env
    :param algo: rl-zoo key of the model's algorithm
    :param kwargs: ``evaluate_policy``'s other arguments (``n_eval_episodes``, ``deterministic``, ...)
    """
    if uses_action_masks(algo):
        check_action_masks(algo, env, "evaluation")
        return evaluate_masked_policy(MaskedPredictor(model), env, use_masking=True, **kwargs)  # type: ignore[arg-type]
    return evaluate_unmasked_policy(model, env, **kwargs)


class MaskedEvalCallback(MaskableEvalCallback):
    """
    sb3-contrib's ``MaskableEvalCallback`` (same arguments: curves, best model, logs), evaluating with the eval env's
    masks and keeping a recurrent model's LSTM state (see :class:`MaskedPredictor`).
    """

    def _init_callback(self) -> None:
        super()._init_callback()
        self._predictor = MaskedPredictor(self.model)

    def _on_step(self) -> bool:
        # MaskableEvalCallback evaluates self.model; the predictor passes everything else (save, VecNormalize) through.
        model, self.model = self.model, self._predictor  # type: ignore[assignment]
        try:
            return super()._on_step()
        finally:
            self.model = model


class MaskedTrialEvalCallback(TrialEvalCallback, MaskedEvalCallback):
    """rl-zoo's ``TrialEvalCallback`` (same arguments: reports and prunes the trial) evaluating with the env's masks."""
