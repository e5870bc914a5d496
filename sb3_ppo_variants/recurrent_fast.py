"""
The fast parts of the recurrent update: whole-sequence LSTM calls and padded minibatches without per-sequence copies.

sb3-contrib's ``RecurrentActorCriticPolicy._process_sequence`` runs the LSTM one time step at a time whenever any
sequence of a minibatch starts an episode, which is almost always. But the recurrent buffers cut sequences at episode
starts (``create_sequencers``): an episode can only start at a sequence's first step. :func:`whole_sequence_lstm`
therefore resets each sequence's initial state where its first step starts an episode and runs the whole padded
sequence in one LSTM call: the same computation, in a different floating-point order (one matrix product over all
steps' inputs instead of one per step). A minibatch with an episode start anywhere else (a buffer that cuts its
sequences differently) runs sb3-contrib's step-by-step loop.

:func:`recurrent_minibatches` gives ``RecurrentRolloutBuffer.get()``'s minibatches (the same random split, the same
sequences, the same padded tensors) gathered with one index per field instead of one tensor per sequence and field,
and with each padded row's ``rows`` of the flattened rollout, so that π_old's distribution can be computed once per
update (:class:`~sb3_ppo_variants.old_policy.OldDistributions`).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import torch as th
from sb3_contrib.common.recurrent.buffers import RecurrentRolloutBuffer, create_sequencers
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from sb3_contrib.ppo_recurrent.policies import MlpLstmPolicy
from stable_baselines3.common.torch_layers import FlattenExtractor
from torch import nn

#: The policy classes whose update runs whole-sequence LSTM calls (sb3-contrib's MlpLstmPolicy; the masked variant adds
#: its own): exact classes, since a subclass may change how sequences run.
SEQUENCE_POLICIES: tuple[type, ...] = (MlpLstmPolicy,)
#: The buffer classes whose minibatches :func:`recurrent_minibatches` gives: sequences cut at every episode start
#: (sb3-contrib's create_sequencers), observations not a Dict.
SEQUENCE_BUFFERS: tuple[type, ...] = (RecurrentRolloutBuffer,)
#: The arrays that the recurrent buffers' get() flattens in sequence order, besides the observations.
_STATE_FIELDS = ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")
_FLAT_FIELDS = ("actions", "values", "log_probs", "advantages", "returns", *_STATE_FIELDS, "episode_starts")


def whole_sequence_lstm(
    features: th.Tensor, lstm_states: tuple[th.Tensor, th.Tensor], episode_starts: th.Tensor, lstm: nn.LSTM
) -> tuple[th.Tensor, tuple[th.Tensor, th.Tensor]]:
    """
    ``RecurrentActorCriticPolicy._process_sequence`` (same arguments, same results up to float order) with one LSTM
    call per sequence batch: the initial state is zeroed where a sequence's first step starts an episode. Where an
    episode starts after a sequence's first step, sb3-contrib's own step-by-step loop runs.
    """
    n_seq = lstm_states[0].shape[1]
    starts = episode_starts.reshape((n_seq, -1))
    if starts[:, 1:].any():  # not the buffers' cut at episode starts: sb3-contrib's loop resets inside sequences
        # sb3-contrib annotates its second result as a tensor; it is the LSTM's (hidden, cell) pair
        return RecurrentActorCriticPolicy._process_sequence(  # type: ignore[return-value]
            features, lstm_states, episode_starts, lstm
        )
    keep = (1.0 - starts[:, 0]).view(1, n_seq, 1)
    features_sequence = features.reshape((n_seq, -1, lstm.input_size)).swapaxes(0, 1)
    lstm_output, new_states = lstm(features_sequence, (keep * lstm_states[0], keep * lstm_states[1]))
    return th.flatten(lstm_output.transpose(0, 1), start_dim=0, end_dim=1), new_states


@contextmanager
def whole_sequences(policy: RecurrentActorCriticPolicy, enabled: bool = True) -> Iterator[None]:
    """
    Within the block, ``policy`` runs :func:`whole_sequence_lstm` for its LSTM passes (actor, critic, values).

    :param policy: a policy that :func:`sequence_lstm_unsupported_reason` accepts
    :param enabled: ``False``: leave the policy as it is (sb3-contrib's step-by-step loop)
    """
    if not enabled:
        yield
        return
    # The policy's forward passes call the static `self._process_sequence` (sb3-contrib's private hook for the LSTM
    # pass, the one place that decides how a sequence runs): an instance attribute shadows it for this block only.
    policy._process_sequence = whole_sequence_lstm  # type: ignore[method-assign, assignment]
    try:
        yield
    finally:
        del policy._process_sequence


def sequence_lstm_unsupported_reason(
    policy: Any, buffer: Any, policies: tuple[type, ...] = SEQUENCE_POLICIES, buffers: tuple[type, ...] = SEQUENCE_BUFFERS
) -> str | None:
    """
    Why the update cannot run :func:`whole_sequence_lstm` for ``policy`` on ``buffer``'s minibatches, or ``None``.

    :param policies: the accepted policy classes (exact)
    :param buffers: the accepted buffer classes (exact)
    """
    if type(policy) not in policies:
        return f"policy class {type(policy).__name__} (only MlpLstmPolicy)"
    if type(buffer) not in buffers:
        return f"rollout buffer class {type(buffer).__name__} (only the recurrent buffers without Dict observations)"
    if type(policy)._process_sequence is not RecurrentActorCriticPolicy._process_sequence:
        return "the policy overrides _process_sequence"
    if not isinstance(policy.features_extractor, FlattenExtractor) or policy.device.type != "cpu":
        return "a features extractor other than FlattenExtractor, or a device other than the CPU"
    lstms = [policy.lstm_actor, getattr(policy, "lstm_critic", None)]
    if any(lstm is not None and type(lstm) is not nn.LSTM for lstm in lstms):
        return "an LSTM module other than torch.nn.LSTM"
    return None


# ----------------------------------------------------------------------------------------------------------------------
# Minibatches
# ----------------------------------------------------------------------------------------------------------------------


class RecurrentRolloutBufferRows(NamedTuple):
    """
    sb3-contrib's ``RecurrentRolloutBufferSamples`` (the same fields, in the same order) plus ``rows``: for each padded
    row, its row of the flattened rollout (0 for padding, which ``mask`` marks as not valid).
    """

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    lstm_states: RNNStates
    episode_starts: th.Tensor
    mask: th.Tensor
    rows: th.Tensor


class MaskableRecurrentRolloutBufferRows(NamedTuple):
    """The masked recurrent buffer's samples (``action_masks``, padded rows all legal) plus ``rows``."""

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
    rows: th.Tensor


def recurrent_minibatches_unsupported_reason(buffer: Any, buffers: tuple[type, ...] = SEQUENCE_BUFFERS) -> str | None:
    """Why :func:`recurrent_minibatches` cannot give ``buffer.get()``'s minibatches (exact ``buffers``), or ``None``."""
    if type(buffer) in buffers:
        return None
    return f"rollout buffer class {type(buffer).__name__} (its own get())"


def flatten_recurrent_in_place(buffer: RecurrentRolloutBuffer, masked: bool = False) -> None:
    """
    What the first ``get()`` of a full recurrent buffer does before it draws minibatches (``generator_ready``).

    :param masked: the buffer also holds ``action_masks`` (the masked recurrent buffers), flattened the same way
    """
    assert buffer.full, "Rollout buffer must be full before sampling from it"
    if buffer.generator_ready:
        return
    for name in _STATE_FIELDS:  # (n_steps, n_layers, n_envs, dim) -> (n_steps, n_envs, n_layers, dim)
        buffer.__dict__[name] = buffer.__dict__[name].swapaxes(1, 2)
    names: tuple[str, ...] = ("observations", *_FLAT_FIELDS)
    if masked:
        names = (*names, "action_masks")
    for name in names:
        buffer.__dict__[name] = buffer.swap_and_flatten(buffer.__dict__[name])
    buffer.generator_ready = True


def recurrent_minibatches(
    buffer: RecurrentRolloutBuffer, batch_size: int | None, shuffle: bool = True, masked: bool = False
) -> Iterator[Any]:
    """
    ``buffer.get(batch_size)`` for the buffers of :data:`SEQUENCE_BUFFERS`: the same ``np.random.randint`` split at the
    same time (the first ``next()``), the same sequences (sb3-contrib's ``create_sequencers``), and tensors of the same
    dtypes, shapes and values, gathered with one index per field; each minibatch also carries its ``rows``.

    :param buffer: a full buffer of one of :data:`SEQUENCE_BUFFERS`
    :param batch_size: minibatch size; ``None``: the whole buffer
    :param shuffle: ``False``: no split (NumPy's random state is not touched), the sequences in rollout order
    :param masked: a masked recurrent buffer: the minibatches also carry its ``action_masks`` (padded rows all legal)
    """
    n_samples = buffer.buffer_size * buffer.n_envs
    split_index = np.random.randint(n_samples) if shuffle else 0
    flatten_recurrent_in_place(buffer, masked)
    indices = np.concatenate((np.arange(split_index, n_samples), np.arange(split_index)))
    # (n_samples, 1): the first step of each env starts a sequence, as in get()
    env_change = buffer.swap_and_flatten(np.eye(buffer.buffer_size, 1).repeat(buffer.n_envs, axis=1))
    fields = {name: th.as_tensor(buffer.__dict__[name]) for name in ("observations", *_FLAT_FIELDS)}
    if masked:
        fields["action_masks"] = th.as_tensor(buffer.__dict__["action_masks"])
    batch_size = batch_size or n_samples
    for start in range(0, n_samples, batch_size):
        yield _padded_minibatch(buffer, fields, indices[start : start + batch_size], env_change, masked)


def _padded_minibatch(
    buffer: RecurrentRolloutBuffer, fields: dict[str, th.Tensor], batch_inds: np.ndarray, env_change: np.ndarray, masked: bool
) -> Any:
    """One minibatch of :func:`recurrent_minibatches`: sb3-contrib's ``_get_samples`` for ``batch_inds``."""
    seq_starts, _, _ = create_sequencers(buffer.episode_starts[batch_inds], env_change[batch_inds], buffer.device)
    lengths = np.diff(np.append(seq_starts, len(batch_inds)))
    steps = np.arange(lengths.max())
    valid = steps[None, :] < lengths[:, None]  # (n_seq, max_length)
    positions = np.where(valid, seq_starts[:, None] + steps[None, :], 0)
    rows = th.as_tensor(np.where(valid, batch_inds[positions], 0).reshape(-1))
    valid_rows = th.as_tensor(valid.reshape(-1))

    def gather(name: str, padding: float = 0.0) -> th.Tensor:
        values = fields[name].index_select(0, rows)
        where = valid_rows.view(-1, *(1,) * (values.dim() - 1))
        return th.where(where, values, th.tensor(padding, dtype=values.dtype)).to(buffer.device)

    first_rows = th.as_tensor(batch_inds[seq_starts])

    def states(hidden: str, cell: str) -> tuple[th.Tensor, th.Tensor]:
        # (n_samples, n_layers, dim) -> (n_layers, n_seq, dim), as _get_samples' swapaxes + contiguous
        hidden_state, cell_state = (fields[name].index_select(0, first_rows).swapaxes(0, 1) for name in (hidden, cell))
        return hidden_state.contiguous().to(buffer.device), cell_state.contiguous().to(buffer.device)

    lstm_states = RNNStates(states("hidden_states_pi", "cell_states_pi"), states("hidden_states_vf", "cell_states_vf"))
    flat = [gather(name).reshape(-1) for name in ("values", "log_probs", "advantages", "returns")]
    common: tuple[Any, ...] = (
        gather("observations"),
        gather("actions"),
        *flat,
        lstm_states,
        gather("episode_starts").reshape(-1),
        valid_rows.to(th.float32).to(buffer.device),
    )
    if masked:
        return MaskableRecurrentRolloutBufferRows(*common, gather("action_masks", 1.0), rows.to(buffer.device))  # type: ignore[arg-type, call-arg]
    return RecurrentRolloutBufferRows(*common, rows.to(buffer.device))  # type: ignore[arg-type, call-arg]
