"""
A faster PPO update with the same results as SB3 PPO's ``train()``.

On an MLP policy, most of an update's time is per-call overhead, not arithmetic: ``nn.Module.__call__``, torch
``Distribution`` objects with argument validation, ``RolloutBuffer._get_samples`` converting six arrays per minibatch,
``clip_grad_norm_`` walking the modules for ``parameters()``, and the CPU optimizer running one kernel per parameter
tensor for each of its eight operations. These pieces (with :class:`~sb3_ppo_variants.fast_policy.FastActorCritic` for
the policy's forward passes) remove that overhead and keep every number:

- :func:`fast_minibatches`: ``RolloutBuffer.get()`` (and ``DictRolloutBuffer.get()``) with the same permutation from
  NumPy's global generator, the same slicing and the same tensors, indexed from tensors that share the buffer's memory.
- :class:`FlatAdam`: ``optimizer.zero_grad()``, ``clip_grad_norm_`` and ``Adam.step()`` on gradients and moments kept
  in one flat buffer each (the per-parameter tensors are views into them): each element-wise step of Adam is one kernel
  instead of one per parameter tensor. Element-wise CPU kernels compute each element independently of its position in
  the tensor (``tests/test_parity_update.py`` checks it op by op), so the moments and parameters are SB3's.

Each piece checks the cases it covers and the update falls back to SB3's code for everything else.
"""

from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch as th
from sb3_contrib.common.maskable.buffers import MaskableRolloutBuffer
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.type_aliases import TensorDict
from torch.optim import optimizer as torch_optimizer

# ----------------------------------------------------------------------------------------------------------------------
# Minibatches
# ----------------------------------------------------------------------------------------------------------------------

#: The buffer arrays that RolloutBuffer.get() flattens, besides the observations.
_FLAT_FIELDS = ("actions", "values", "log_probs", "advantages", "returns")


class RolloutBufferRows(NamedTuple):
    """
    SB3's ``RolloutBufferSamples`` (the same fields, in the same order) plus the minibatch's rows of the flattened
    buffer (``rows``, a long tensor), so that per-sample values computed once per update (π_old's distribution,
    :class:`~sb3_ppo_variants.old_policy.OldDistributions`) can be gathered for the minibatch.
    """

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    rows: th.Tensor


class DictRolloutBufferRows(NamedTuple):
    """SB3's ``DictRolloutBufferSamples`` with ``rows``, as :class:`RolloutBufferRows`."""

    observations: TensorDict
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    rows: th.Tensor


class MaskableRolloutBufferRows(NamedTuple):
    """sb3-contrib's ``MaskableRolloutBufferSamples`` with ``rows``, as :class:`RolloutBufferRows`."""

    observations: th.Tensor
    actions: th.Tensor
    old_values: th.Tensor
    old_log_prob: th.Tensor
    advantages: th.Tensor
    returns: th.Tensor
    action_masks: th.Tensor
    rows: th.Tensor


Minibatch = RolloutBufferRows | DictRolloutBufferRows | MaskableRolloutBufferRows
#: The buffer classes (exactly) whose get() fast_minibatches gives.
FAST_BUFFERS = (RolloutBuffer, DictRolloutBuffer, MaskableRolloutBuffer)


def flatten_in_place(buffer: RolloutBuffer) -> None:
    """
    What the first ``buffer.get()`` does to a full buffer before it draws minibatches: swap the env and step axes and
    flatten every array, in place (``generator_ready``), so that row ``i`` is step ``i // n_envs`` of env
    ``i % n_envs``. A no-op on a buffer already flattened.

    :param buffer: a full buffer of exactly one of :data:`FAST_BUFFERS` (sb3-contrib's masked buffer also flattens its
        action masks)
    """
    assert buffer.full, ""
    if buffer.generator_ready:
        return
    if isinstance(buffer, MaskableRolloutBuffer):
        buffer.action_masks = buffer.swap_and_flatten(buffer.action_masks)
    if isinstance(buffer, DictRolloutBuffer):
        for key, obs in buffer.observations.items():  # type: ignore[attr-defined]
            buffer.observations[key] = buffer.swap_and_flatten(obs)  # type: ignore[index]
    else:
        buffer.observations = buffer.swap_and_flatten(buffer.observations)
    for name in _FLAT_FIELDS:
        buffer.__dict__[name] = buffer.swap_and_flatten(buffer.__dict__[name])
    buffer.generator_ready = True


def fast_minibatches(buffer: RolloutBuffer, batch_size: int | None, shuffle: bool = True) -> Iterator[Minibatch]:
    """
    ``buffer.get(batch_size)`` for SB3's own ``RolloutBuffer`` and ``DictRolloutBuffer`` and sb3-contrib's
    ``MaskableRolloutBuffer`` (not subclasses, which may change ``get``/``_get_samples``): the same
    ``np.random.permutation`` draw at the same time (the first ``next()``), the same in-place flattening of the buffer,
    the same slices, and tensors of the same dtypes, shapes and values. Only the conversions differ: the buffer's
    arrays are wrapped as tensors (no copy) and each minibatch is gathered with ``index_select`` instead of NumPy fancy
    indexing followed by ``th.tensor``. Each minibatch also carries its ``rows`` (:class:`RolloutBufferRows`).

    :param buffer: a full buffer of exactly one of :data:`FAST_BUFFERS`
    :param batch_size: minibatch size; ``None``: the whole buffer as one minibatch
    :param shuffle: ``False``: the rows in buffer order, without drawing a permutation (NumPy's random state is not
        touched), e.g. to compute a value for every sample once
    :return: a generator of ``RolloutBufferRows`` (``DictRolloutBufferRows`` for a ``DictRolloutBuffer``,
        ``MaskableRolloutBufferRows`` for a ``MaskableRolloutBuffer``)
    """
    assert buffer.full, ""
    n_samples = buffer.buffer_size * buffer.n_envs
    indices = np.random.permutation(n_samples) if shuffle else np.arange(n_samples)
    is_dict = isinstance(buffer, DictRolloutBuffer)
    flatten_in_place(buffer)  # what get() does, in place on the buffer (its later state is SB3's)

    device = buffer.device

    def wrap(array: np.ndarray) -> th.Tensor:
        return th.as_tensor(array, device=device)  # shares memory on the CPU: nothing is copied here

    if is_dict:
        observations: Any = {key: wrap(obs) for key, obs in buffer.observations.items()}  # type: ignore[attr-defined]
    else:
        observations = wrap(buffer.observations)  # type: ignore[arg-type]
    # _get_samples: actions cast to float32 (a no-op for a float32 buffer), the other fields flattened per minibatch
    actions = wrap(buffer.actions.astype(np.float32, copy=False))
    values, log_probs, advantages, returns = (wrap(buffer.__dict__[name]).reshape(-1) for name in _FLAT_FIELDS[1:])
    masks = wrap(buffer.action_masks) if isinstance(buffer, MaskableRolloutBuffer) else None
    if batch_size is None:
        batch_size = n_samples
    all_indices = th.from_numpy(indices).to(device)
    for start in range(0, n_samples, batch_size):
        batch = all_indices[start : start + batch_size]
        samples: Minibatch
        if is_dict:
            batch_observations: Any = {key: obs.index_select(0, batch) for key, obs in observations.items()}
            samples = DictRolloutBufferRows(
                batch_observations,
                actions.index_select(0, batch),
                values.index_select(0, batch),
                log_probs.index_select(0, batch),
                advantages.index_select(0, batch),
                returns.index_select(0, batch),
                batch,
            )
        else:
            fields = (
                observations.index_select(0, batch),
                actions.index_select(0, batch),
                values.index_select(0, batch),
                log_probs.index_select(0, batch),
                advantages.index_select(0, batch),
                returns.index_select(0, batch),
            )
            if masks is None:
                samples = RolloutBufferRows(*fields, batch)
            else:
                samples = MaskableRolloutBufferRows(*fields, masks.index_select(0, batch), batch)
        yield samples


def fast_minibatches_unsupported_reason(buffer: Any) -> str | None:
    """Why :func:`fast_minibatches` cannot give ``buffer.get()``'s minibatches (:data:`FAST_BUFFERS` only), or ``None``."""
    if type(buffer) in FAST_BUFFERS:
        return None
    return f"rollout buffer class {type(buffer).__name__} (its own get())"


# ----------------------------------------------------------------------------------------------------------------------
# Gradient clipping and Adam
# ----------------------------------------------------------------------------------------------------------------------

#: Adam settings under which Adam's step is the arithmetic that FlatAdam runs (torch's defaults, and SB3's but eps).
_PLAIN_ADAM = {"amsgrad": False, "maximize": False, "weight_decay": 0.0, "capturable": False, "differentiable": False}


def _optimizer_hooks(optimizer: th.optim.Optimizer) -> int:
    """Number of step hooks that ``optimizer.step()`` would run (-1 if this torch version keeps them elsewhere)."""
    # torch keeps the step hooks in private dicts (torch 2.3-2.13); there is no public way to ask whether any is set.
    try:
        return (
            len(optimizer._optimizer_step_pre_hooks)
            + len(optimizer._optimizer_step_post_hooks)
            + len(torch_optimizer._global_optimizer_pre_hooks)
            + len(torch_optimizer._global_optimizer_post_hooks)
        )
    except AttributeError:  # pragma: no cover - other torch versions
        return -1


def flat_adam_unsupported_reason(optimizer: th.optim.Optimizer, parameters: Sequence[th.Tensor]) -> str | None:
    """
    Why :class:`FlatAdam` cannot stand in for ``clip_grad_norm_(parameters)`` and ``optimizer.step()``, or ``None``.

    :param optimizer: the policy's optimizer
    :param parameters: the policy's parameters, in ``policy.parameters()`` order
    :return: a short reason, or ``None``
    """
    if type(optimizer) is not th.optim.Adam:
        return f"optimizer {type(optimizer).__name__} (only torch.optim.Adam)"
    if len(optimizer.param_groups) != 1:
        return "several parameter groups"
    group = optimizer.param_groups[0]
    for key, value in _PLAIN_ADAM.items():
        if group.get(key, value) != value:
            return f"Adam with {key}={group.get(key)!r}"
    if group.get("fused"):
        return "fused Adam"
    hyperparameters = [group.get("lr"), group.get("eps"), *group["betas"]]
    if any(isinstance(value, th.Tensor) for value in hyperparameters):
        return "tensor hyperparameters"
    if _optimizer_hooks(optimizer) != 0:
        return "optimizer hooks"
    if getattr(optimizer, "grad_scale", None) is not None or getattr(optimizer, "found_inf", None) is not None:
        return "grad scaling"
    group_params = group["params"]
    if len(group_params) != len(parameters) or {id(p) for p in group_params} != {id(p) for p in parameters}:
        return "the optimizer does not hold exactly the policy's parameters"
    if len({id(p) for p in parameters}) != len(parameters):
        return "shared parameters"
    for p in parameters:
        if not (
            p.requires_grad and p.dtype == th.float32 and p.device.type == "cpu" and p.is_contiguous() and not p.is_sparse
        ):
            return "parameters other than dense, contiguous, trainable float32 CPU tensors"
    return None


class FlatAdam:
    """
    ``optimizer.zero_grad()``, ``clip_grad_norm_(parameters, max_norm)`` and ``optimizer.step()`` of a plain
    ``torch.optim.Adam`` (see :func:`flat_adam_unsupported_reason`), with Adam's arithmetic run on flat buffers.

    The gradients (``p.grad``), Adam's moments (``state["exp_avg"]``, ``state["exp_avg_sq"]``) and step counters
    (``state["step"]``) are views into one flat tensor each, so each element-wise operation of Adam is one kernel. The
    operations, their order and their scalars are those of torch's ``_multi_tensor_adam`` (which equals its
    single-tensor Adam, SB3's default on the CPU); the gradient norm is ``clip_grad_norm_``'s, computed on the same
    per-parameter gradients in ``policy.parameters()`` order. The optimizer state stays an ordinary Adam state: the
    optimizer's own ``step()``, ``state_dict()`` and ``load_state_dict()`` work on it.

    Gradients accumulate into the zeroed flat buffer (``0 + g``) instead of being fresh tensors: the same values,
    except that an exactly-zero gradient element is ``+0.0`` where SB3 may have ``-0.0``, which changes no later value.

    :param optimizer: the policy's Adam
    :param parameters: the policy's parameters, in ``policy.parameters()`` order
    """

    def __init__(self, optimizer: th.optim.Adam, parameters: Sequence[th.Tensor]):
        self.optimizer = optimizer
        self.group = optimizer.param_groups[0]
        self.params: list[th.Tensor] = list(self.group["params"])  # the flat layout follows the optimizer's order
        self.norm_order: list[int] = [[id(p) for p in self.params].index(id(p)) for p in parameters]
        sizes = [p.numel() for p in self.params]
        total = sum(sizes)
        self.flat_grad = th.zeros(total)
        self.exp_avg = th.zeros(total)
        self.exp_avg_sq = th.zeros(total)
        self.denom = th.empty(total)
        self.steps = th.zeros(len(self.params))
        self.grads = self._views(self.flat_grad, sizes)
        self.exp_avgs = self._views(self.exp_avg, sizes)
        self.exp_avg_sqs = self._views(self.exp_avg_sq, sizes)
        self.denoms = self._views(self.denom, sizes)
        self.norm_grads = [self.grads[i] for i in self.norm_order]
        self._initialize = False  # the optimizer has no state yet: create it at the first step

    def _views(self, flat: th.Tensor, sizes: list[int]) -> list[th.Tensor]:
        return [view.view_as(p) for view, p in zip(th.split(flat, sizes), self.params, strict=True)]

    def _owns_state(self) -> bool:
        """Whether the optimizer's state is still this object's views (a ``load_state_dict`` replaces it)."""
        state = self.optimizer.state
        for p, exp_avg in zip(self.params, self.exp_avgs, strict=True):
            entry = state.get(p)
            if entry is None or entry.get("exp_avg") is not exp_avg:
                return False
        return True

    def prepare(self) -> bool:
        """
        Before an update: move the optimizer's state (if any) into the flat buffers, and point every ``p.grad`` into
        the flat gradient buffer.

        :return: whether the flat step can run (``False``: the state is not one this class can hold, e.g. parameters
            with different step counts; the caller then uses the optimizer's own step)
        """
        # load_state_dict() replaces the group dicts (the learning rate is then set on the new one)
        self.group = self.optimizer.param_groups[0]
        if [id(p) for p in self.group["params"]] != [id(p) for p in self.params]:
            return False
        if not self._owns_state() and not self._adopt_state():
            return False
        for p, grad in zip(self.params, self.grads, strict=True):
            if p.grad is not grad:
                p.grad = grad
        return True

    def _adopt_state(self) -> bool:
        state = self.optimizer.state
        entries = [state.get(p) for p in self.params]
        if all(not entry for entry in entries):
            # No step yet: Adam's lazy initialisation (_init_group) happens at the first flat step, so that an update
            # that falls back to the optimizer's own step leaves the state as that step makes it.
            self._initialize = True
            return True
        expected = {"step", "exp_avg", "exp_avg_sq"}
        if any(not entry or set(entry) != expected for entry in entries):
            return False
        steps = [entry["step"] for entry in entries]  # type: ignore[index]
        if any(not isinstance(s, th.Tensor) or s.dtype != th.float32 or s.device.type != "cpu" for s in steps):
            return False
        if len({float(s) for s in steps}) != 1:  # one shared counter: every parameter has had every step
            return False
        with th.no_grad():
            for entry, exp_avg, exp_avg_sq in zip(entries, self.exp_avgs, self.exp_avg_sqs, strict=True):
                exp_avg.copy_(entry["exp_avg"])  # type: ignore[index]
                exp_avg_sq.copy_(entry["exp_avg_sq"])  # type: ignore[index]
            self.steps.fill_(float(steps[0]))
        self._install_state()
        return True

    def _install_state(self) -> None:
        """Make the optimizer's state this object's views (same keys, in the order Adam creates them)."""
        state = self.optimizer.state
        for index, (p, exp_avg, exp_avg_sq) in enumerate(zip(self.params, self.exp_avgs, self.exp_avg_sqs, strict=True)):
            state[p] = {"step": self.steps[index], "exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}

    def zero_grad(self) -> None:
        """``optimizer.zero_grad()``: the gradients become zeros (not ``None``), accumulated into in place."""
        self.flat_grad.zero_()

    @th.no_grad()
    def clip_and_step(self, max_norm: float) -> th.Tensor:
        """
        ``clip_grad_norm_(parameters, max_norm)`` then ``optimizer.step()``.

        :param max_norm: the maximum gradient norm
        :return: the total gradient norm before clipping, as ``clip_grad_norm_`` returns it
        """
        # clip_grad_norm_ (foreach, as torch chooses on the CPU): per-tensor norms, their norm, the clamped coefficient
        # th._foreach_norm is the private op clip_grad_norm_ itself calls: the same per-tensor norms, bit for bit.
        total_norm = th.linalg.vector_norm(th.stack(th._foreach_norm(self.norm_grads, 2.0)), 2.0)
        clip_coef = float(max_norm) / (total_norm + 1e-6)
        self.flat_grad.mul_(th.clamp(clip_coef, max=1.0))

        # _multi_tensor_adam without weight decay, amsgrad, maximize or capturable: the same operations and scalars
        if self._initialize:  # _init_group's lazy initialisation: step 0, zero moments
            self._initialize = False
            self.exp_avg.zero_()
            self.exp_avg_sq.zero_()
            self.steps.zero_()
            self._install_state()
        group = self.group
        beta1, beta2 = group["betas"]
        lr, eps = group["lr"], group["eps"]
        self.steps.add_(1.0)
        step = self.steps[0].item()  # every counter is the same (see _adopt_state)
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = (lr / bias_correction1) * -1
        bias_correction2_sqrt = bias_correction2**0.5
        self.exp_avg.lerp_(self.flat_grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2)
        self.exp_avg_sq.addcmul_(self.flat_grad, self.flat_grad, value=1 - beta2)
        th.sqrt(self.exp_avg_sq, out=self.denom)
        self.denom.div_(bias_correction2_sqrt)
        self.denom.add_(eps)
        # The parameters keep their own storage: one addcdiv per parameter tensor, with the private op that torch's
        # foreach Adam runs (no public multi-tensor addcdiv).
        th._foreach_addcdiv_(self.params, self.exp_avgs, self.denoms, step_size)
        return total_norm


def graph_reaches_all(loss: th.Tensor, parameters: Sequence[th.Tensor]) -> bool:
    """
    Whether every parameter gets a gradient from ``loss.backward()``. SB3 skips a parameter whose gradient stays
    ``None`` (no Adam step, no clipping); :class:`FlatAdam`'s zeroed gradients would not, so it runs only when this holds.

    :param loss: the minibatch loss, before ``backward()``
    :param parameters: the parameters
    :return: whether the autograd graph of ``loss`` accumulates into every parameter
    """
    wanted = {id(p) for p in parameters}
    seen: set[int] = set()
    stack = [loss.grad_fn]
    visited: set[int] = set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        variable = getattr(node, "variable", None)  # AccumulateGrad nodes hold their leaf
        if variable is not None:
            seen.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return wanted <= seen
