"""
LSTM actor-critic policies with invalid-action masking: sb3-contrib's recurrent policies whose action distribution is
sb3-contrib's masked one (``make_masked_proba_distribution``).

The networks, the LSTM handling and the value head are sb3-contrib's ``RecurrentActorCriticPolicy``, unchanged. Only
the step from the actor's latent code to the distribution differs (:meth:`_get_action_dist_from_latent`): it builds the
masked distribution and applies the masks of the current call. ``forward``, ``get_distribution``,
``evaluate_actions`` and ``predict`` gain an ``action_masks`` argument and hand it to that step for the duration of
the call, so their bodies stay sb3-contrib's.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.maskable.distributions import MaskableDistribution, MaybeMasks, make_masked_proba_distribution
from sb3_contrib.common.maskable.utils import get_action_masks
from sb3_contrib.common.recurrent.policies import (
    RecurrentActorCriticCnnPolicy,
    RecurrentActorCriticPolicy,
    RecurrentMultiInputActorCriticPolicy,
)
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.distributions import Distribution, MultiCategoricalDistribution
from stable_baselines3.common.type_aliases import Schedule
from stable_baselines3.common.vec_env import VecEnv


class StepMasks:
    """
    The action masks of a vectorised env's current step, read from the env when the policy acts and handed to the
    rollout buffer when that step is stored. This lets sb3-contrib's ``RecurrentPPO.collect_rollouts`` run unchanged:
    it calls the policy once per step and stores the step once, in that order; the hand-over checks that order.

    :param env: the training environment (its ``action_masks()`` is read through sb3-contrib's ``get_action_masks``)
    """

    def __init__(self, env: VecEnv) -> None:
        self.env = env
        self._pending: np.ndarray | None = None

    def fetch(self) -> np.ndarray:
        """The masks of the env's current step (for the policy's action)."""
        if self._pending is not None:
            raise RuntimeError("StepMasks: the policy acted twice without the step being stored (rollout out of sync)")
        self._pending = get_action_masks(self.env)
        return self._pending

    def take(self) -> np.ndarray:
        """The masks the policy acted with, once (for the rollout buffer)."""
        if self._pending is None:
            raise RuntimeError("StepMasks: a step was stored without the policy acting on it (rollout out of sync)")
        masks, self._pending = self._pending, None
        return masks


class MaskableRecurrentActorCriticPolicy(RecurrentActorCriticPolicy):
    """
    sb3-contrib's ``RecurrentActorCriticPolicy`` (LSTM actor and critic) with a masked action distribution, for
    Discrete, MultiDiscrete and MultiBinary actions. Same constructor arguments; ``use_sde`` must be False.

    The action layer has sb3-contrib's ``MaskablePPO`` layout: one logit per action (Discrete), per sub-action
    (MultiDiscrete), and two per binary dimension (MultiBinary). For Discrete and MultiDiscrete actions the parameters
    are therefore exactly those of ``RecurrentPPO``'s policy for the same seed.
    """

    action_dist: MaskableDistribution  # type: ignore[assignment]

    #: masks applied by :meth:`_get_action_dist_from_latent` during the current call (``None``: no masking)
    _current_masks: MaybeMasks = None
    #: while ``RecurrentPPO.collect_rollouts`` runs with masking, the source of each step's masks for :meth:`forward`
    step_masks: StepMasks | None = None

    def _build(self, lr_schedule: Schedule) -> None:
        # SB3's _build only accepts its own distributions. Build the layers with the unmasked distribution that has the
        # masked one's logit layout (for MultiBinary: two categories per dimension, as sb3-contrib's
        # MaskableBernoulliDistribution; SB3's Bernoulli has one logit), then switch to the masked distribution.
        if isinstance(self.action_space, spaces.MultiBinary):
            n_binary = self.action_space.n
            assert isinstance(n_binary, int), f"MultiBinary({n_binary}) actions must be flat to be masked"
            self.action_dist = MultiCategoricalDistribution([2] * n_binary)  # type: ignore[assignment]
        super()._build(lr_schedule)
        self.action_dist = make_masked_proba_distribution(self.action_space)

    def _get_action_dist_from_latent(self, latent_pi: th.Tensor) -> Distribution:
        distribution = self.action_dist.proba_distribution(action_logits=self.action_net(latent_pi))
        if self._current_masks is not None:
            distribution.apply_masking(self._current_masks)
        return distribution

    @contextmanager
    def _masked(self, action_masks: MaybeMasks) -> Iterator[None]:
        """
        Apply ``action_masks`` to every distribution built inside the block (sb3-contrib's bodies run unchanged).
        ``None`` keeps the masks of an enclosing call (e.g. ``predict`` -> ``_predict`` -> ``get_distribution``), and
        there are none outside every call.
        """
        if action_masks is None:
            yield
            return
        previous, self._current_masks = self._current_masks, action_masks
        try:
            yield
        finally:
            self._current_masks = previous

    def forward(  # type: ignore[override]
        self,
        obs: th.Tensor,
        lstm_states: RNNStates,
        episode_starts: th.Tensor,
        deterministic: bool = False,
        action_masks: MaybeMasks = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor, RNNStates]:
        """
        ``RecurrentActorCriticPolicy.forward`` (actions, values, log-probabilities, new LSTM states) with masked actions.

        :param action_masks: masks of shape (batch, mask_dims), True/1 for legal actions; ``None``: the current step's
            masks when called from a masked rollout (see :class:`StepMasks`), else no masking
        """
        if action_masks is None and self.step_masks is not None:
            action_masks = self.step_masks.fetch()
        with self._masked(action_masks):
            return super().forward(obs, lstm_states, episode_starts, deterministic)

    def get_distribution(  # type: ignore[override]
        self,
        obs: th.Tensor,
        lstm_states: tuple[th.Tensor, th.Tensor],
        episode_starts: th.Tensor,
        action_masks: MaybeMasks = None,
    ) -> tuple[Distribution, tuple[th.Tensor, ...]]:
        """
        The masked action distribution and the actor's new LSTM states (``RecurrentActorCriticPolicy.get_distribution``).

        :param action_masks: masks of shape (batch, mask_dims); ``None``: no masking (unless called inside a masked call)
        """
        with self._masked(action_masks):
            return super().get_distribution(obs, lstm_states, episode_starts)

    def evaluate_actions(  # type: ignore[override]
        self,
        obs: th.Tensor,
        actions: th.Tensor,
        lstm_states: RNNStates,
        episode_starts: th.Tensor,
        action_masks: MaybeMasks = None,
    ) -> tuple[th.Tensor, th.Tensor, th.Tensor]:
        """
        Values, log-probabilities and entropy of the masked distribution (``RecurrentActorCriticPolicy.evaluate_actions``).

        :param action_masks: masks of shape (batch, mask_dims); ``None``: no masking
        """
        with self._masked(action_masks):
            return super().evaluate_actions(obs, actions, lstm_states, episode_starts)

    def predict(  # type: ignore[override]
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
        action_masks: np.ndarray | None = None,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """
        Action and next LSTM state (``RecurrentActorCriticPolicy.predict``), drawn from the masked distribution.

        :param action_masks: masks of shape (n_envs, mask_dims) or (mask_dims,); ``None``: no masking
        """
        with self._masked(action_masks):
            return super().predict(observation, state, episode_start, deterministic)


# The CNN and dict-observation variants differ from the MLP one only in their default features extractor, which the
# MRO takes from sb3-contrib's classes (their __init__); the masking comes from MaskableRecurrentActorCriticPolicy.
class MaskableRecurrentActorCriticCnnPolicy(MaskableRecurrentActorCriticPolicy, RecurrentActorCriticCnnPolicy):
    """:class:`MaskableRecurrentActorCriticPolicy` with sb3-contrib's CNN defaults (``NatureCNN``)."""


class MaskableRecurrentMultiInputActorCriticPolicy(MaskableRecurrentActorCriticPolicy, RecurrentMultiInputActorCriticPolicy):
    """:class:`MaskableRecurrentActorCriticPolicy` with sb3-contrib's dict-observation defaults (``CombinedExtractor``)."""


MlpLstmPolicy = MaskableRecurrentActorCriticPolicy
CnnLstmPolicy = MaskableRecurrentActorCriticCnnPolicy
MultiInputLstmPolicy = MaskableRecurrentMultiInputActorCriticPolicy

__all__ = [
    "CnnLstmPolicy",
    "MaskableRecurrentActorCriticCnnPolicy",
    "MaskableRecurrentActorCriticPolicy",
    "MaskableRecurrentMultiInputActorCriticPolicy",
    "MlpLstmPolicy",
    "MultiInputLstmPolicy",
    "StepMasks",
]
