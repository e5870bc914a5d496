"""
Rollout buffers that store action masks alongside the LSTM states: sb3-contrib's recurrent buffers, with each
minibatch's masks returned in the same padded sequence layout as its other per-sample tensors.
"""

from collections.abc import Callable, Generator
from typing import Any, NamedTuple

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer, create_sequencers
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from stable_baselines3.common.type_aliases import TensorDict
from stable_baselines3.common.vec_env import VecNormalize

from sb3_ppo_variants.maskable_recurrent.policies import StepMasks


class MaskableRecurrentRolloutBufferSamples(NamedTuple):
    """sb3-contrib's ``RecurrentRolloutBufferSamples`` plus the action masks, shape (padded batch, mask_dims)."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    lstm_states: RNNStates
    episode_starts: th.Tensor
    mask: th.Tensor
    action_masks: th.Tensor


class MaskableRecurrentDictRolloutBufferSamples(NamedTuple):
    """sb3-contrib's ``RecurrentDictRolloutBufferSamples`` plus the action masks, shape (padded batch, mask_dims)."""

    observations: TensorDict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    lstm_states: RNNStates
    episode_starts: th.Tensor
    mask: th.Tensor
    action_masks: th.Tensor


def mask_dims(action_space: spaces.Space) -> int:
    """Length of one action mask (sb3-contrib's convention): n, sum(nvec), or 2 per binary dimension."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(sum(action_space.nvec))
    if isinstance(action_space, spaces.MultiBinary) and isinstance(action_space.n, int):
        return 2 * action_space.n
    raise ValueError(f"Action masks are not supported for the action space {action_space}")


class _MaskStorage:
    """
    The mask-specific part of both buffers (a mixin placed before sb3-contrib's recurrent buffer in the bases):
    storage, ``add(action_masks=...)``, the flattening in ``get`` and the padding in ``_get_samples``.
    """

    # Provided by sb3-contrib's recurrent buffers.
    buffer_size: int
    n_envs: int
    pos: int
    generator_ready: bool
    action_space: spaces.Space
    episode_starts: np.ndarray
    device: th.device
    swap_and_flatten: Callable[[np.ndarray], np.ndarray]

    action_masks: np.ndarray
    mask_dims: int
    #: set by the algorithm while a masked rollout is collected: masks of the step being stored (see StepMasks)
    step_masks: StepMasks | None = None

    def reset(self) -> None:
        self.mask_dims = mask_dims(self.action_space)
        # All ones (every action legal) unless masks are given: a rollout without masking stores "no mask".
        self.action_masks = np.ones((self.buffer_size, self.n_envs, self.mask_dims), dtype=np.float32)
        super().reset()  # type: ignore[misc]

    def add(self, *args: Any, action_masks: np.ndarray | None = None, **kwargs: Any) -> None:
        """
        :param action_masks: the masks the action was drawn with, (n_envs, mask_dims); ``None``: the current
            :class:`StepMasks`' if a masked rollout is running, else all actions legal
        """
        if action_masks is None and self.step_masks is not None:
            action_masks = self.step_masks.take()
        if action_masks is not None:
            self.action_masks[self.pos] = np.asarray(action_masks).reshape((self.n_envs, self.mask_dims))
        super().add(*args, **kwargs)  # type: ignore[misc]

    def get(self, batch_size: int | None = None) -> Generator[Any, None, None]:
        # sb3-contrib flattens its arrays to (n_envs * n_steps, ...) in sequence order on the first get(); the masks
        # need the same layout.
        if not self.generator_ready:
            self.action_masks = self.swap_and_flatten(self.action_masks)
        yield from super().get(batch_size)  # type: ignore[misc]

    def _masks_of(self, batch_inds: np.ndarray, env_change: np.ndarray) -> th.Tensor:
        # The minibatch's sequences as sb3-contrib's _get_samples cuts them (sb3-contrib's public create_sequencers,
        # with the same inputs). Padded rows are all ones (every action legal), so that a padded row's distribution is
        # an ordinary, finite one.
        _, pad, _ = create_sequencers(self.episode_starts[batch_inds], env_change[batch_inds], self.device)
        masks = pad(self.action_masks[batch_inds], padding_value=1.0)
        return masks.reshape((-1, self.mask_dims))


class MaskableRecurrentRolloutBuffer(_MaskStorage, RecurrentRolloutBuffer):
    """
    sb3-contrib's ``RecurrentRolloutBuffer`` that also stores the action masks of each step and returns them, per
    minibatch, padded like the other per-sample tensors (padded rows: all actions legal). Same constructor arguments.
    """

    # The one method of sb3-contrib's buffer that builds a minibatch (sb3-contrib 2.9.2): get() calls it per minibatch.
    # It is private, but the only place a minibatch can gain a field; the override adds the masks and reads nothing
    # that sb3-contrib's method sets on the buffer.
    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env_change: np.ndarray, env: VecNormalize | None = None
    ) -> MaskableRecurrentRolloutBufferSamples:
        samples = super()._get_samples(batch_inds, env_change, env)
        return MaskableRecurrentRolloutBufferSamples(*samples, action_masks=self._masks_of(batch_inds, env_change))


class MaskableRecurrentDictRolloutBuffer(_MaskStorage, RecurrentDictRolloutBuffer):
    """:class:`MaskableRecurrentRolloutBuffer` for dict observations (sb3-contrib's ``RecurrentDictRolloutBuffer``)."""

    # The one method of sb3-contrib's buffer that builds a minibatch (sb3-contrib 2.9.2): get() calls it per minibatch.
    # It is private, but the only place a minibatch can gain a field; the override adds the masks and reads nothing
    # that sb3-contrib's method sets on the buffer.
    def _get_samples(  # type: ignore[override]
        self, batch_inds: np.ndarray, env_change: np.ndarray, env: VecNormalize | None = None
    ) -> MaskableRecurrentDictRolloutBufferSamples:
        samples = super()._get_samples(batch_inds, env_change, env)
        return MaskableRecurrentDictRolloutBufferSamples(*samples, action_masks=self._masks_of(batch_inds, env_change))
