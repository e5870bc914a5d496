"""
Diagnostics of one policy update, kept on the device until the update ends.

SB3 ``PPO.train()`` calls ``.item()`` several times per minibatch; on a GPU each is a host sync. Here every minibatch
adds one stacked tensor and the whole update is read back once, which also tells whether (and where first) a loss
term went non-finite.
"""

from typing import Any, NamedTuple

import numpy as np
import torch as th
from stable_baselines3.common.utils import explained_variance


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss term; the parameters from before the update were restored."""


class UpdateStats:
    """Per-minibatch scalars of one update, in the order the minibatches were processed."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._epochs: list[int] = []
        self._rows: list[th.Tensor] = []
        self.gradient_norms: list[th.Tensor] = []

    def add(self, epoch: int, values: dict[str, th.Tensor]) -> None:
        """Record one minibatch's named 0-d tensors (same names every time) without leaving the device."""
        if not self.names:
            self.names = list(values)
        self._epochs.append(epoch)
        with th.no_grad():  # a detached copy of the values (one stack instead of a detach per value)
            self._rows.append(th.stack(list(values.values())))

    def __len__(self) -> int:
        return len(self._rows)

    def read(self, *extra: th.Tensor) -> tuple[np.ndarray, list[float]]:
        """
        Copy everything to the host at once: the one host sync of the update.

        :param extra: other 0-d tensors to read in the same transfer
        :return: the (n_minibatches, n_names) table of recorded values, and the values of ``extra``
        """
        table = th.stack(self._rows) if self._rows else th.zeros((0, len(self.names)))
        flat = th.cat([table.flatten(), *(value.detach().reshape(1) for value in extra)]).cpu().numpy()
        n_table = table.numel()
        return flat[:n_table].reshape(table.shape), flat[n_table:].tolist()

    def means(self, table: np.ndarray, last_epoch_only: tuple[str, ...] = ()) -> dict[str, float]:
        """
        Mean of each scalar over all minibatches, or over the last epoch's for the names in ``last_epoch_only``
        (SB3 logs ``train/approx_kl`` that way).
        """
        epochs = np.asarray(self._epochs)
        last_epoch = epochs == epochs[-1]
        return {
            name: float(table[last_epoch, column].mean() if name in last_epoch_only else table[:, column].mean())
            for column, name in enumerate(self.names)
        }

    def first_nonfinite(self, table: np.ndarray) -> tuple[int, int, list[str]] | None:
        """
        Locate the first minibatch with a non-finite value.

        :return: (epoch, minibatch index within the update, names of the non-finite scalars), or ``None``
        """
        bad_rows = np.flatnonzero(~np.isfinite(table).all(axis=1))
        if len(bad_rows) == 0:
            return None
        row = int(bad_rows[0])
        names = [name for name, value in zip(self.names, table[row], strict=True) if not np.isfinite(value)]
        return self._epochs[row], row, names


class UpdateSummary(NamedTuple):
    """The per-update values logged beside the minibatch means (read from the device with them)."""

    clip_range: float
    clip_range_vf: float | None
    mean_kl: float | None
    kl_coef: float
    gradient_norm: float
    kl_is_estimate: bool
    ent_coef: float
    vf_coef: float


def record_update(model: Any, stats: UpdateStats, table: np.ndarray, summary: UpdateSummary) -> None:
    """
    Log one update: SB3 PPO's ``train/*`` keys with the same meaning, then the package's (``train/kl``,
    ``train/kl_coef``, ``train/ent_coef``, ``train/vf_coef``, ``train/grad_norm``, the objective's own logs).

    :param model: the algorithm (its logger, rollout buffer, policy, update count and objective)
    :param stats: the update's minibatch terms
    :param table: ``stats``' values, read to the host
    :param summary: the update's other values
    """
    logger = model.logger
    means = stats.means(table, last_epoch_only=("approx_kl",))
    # SB3 logs the last minibatch's total loss, not the mean.
    last_loss = float(table[-1, stats.names.index("loss")])
    for name, value in means.items():
        logger.record(f"train/{name}", last_loss if name == "loss" else value)
    buffer = model.rollout_buffer
    logger.record("train/explained_variance", explained_variance(buffer.values.flatten(), buffer.returns.flatten()))
    if hasattr(model.policy, "log_std"):
        logger.record("train/std", th.exp(model.policy.log_std).mean().item())
    # BaseAlgorithm's protected counter: SB3 PPO logs the same key from it, and it has no public accessor.
    logger.record("train/n_updates", model._n_updates, exclude="tensorboard")
    logger.record("train/clip_range", summary.clip_range)
    if summary.clip_range_vf is not None:
        logger.record("train/clip_range_vf", summary.clip_range_vf)
    if summary.mean_kl is not None:
        logger.record("train/kl", summary.mean_kl)
    logger.record("train/kl_coef", summary.kl_coef)
    logger.record("train/ent_coef", summary.ent_coef)
    logger.record("train/vf_coef", summary.vf_coef)
    logger.record("train/grad_norm", summary.gradient_norm)
    for name, value in model.objective.logs().items():
        logger.record(f"train/{name}", value)
    if summary.kl_is_estimate:
        logger.record("train/kl_is_estimate", 1.0)
