"""
π_old: the policy that collected a rollout, frozen for the whole update.

The KL penalty needs the *full* old action distribution at every state of the rollout (pitfall 5 of the paper notes:
taking it from the parameters being optimised makes the KL identically 0). SB3's ``RolloutBuffer`` only stores the
old log-probability of the taken action, so before the first gradient step we run the policy once over the rollout
(no grad) and keep the distribution parameters. This costs one forward pass of the actor per update instead of one
per minibatch, does not copy the policy and does not touch any random-number generator.
"""

import warnings
from collections.abc import Iterator

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, RolloutBufferSamples
from stable_baselines3.common.utils import obs_as_tensor

from sb3_ppo_variants.kl import ClosedFormKL, DistributionParams, closed_form_kl, sampled_kl

#: Full-rollout passes run in chunks of at least this many samples: big enough that per-call overhead does not
#: matter, small enough that a rollout of images does not have to fit in memory at once.
MIN_CHUNK_SIZE = 1024


def flat_rollout(buffer: RolloutBuffer, array: np.ndarray) -> np.ndarray:
    """Flatten an (n_steps, n_envs, ...) buffer array in the order ``RolloutBuffer.get()`` indexes it."""
    return buffer.swap_and_flatten(array)


def minibatches_with_indices(buffer: RolloutBuffer, batch_size: int) -> Iterator[tuple[RolloutBufferSamples, th.Tensor]]:
    """
    Iterate ``buffer.get(batch_size)`` and also yield the flat indices of each minibatch.

    SB3's ``get()`` draws the permutation with ``np.random.permutation`` and hands each slice to ``_get_samples``.
    We record the indices at that call instead of drawing our own permutation, so the NumPy random stream (and with
    it parity with SB3 PPO) is unchanged and custom buffer subclasses keep their own ``get()``.

    :param buffer: a full rollout buffer whose ``get()`` calls ``_get_samples(batch_inds, ...)``
    :param batch_size: minibatch size
    :return: iterator of (samples, indices into the flattened rollout)
    """
    recorded: list[np.ndarray] = []
    get_samples = buffer._get_samples

    def recording_get_samples(batch_inds: np.ndarray, *args, **kwargs):  # type: ignore[no-untyped-def]
        recorded.append(batch_inds)
        return get_samples(batch_inds, *args, **kwargs)

    buffer._get_samples = recording_get_samples  # type: ignore[method-assign]
    try:
        for samples in buffer.get(batch_size):
            if len(recorded) != 1:
                raise RuntimeError(
                    f"{type(buffer).__name__}.get() must produce each minibatch with one call to _get_samples(batch_inds)"
                )
            yield samples, th.as_tensor(recorded.pop(), device=buffer.device)
    finally:
        # Drop our instance attribute so the class method is visible again. After an exception this can run late
        # (when the traceback is freed), so only remove it if a newer iteration has not installed its own.
        if buffer.__dict__.get("_get_samples") is recording_get_samples:
            del buffer._get_samples


class OldPolicy:
    """
    The action distributions of π_old at every state of one rollout.

    Build it with :meth:`from_rollout` before the first optimizer step of an update. Distributions without a closed-form
    KL fall back to the sample estimate :func:`sb3_ppo_variants.kl.sampled_kl` on the taken actions, with a warning.

    :param policy: the policy, still equal to the one that collected the rollout
    :param observations: the rollout's observations, flattened in ``RolloutBuffer.get()`` order
    :param actions: the rollout's actions, same order (used only by the sample-estimate fallback)
    :param log_probs: the rollout's log π_old(a|s), same order (used only by the sample-estimate fallback)
    :param chunk_size: number of samples per forward pass
    """

    def __init__(
        self,
        policy: ActorCriticPolicy,
        observations: PyTorchObs,
        actions: th.Tensor,
        log_probs: th.Tensor,
        chunk_size: int,
    ) -> None:
        self.observations = observations
        self.actions = actions
        self.log_probs = log_probs
        self.chunk_size = chunk_size
        self.n_samples = len(log_probs)
        self.closed_form: ClosedFormKL | None = None
        chunks: list[DistributionParams] = []
        for distribution in self._distributions(policy):
            if not chunks:
                self.closed_form = closed_form_kl(distribution)
                if self.closed_form is None:
                    warnings.warn(
                        f"No closed-form KL for {type(distribution).__name__}: the KL penalty and train/kl use the "
                        "sample estimate (r - 1) - log r on the rollout's actions instead of the exact KL.",
                        stacklevel=3,
                    )
                    break
            chunks.append(self.closed_form.parameters(distribution.distribution))  # type: ignore[union-attr, attr-defined]
        self.params: DistributionParams = tuple(th.cat(parts) for parts in zip(*chunks, strict=True))

    @classmethod
    def from_rollout(cls, policy: ActorCriticPolicy, buffer: RolloutBuffer, batch_size: int) -> "OldPolicy":
        """
        Capture π_old from a full rollout buffer whose ``get()`` has not started yet.

        :param policy: the policy that collected the rollout
        :param buffer: the full rollout buffer (``RolloutBuffer`` or ``DictRolloutBuffer``)
        :param batch_size: the training minibatch size (the chunk size is at least this)
        """
        if isinstance(buffer.observations, dict):
            observations = {key: flat_rollout(buffer, obs) for key, obs in buffer.observations.items()}
        else:
            observations = flat_rollout(buffer, buffer.observations)  # type: ignore[assignment]
        actions = th.as_tensor(flat_rollout(buffer, buffer.actions), device=buffer.device)
        if isinstance(policy.action_space, spaces.Discrete):
            # Same conversion as in training: Discrete actions are stored as floats of shape (n, 1).
            actions = actions.long().flatten()
        log_probs = th.as_tensor(flat_rollout(buffer, buffer.log_probs), device=buffer.device).flatten()
        return cls(
            policy,
            obs_as_tensor(observations, buffer.device),  # type: ignore[arg-type]
            actions,
            log_probs,
            chunk_size=max(batch_size, MIN_CHUNK_SIZE),
        )

    def _distributions(self, policy: ActorCriticPolicy) -> Iterator[Distribution]:
        """Run the actor over the rollout in chunks, in evaluation mode (as when it collected the rollout)."""
        training = policy.training
        if training:
            policy.set_training_mode(False)
        try:
            with th.no_grad():
                for start in range(0, self.n_samples, self.chunk_size):
                    yield policy.get_distribution(self._slice_observations(slice(start, start + self.chunk_size)))
        finally:
            if training:
                policy.set_training_mode(True)

    def _slice_observations(self, index: slice) -> PyTorchObs:
        if isinstance(self.observations, dict):
            return {key: obs[index] for key, obs in self.observations.items()}
        return self.observations[index]

    @property
    def is_exact(self) -> bool:
        """Whether KLs are computed in closed form (``False``: sample estimate)."""
        return self.closed_form is not None

    def kl(
        self,
        batch_indices: th.Tensor,
        new_distribution: Distribution,
        new_log_prob: th.Tensor,
    ) -> th.Tensor:
        """
        KL[π_old(·|s) ‖ π_θ(·|s)] per sample for one minibatch.

        :param batch_indices: flat rollout indices of the minibatch
        :param new_distribution: π_θ on the minibatch (as filled by ``policy.evaluate_actions``)
        :param new_log_prob: log π_θ(a|s) of the minibatch's actions (used only by the sample-estimate fallback)
        :return: KL per sample, shape (batch,)
        """
        if self.closed_form is None:
            return sampled_kl(self.log_probs[batch_indices], new_log_prob)
        old = tuple(param[batch_indices] for param in self.params)
        return self.closed_form.kl(old, self.closed_form.parameters(new_distribution.distribution))  # type: ignore[attr-defined]

    def mean_kl(self, policy: ActorCriticPolicy) -> th.Tensor:
        """
        Mean KL[π_old ‖ π_θ] over the whole rollout, with π_θ = the policy now (after the update).

        This is the paper's d in the adaptive-β rule (§4). Returned as a 0-d tensor so the caller decides when to sync.
        """
        total = th.zeros((), device=self.log_probs.device)
        for start, distribution in zip(range(0, self.n_samples, self.chunk_size), self._distributions(policy), strict=True):
            index = slice(start, start + self.chunk_size)
            if self.closed_form is None:
                kl = sampled_kl(self.log_probs[index], distribution.log_prob(self.actions[index]))
            else:
                old = tuple(param[index] for param in self.params)
                kl = self.closed_form.kl(old, self.closed_form.parameters(distribution.distribution))  # type: ignore[attr-defined]
            total = total + kl.sum()
        return total / self.n_samples
