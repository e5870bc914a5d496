"""
π_old: the policy that collected a rollout, frozen for the whole update.

The KL penalty needs the *full* old action distribution at every state of a minibatch (pitfall 5 of the paper notes:
taking it from the parameters being optimised makes the KL identically 0). SB3's buffers store only the old
log-probability of the taken action, so π_old is kept as a frozen copy of the policy, refreshed at the start of each
update, and evaluated on each minibatch with the minibatch's own inputs. Whatever the minibatch carries for the policy
(the action masks of MaskablePPO, the stored LSTM states and episode starts of RecurrentPPO) therefore reaches π_old
exactly as it reaches π_θ: no buffer internals, no index bookkeeping, and the same code for every variant.

The copy is made once (``copy.deepcopy``, which draws no random numbers) and refreshed in place, so an update costs one
parameter copy plus one no-grad actor pass per minibatch.

Where minibatches know their rows of the rollout (SB3's own buffers, through ``update.fast_minibatches``) and the
distribution has a closed-form KL, π_old is instead :class:`OldDistributions`: its distribution's parameters for every
sample, computed with one actor pass over the rollout before the first gradient step, which is ``n_epochs`` times
fewer actor passes and no copy of the policy.

Both answer the one question the update asks, :meth:`kl` ``(rollout_data, new_distribution, new_log_prob)``: the KL
per sample of a minibatch, and say with ``kl_is_estimate`` whether it is the exact KL.
"""

import copy
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch as th
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BasePolicy

from sb3_ppo_variants.kl import ClosedFormKL, DistributionParams, closed_form_kl, kl_between, sampled_kl, torch_distribution_of

#: The action distribution of a policy on one minibatch, with the minibatch's inputs (masks, LSTM states).
DistributionOf = Callable[[BasePolicy, Any], Distribution]


class OldPolicy:
    """
    A frozen copy of a policy, in evaluation mode (as when it collected the rollout) and without gradients.

    :param policy: the policy to copy; call :meth:`capture` before each update to refresh the copy
    :param distribution_of: the algorithm's way of evaluating a policy's distribution on a minibatch
    """

    def __init__(self, policy: BasePolicy, distribution_of: DistributionOf) -> None:
        self.distribution_of = distribution_of
        #: whether :meth:`kl` fell back to the sample estimate (no closed form for the distribution)
        self.kl_is_estimate = False
        # The copy never trains: its optimizer (and the optimizer's state) is not copied, gradients are not tracked.
        # The action distribution object, which SB3 refills in place at every call, is copied shallowly: its last
        # contents (e.g. gSDE's noise, non-leaf tensors that cannot be deep-copied) are never read before a refill.
        memo: dict[int, object] = {id(getattr(policy, "optimizer", None)): None}
        if getattr(policy, "action_dist", None) is not None:
            memo[id(policy.action_dist)] = copy.copy(policy.action_dist)
        self.policy = copy.deepcopy(policy, memo=memo)
        self.policy.requires_grad_(False)
        self.policy.set_training_mode(False)

    def capture(self, policy: BasePolicy) -> "OldPolicy":
        """Make the copy equal to ``policy`` (in place): π_old for the update about to start."""
        with th.no_grad():
            self.policy.load_state_dict(policy.state_dict())
        return self

    def kl(self, rollout_data: Any, new_distribution: Distribution, new_log_prob: th.Tensor) -> th.Tensor:
        """
        KL[π_old(·|s) ‖ π_θ(·|s)] per sample of a minibatch: exact, from the copy's distribution on the minibatch's
        inputs, or the sample estimate (r - 1) - log r on the taken actions for a distribution without a closed form
        (with a warning, once, and ``kl_is_estimate = True``).

        :param rollout_data: the minibatch
        :param new_distribution: π_θ on the minibatch (populated)
        :param new_log_prob: log π_θ(a|s) of the minibatch's actions
        :return: KL per sample, shape (batch,)
        """
        with th.no_grad():
            old_distribution = self.distribution_of(self.policy, rollout_data)
        kl = kl_between(old_distribution, new_distribution)
        if kl is not None:
            return kl
        if not self.kl_is_estimate:
            self.kl_is_estimate = True
            warnings.warn(
                f"No closed-form KL for {type(new_distribution).__name__}: the KL penalty and train/kl use the sample "
                "estimate (r - 1) - log r on the rollout's actions instead of the exact KL.",
                stacklevel=2,
            )
        return sampled_kl(rollout_data.old_log_prob, new_log_prob)


class OldDistributions:
    """
    π_old as the parameters of its action distribution at every row of the (flattened) rollout, computed once per
    update in a few large batches, then gathered for each minibatch by its ``rows``.

    The frozen copy of :class:`OldPolicy` runs π_old's actor on every minibatch of every epoch (``n_epochs`` times
    per sample); this runs it once per sample. The parameters are those the copy would compute: SB3's layers compute
    each row independently of the other rows of the batch (``tests/test_parity_update.py`` checks that the KL and the
    whole training state are the same as with the copy), and the KL is the same :mod:`sb3_ppo_variants.kl` formula.

    :param closed_form: the closed-form KL of the distribution family
    :param parameters: the family's parameter tensors, one row per sample of the flattened rollout
    """

    #: always the exact KL: only closed-form families are held this way
    kl_is_estimate = False

    def __init__(self, closed_form: ClosedFormKL, parameters: DistributionParams) -> None:
        self.closed_form = closed_form
        self.parameters = parameters

    @classmethod
    def capture(cls, distributions: Iterable[Distribution | tuple[Distribution, th.Tensor]]) -> "OldDistributions | None":
        """
        Collect π_old's parameters from its distributions on chunks of the rollout.

        :param distributions: π_old's (populated) distributions on consecutive chunks, in row order; or pairs
            (distribution, rows): each row's row of the flattened rollout, -1 for a padded row (left out), every row
            of the rollout once over all chunks. Each is read before the next is made, since SB3 policies refill one
            distribution object in place
        :return: the parameters, or ``None`` if the family has no closed-form KL (the caller keeps the frozen copy)
        """
        closed_form: ClosedFormKL | None = None
        chunks: list[DistributionParams] = []
        row_chunks: list[th.Tensor] = []
        for piece in distributions:
            distribution, rows = piece if isinstance(piece, tuple) else (piece, None)
            closed_form = closed_form or closed_form_kl(distribution)
            if closed_form is None:
                return None
            parameters = closed_form.parameters(torch_distribution_of(distribution))
            if rows is not None:
                kept = rows >= 0
                parameters = tuple(parameter[kept] for parameter in parameters)
                row_chunks.append(rows[kept])
            chunks.append(parameters)
        if closed_form is None:
            return None
        joined = tuple(th.cat(parts) for parts in zip(*chunks, strict=True))
        if row_chunks:  # back to rollout order
            order = th.cat(row_chunks)
            assert len(order) == len(joined[0]), "every row of the rollout once"
            joined = tuple(th.empty_like(parameter).index_copy_(0, order, parameter) for parameter in joined)
        return cls(closed_form, joined)

    def kl(self, rollout_data: Any, new_distribution: Distribution, new_log_prob: th.Tensor | None = None) -> th.Tensor:
        """
        Exact KL[π_old(·|s) ‖ π_θ(·|s)] per sample of a minibatch.

        :param rollout_data: the minibatch, with its ``rows`` of the flattened rollout (:mod:`sb3_ppo_variants.update`)
        :param new_distribution: π_θ on the minibatch (populated)
        :param new_log_prob: unused (the KL is exact)
        :return: KL per sample, shape (batch,)
        """
        old = tuple(parameter.index_select(0, rollout_data.rows) for parameter in self.parameters)
        return self.closed_form.kl(old, self.closed_form.parameters(torch_distribution_of(new_distribution)))
