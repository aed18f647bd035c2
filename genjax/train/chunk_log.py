"""The host side of training: each chunk's metrics fetched, checked, logged and shown, one chunk behind.

The device runs chunk k + 1 while the host reads chunk k's metrics: `dispatched` keeps the newest chunk
pending and records the one before, so the host waits for a chunk only when the next is already queued.
`flush` records the pending chunk: before a checkpoint or an evaluation (they need its state finished),
before a compile (whose time must not count as training time), and at the end.
"""

import logging
import time

import jax
import numpy as np
from tqdm import tqdm

from genjax.checkpoint import Checkpoints
from genjax.errors import UserError
from genjax.train.parallel import is_primary

log = logging.getLogger("genjax")


class TrainingDiverged(UserError):
    """A training metric became NaN or infinite."""


def diverged(what: str, checkpoints: Checkpoints) -> TrainingDiverged:
    kept = checkpoints.latest_step()
    kept_text = f"the last good checkpoint (step {kept}) is kept" if kept is not None else "no checkpoint was written yet"
    return TrainingDiverged(
        f"training diverged: {what}; {kept_text} in {checkpoints.directory}; lower --config.learning_rate or check the data"
    )


def first_non_finite(metrics: dict, first_step: int, kept: np.ndarray):
    """(step, name, value) of the first non-finite value among the kept steps of a chunk's metrics, or None."""
    for offset in np.flatnonzero(kept):
        for name, values in metrics.items():
            if not np.isfinite(values[offset]):
                return first_step + int(offset) + 1, name, float(values[offset])
    return None


def projected_seconds(recorded: float, step_seconds: float, pending_steps: int, next_steps: int) -> float:
    """The training seconds when the pending steps end plus half of a next chunk of `next_steps` steps, at
    `step_seconds` a step. A time budget that stops when this reaches it ends a run within half a chunk of the
    budget either side; stopping when the recorded chunks alone reach it ended runs up to two chunks late (the
    pending chunk and the one that crossed): a family with slow steps got more training time than a fast one
    under the same budget. The engine's loop and the study's vectorized groups both stop by it."""
    return recorded + step_seconds * (pending_steps + next_steps / 2)


class ChunkLog:
    """Timing, metric logging and the progress bar of one `fit` call."""

    def __init__(self, family, num_steps, start_step, checkpoints, writer, batch_size, step_seconds: float = 0.0):
        self.family, self.checkpoints, self.writer, self.batch_size = family, checkpoints, writer, batch_size
        self.train_seconds = 0.0
        # seconds per step of the last recorded chunk (at first an earlier fit's): the rate projected_seconds assumes
        self.step_seconds = step_seconds
        self.trained_examples = 0
        self.last_ready = None
        self.last_train_metrics = {}
        self.pending = None
        self.progress = tqdm(
            total=num_steps,
            initial=start_step,
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=True if not is_primary() else None,
        )

    def dispatched(self, first_step: int, length: int, metrics, dispatched_at: float) -> None:
        """A chunk was dispatched: record the one before it, keep this one pending."""
        self.flush()
        self.pending = (first_step, length, metrics, dispatched_at)

    def projected_seconds(self, next_steps: int) -> float:
        """`projected_seconds` of this fit: its recorded chunks, the pending one and half a next one, at the last
        recorded chunk's rate."""
        pending = self.pending[1] if self.pending is not None else 0
        return projected_seconds(self.train_seconds, self.step_seconds, pending, next_steps)

    def flush(self) -> None:
        """Record the pending chunk, if any (waits for it)."""
        if self.pending is not None:
            pending, self.pending = self.pending, None
            self._record(*pending)

    def _record(self, first_step: int, length: int, metrics, dispatched_at: float) -> None:
        """Fetch a chunk's metrics, check them, log their means."""
        metrics = jax.device_get(metrics)
        ready = time.perf_counter()
        seconds = ready - max(dispatched_at, self.last_ready or dispatched_at)
        self.last_ready = ready
        skipped = metrics.pop("skipped", np.zeros(length))
        kept = skipped == 0
        bad = first_non_finite(metrics, first_step, kept)
        if bad:
            step, name, value = bad
            raise diverged(f"'{name}' became {value} at step {step}", self.checkpoints)
        self.train_seconds += seconds
        self.step_seconds = seconds / length
        self.trained_examples += length * self.batch_size
        means = {name: float(np.mean(values[kept])) if kept.any() else float("nan") for name, values in metrics.items()}
        if skipped.any():
            means["skipped_steps"] = int(skipped.sum())
            log.warning("skipped %d non-finite steps among steps %d-%d", int(skipped.sum()), first_step + 1, first_step + length)
        means["examples_per_s"] = length * self.batch_size / max(seconds, 1e-9)
        self.last_train_metrics = means
        self.writer.write(first_step + length, "train", means)
        shown = {name: f"{means[name]:.4g}" for name in self.family.progress_metrics if name in means}
        self.progress.set_postfix(**shown, img_s=f"{means['examples_per_s']:.0f}", refresh=False)
        self.progress.update(first_step + length - self.progress.n)

    def close(self) -> None:
        self.progress.close()
