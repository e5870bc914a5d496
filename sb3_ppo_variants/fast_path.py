"""
The fast path: which of the package's fast parts ran in the last rollout and update, and why the others did not.

Each part is an exact stand-in for a piece of SB3's (or sb3-contrib's) code: same numbers, less overhead
(``docs/performance.md``). Whether a part applies is decided once per rollout and once per update. A field is ``None``
where the fast part ran, and otherwise says why the dependency's own code ran instead.
"""

from dataclasses import asdict, dataclass

#: A field's value before the first rollout or update.
NOT_YET = "not decided yet (no rollout or update so far)"


@dataclass(frozen=True)
class FastPath:
    """
    The plan of the last rollout and update (``model.fast_path``; printed at ``verbose=2`` when it changes).

    :param rollout_loop: the rollout loop without per-step overhead (``rollout.py``), for SB3's ``collect_rollouts``
    :param minibatches: ``RolloutBuffer.get()``'s minibatches gathered from tensors that share the buffer's memory
    :param policy_evaluation: ``evaluate_actions``/``get_distribution`` without module calls
        (:class:`~sb3_ppo_variants.fast_policy.FastActorCritic`)
    :param optimizer_step: ``clip_grad_norm_`` and Adam's step on flat buffers (:class:`~sb3_ppo_variants.update.FlatAdam`)
    :param entropy_graph: the entropy left out of the autograd graph when ``ent_coef = 0`` (it adds exactly 0)
    :param old_policy: π_old as its distribution at every sample, computed once per update, instead of a frozen copy of
        the policy evaluated on every minibatch (:mod:`sb3_ppo_variants.old_policy`)
    :param sequence_lstm: the recurrent update's LSTM passes as one call per padded sequence batch instead of one per
        time step (:mod:`sb3_ppo_variants.recurrent_fast`); ``None`` too for a policy without an LSTM
    """

    rollout_loop: str | None = NOT_YET
    minibatches: str | None = NOT_YET
    policy_evaluation: str | None = NOT_YET
    optimizer_step: str | None = NOT_YET
    entropy_graph: str | None = NOT_YET
    old_policy: str | None = NOT_YET
    sequence_lstm: str | None = NOT_YET

    def fallbacks(self) -> dict[str, str]:
        """The parts that did not run fast, with their reasons."""
        return {part: reason for part, reason in asdict(self).items() if reason is not None}

    def __str__(self) -> str:
        width = max(len(part) for part in asdict(self))
        return "\n".join(
            f"{part:<{width}}  {'fast' if reason is None else 'fallback: ' + reason}" for part, reason in asdict(self).items()
        )
