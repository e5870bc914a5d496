"""
The one way a model of this package's registry is evaluated and played, shared by ``compare``, rl-zoo's ``train``
(EvalCallback), ``-optimize`` (trial evaluation and pruning), ``enjoy`` and ``record-video``.

Whether a model uses action masks is decided by its algorithm (the registry entry's ``maskable``:
:func:`~sb3_ppo_variants.zoo.adapter.uses_action_masks`), not by its class: ``MaskableRecurrentPPOVariant`` is not a
``MaskablePPO``. A maskable model is evaluated with sb3-contrib's masked ``evaluate_policy`` (and, in callbacks, its
``MaskableEvalCallback``), through a :class:`MaskedPredictor` that also carries the LSTM state of recurrent models.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import rl_zoo3.exp_manager
import rl_zoo3.utils
from rl_zoo3.callbacks import TrialEvalCallback
from sb3_contrib.common.maskable.callbacks import MaskableEvalCallback
from sb3_contrib.common.maskable.evaluation import evaluate_policy as evaluate_masked_policy
from sb3_contrib.common.maskable.utils import get_action_masks, is_masking_supported
from stable_baselines3.common.evaluation import evaluate_policy as evaluate_unmasked_policy
from stable_baselines3.common.vec_env import VecEnv

from sb3_ppo_variants.zoo.adapter import ZooConfigError, algorithm_class, uses_action_masks


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


@contextmanager
def replaced(module: Any, name: str, value: Any) -> Iterator[None]:
    """``module.name`` is ``value`` inside the block (restored afterwards)."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


@contextmanager
def masked_play(algo: str) -> Iterator[None]:
    """
    Inside the block, rl-zoo's ``enjoy`` and ``record_video`` play a model of ``algo`` with the env's masks at every
    step (for an algorithm that uses them; otherwise nothing changes). Both scripts load the model with
    ``ALGOS[algo].load(...)`` and call ``model.predict(obs, state=..., episode_start=..., deterministic=...)``; the
    loaded model is wrapped in a :class:`MaskedPredictor` reading the env's masks. ``record_video`` passes the env to
    ``load``; ``enjoy`` does not, so its env is taken from its ``create_test_env`` call.
    """
    if not uses_action_masks(algo):
        yield
        return
    import rl_zoo3.enjoy

    algorithm: Any = algorithm_class(algo)
    test_envs: list[VecEnv] = []

    def create_test_env(*args: Any, **kwargs: Any) -> VecEnv:
        env = rl_zoo3.utils.create_test_env(*args, **kwargs)
        test_envs.append(env)
        return env

    class MaskedLoader:
        """``ALGOS[algo]`` for ``enjoy`` and ``record_video``: only ``load`` is used there."""

        @staticmethod
        def load(*args: Any, env: VecEnv | None = None, **kwargs: Any) -> MaskedPredictor:
            played_env = env if env is not None else test_envs[-1]
            check_action_masks(algo, played_env, "test")
            return MaskedPredictor(algorithm.load(*args, env=env, **kwargs), played_env)

    # rl_zoo3.enjoy.create_test_env is the name enjoy() calls (imported from rl_zoo3.utils by rl_zoo3/enjoy.py, rl-zoo
    # 2.9.2); it is not part of rl-zoo's documented API, but it is the only way to learn which env enjoy plays in.
    with replaced(rl_zoo3.enjoy, "create_test_env", create_test_env):
        saved = rl_zoo3.utils.ALGOS[algo]
        rl_zoo3.utils.ALGOS[algo] = MaskedLoader  # type: ignore[assignment]
        try:
            yield
        finally:
            rl_zoo3.utils.ALGOS[algo] = saved


@contextmanager
def masked_zoo_callbacks(algo: str) -> Iterator[None]:
    """
    Inside the block, the evaluation callbacks rl-zoo's ``ExperimentManager`` creates (``EvalCallback`` in
    ``create_callbacks``, ``TrialEvalCallback`` in ``objective``) evaluate with the env's masks, for an algorithm that
    uses them.
    """
    if not uses_action_masks(algo):
        yield
        return
    # Module attributes of rl_zoo3/exp_manager.py (rl-zoo 2.9.2), which imports both callback classes by name and
    # builds them inside create_callbacks() and objective(): replacing them there is the narrow way to change the class
    # without copying those methods. The replacements take the same arguments.
    with replaced(rl_zoo3.exp_manager, "EvalCallback", MaskedEvalCallback):
        with replaced(rl_zoo3.exp_manager, "TrialEvalCallback", MaskedTrialEvalCallback):
            yield
