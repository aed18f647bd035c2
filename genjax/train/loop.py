"""The engine: `fit` trains any Family, compiled, sharded, chunked, checkpointed and logged.

Per-step randomness is `fold_in(train_key, step)` and the batch of step s is `batch_indices(seed, ..., s)`,
so a run resumed from a checkpoint draws the same numbers and sees the same data as an uninterrupted one.
Several steps run per host call (`lax.scan` over a chunk); chunk boundaries fall on multiples of
steps_per_call, eval_every and checkpoint_every, so checkpoints and evaluations always see a finished
chunk. Whole datasets live on the devices (uint8; each device holds the whole set or, with data shards,
its shard) and each step gathers its batch there, sharded over the mesh: the host only sends a few
kilobytes of indices per chunk. The host reads a chunk's metrics after dispatching the next chunk, so the
device never waits for logging.

In a multi-process run every process executes the same calls on its own devices; process 0 alone writes
the run directory's files (the others write theirs to a temporary directory), and all of them take part in
every checkpoint, which Orbax writes cooperatively.
"""

import contextlib
import dataclasses
import json
import logging
import os
import signal
import tempfile
import time

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from genjax.checkpoint import Checkpoints
from genjax.data import Dataset, batch_indices, to_model_batch
from genjax.errors import UserError
from genjax.train import artifacts
from genjax.train.family import Family, count_params
from genjax.train.parallel import (
    any_process,
    batch_sharded,
    gather_batch,
    global_array,
    is_primary,
    make_mesh,
    put_data_shards,
    replicated,
    wait_for_all_processes,
)
from genjax.train.rundir import WorkdirLock, ensure_writable, prepare_workdir
from genjax.train.signals import Interrupted, StopRequests
from genjax.train.writer import MetricWriter

log = logging.getLogger("genjax")


class TrainingDiverged(UserError):
    """A training metric became NaN or infinite."""


@dataclasses.dataclass(frozen=True)
class Keys:
    """The independent random streams of a run, all derived from config.seed."""

    init: jax.Array
    train: jax.Array
    eval: jax.Array
    sample: jax.Array
    figures: jax.Array

    @classmethod
    def from_seed(cls, seed: int) -> "Keys":
        return cls(*jax.random.split(jax.random.PRNGKey(seed), 5))


def chunk_schedule(start: int, end: int, every: tuple[int, ...]) -> list[tuple[int, int]]:
    """(first step, length) of each host call from `start` to `end`, cut at every multiple of `every`."""
    chunks, step = [], start
    while step < end:
        stop = min([end] + [(step // e + 1) * e for e in every])
        chunks.append((step, stop - step))
        step = stop
    return chunks


def has_convolution(jaxpr) -> bool:
    """Whether a jaxpr, or any jaxpr nested in it, contains a convolution."""
    return any(eqn.primitive.name == "conv_general_dilated" for eqn in jaxpr.eqns) or any(
        has_convolution(inner) for inner in jax.extend.core.subjaxprs(jaxpr)
    )


class TrainChunks:
    """Runs a chunk of train steps per host call; the state buffers are donated.

    A chunk is one device call, a lax.scan over its steps, compiled once per chunk length, except on CPU
    for steps with convolutions: there each step is its own jitted call, dispatched asynchronously and
    compiled once for every chunk length. In a loop body XLA:CPU leaves the gradient convolutions in
    non-canonical dimension orders and runs them on a slow generic kernel (jax-ml/jax#12868): a conv VAE
    trains about 15x slower in lax.scan than step by step. Steps without convolutions keep the scan, which
    saves the per-step dispatch (on CPU the host that dispatches shares the cores that compute). Both paths
    run the same `one_step`; compile time is measured apart from training time.

    With `skip_nonfinite`, a step whose metrics or new state contain NaN or infinity is discarded (the
    state stays as it was) and the metric `skipped` is 1 for it. Done here rather than per optimizer
    (optax.apply_if_finite) so that it covers every part of any family's state at once: both players of
    a GAN, batch statistics, parameter averages.
    """

    def __init__(self, family: Family, mesh, scan: bool | None = None, skip_nonfinite: bool = False):
        def one_step(state, data, step, batch_indices_, train_key):
            batch = to_model_batch(gather_batch(mesh, data, batch_indices_))
            new_state, metrics = family.train_step(state, batch, jax.random.fold_in(train_key, step))
            if not skip_nonfinite:
                return new_state, metrics
            finite = _all_finite((new_state, metrics))
            kept = jax.tree.map(lambda new, old: jnp.where(finite, new, old), new_state, state)
            return kept, {**metrics, "skipped": 1.0 - finite.astype(jnp.float32)}

        def train_chunk(state, data, indices, steps, train_key):
            return jax.lax.scan(lambda state, xs: one_step(state, data, *xs, train_key), state, (steps, indices))

        def chunk_step(state, data, indices, steps, offset, train_key):
            """Step `offset` of a chunk whose indices and step numbers are padded to a fixed number of rows."""
            row = jax.lax.dynamic_index_in_dim(indices, offset, keepdims=False)
            return one_step(state, data, steps[offset], row, train_key)

        whole, examples, rows = replicated(mesh), batch_sharded(mesh), batch_sharded(mesh, axis=1)
        self.mesh, self.one_step = mesh, one_step
        self.scan = scan  # None: decided at the first call
        self.chunk = jax.jit(
            train_chunk, in_shardings=(whole, examples, rows, whole, whole), out_shardings=(whole, whole), donate_argnums=0
        )
        self.step = jax.jit(
            chunk_step, in_shardings=(whole, examples, rows, whole, whole, whole), out_shardings=(whole, whole), donate_argnums=0
        )
        self.compiled = {}
        self.compile_seconds = 0.0
        self.offsets = []

    def needs_compile(self, length: int) -> bool:
        return self.scan is None or (length if self.scan else "step") not in self.compiled

    def _compiled(self, key, jitted, args):
        if key not in self.compiled:
            start = time.perf_counter()
            self.compiled[key] = jitted.lower(*args).compile()
            self.compile_seconds += time.perf_counter() - start
        return self.compiled[key]

    def _decide_scan(self, state, data, batch_size: int, train_key) -> bool:
        if self.scan is None:
            start = time.perf_counter()
            on_cpu = self.mesh.devices.flat[0].platform == "cpu"
            row = np.zeros(batch_size, np.int32)
            self.scan = not (on_cpu and has_convolution(jax.make_jaxpr(self.one_step)(state, data, 0, row, train_key).jaxpr))
            self.compile_seconds += time.perf_counter() - start
        return self.scan

    def __call__(self, state, data, indices, first_step: int, train_key, rows: int | None = None):
        """(new state, metrics stacked over steps) for steps first_step, ..., first_step + len(indices) - 1.

        Step by step, `indices` is padded to `rows` rows (default: its length), so that every chunk length
        up to `rows` shares one compiled step.
        """
        length = len(indices)
        if self._decide_scan(state, data, indices.shape[1], train_key):
            steps = np.arange(first_step, first_step + length, dtype=np.int32)
            args = (
                state,
                data,
                global_array(indices, batch_sharded(self.mesh, axis=1)),
                global_array(steps, replicated(self.mesh)),
                train_key,
            )
            return self._compiled(length, self.chunk, args)(*args)
        padded = np.concatenate([indices, np.repeat(indices[-1:], (rows or length) - length, axis=0)])
        steps = global_array(np.arange(first_step, first_step + len(padded), dtype=np.int32), replicated(self.mesh))
        padded = global_array(padded, batch_sharded(self.mesh, axis=1))
        while len(self.offsets) < length:  # device scalars 0, 1, ..., made once
            self.offsets.append(global_array(np.int32(len(self.offsets)), replicated(self.mesh)))
        step = self._compiled("step", self.step, (state, data, padded, steps, self.offsets[0], train_key))
        per_step = []
        for offset in self.offsets[:length]:
            state, metrics = step(state, data, padded, steps, offset, train_key)
            per_step.append(metrics)
        return state, jax.tree.map(lambda *values: jnp.stack(values), *per_step)


def make_evaluate(family: Family, mesh, num_examples: int, batch_size: int):
    """A jitted function: test-set means of eval_step's per-example outputs (padding masked out)."""
    num_batches = -(-num_examples // batch_size)
    positions = np.arange(num_batches * batch_size)
    indices = (positions % num_examples).reshape(num_batches, batch_size).astype(np.int32)
    weights = (positions < num_examples).reshape(num_batches, batch_size).astype(np.float32)

    def evaluate(state, data, key):
        def one_batch(totals, inputs):
            batch_number, batch_indices_, batch_weights = inputs
            batch = to_model_batch(gather_batch(mesh, data, batch_indices_))
            metrics = family.eval_step(state, batch, jax.random.fold_in(key, batch_number))
            weighted = jax.tree.map(lambda v: jnp.tensordot(batch_weights, v, axes=1), metrics)
            return jax.tree.map(jnp.add, totals, weighted), None

        example = {k: jax.ShapeDtypeStruct((batch_size,) + a.shape[1:], a.dtype) for k, a in data.items()}
        shapes = jax.eval_shape(lambda raw: family.eval_step(state, to_model_batch(raw), key), example)
        zeros = jax.tree.map(lambda s: jnp.zeros(s.shape[1:], jnp.float32), shapes)
        totals, _ = jax.lax.scan(one_batch, zeros, (jnp.arange(num_batches), indices, weights))
        means = jax.tree.map(lambda total: total / num_examples, totals)
        return family.summarize_eval(means) if family.summarize_eval else means

    return jax.jit(evaluate)


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


_all_finite_jit = jax.jit(_all_finite)


def all_finite(state) -> bool:
    """Whether every floating-point array in `state` is free of NaN and infinity (never checkpoint one that is not)."""
    return bool(_all_finite_jit(state))


def _first_non_finite(metrics: dict, first_step: int, kept: np.ndarray):
    """(step, name, value) of the first non-finite value among the kept steps of a chunk's metrics, or None."""
    for offset in np.flatnonzero(kept):
        for name, values in metrics.items():
            if not np.isfinite(values[offset]):
                return first_step + int(offset) + 1, name, float(values[offset])
    return None


def _diverged(what: str, checkpoints: Checkpoints) -> TrainingDiverged:
    kept = checkpoints.latest_step()
    kept_text = f"the last good checkpoint (step {kept}) is kept" if kept is not None else "no checkpoint was written yet"
    return TrainingDiverged(
        f"training diverged: {what}; {kept_text} in {checkpoints.directory}; lower --config.learning_rate or check the data"
    )


class _Run:
    """The host-side bookkeeping of one `fit` call: timing, metric logging, the progress bar."""

    def __init__(self, family, num_steps, start_step, checkpoints, writer, batch_size):
        self.family, self.checkpoints, self.writer, self.batch_size = family, checkpoints, writer, batch_size
        self.train_seconds = 0.0
        self.trained_examples = 0
        self.last_ready = None
        self.last_train_metrics = {}
        self.progress = tqdm(
            total=num_steps,
            initial=start_step,
            unit="step",
            dynamic_ncols=True,
            mininterval=1.0,
            disable=True if not is_primary() else None,
        )

    def record_chunk(self, first_step: int, length: int, metrics, dispatched_at: float) -> None:
        """Fetch a chunk's metrics (waits for it), check them, log their means."""
        metrics = jax.device_get(metrics)
        ready = time.perf_counter()
        seconds = ready - max(dispatched_at, self.last_ready or dispatched_at)
        self.last_ready = ready
        skipped = metrics.pop("skipped", np.zeros(length))
        kept = skipped == 0
        bad = _first_non_finite(metrics, first_step, kept)
        if bad:
            step, name, value = bad
            raise _diverged(f"'{name}' became {value} at step {step}", self.checkpoints)
        self.train_seconds += seconds
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


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The trained state (on the devices) and the summary written to summary.json."""

    state: object
    summary: dict


def fit(family: Family, config, train: Dataset, test: Dataset, workdir: str, experiment: str) -> FitResult:
    """Train `family` on `train`, evaluating on `test`, writing the run directory `workdir`.

    Resumes from the latest checkpoint in workdir unless config.fresh. Raises UserError on bad input
    (including a workdir another run holds), TrainingDiverged on NaN/Inf metrics and Interrupted after
    checkpointing on SIGINT/SIGTERM.
    """
    ensure_writable(workdir)
    with WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return _fit_locked(family, config, train, test, workdir, experiment)


def _check_datasets(train: Dataset, test: Dataset) -> None:
    if train.example_shape != test.example_shape or train.data_key != test.data_key:
        raise ValueError(
            f"train and test examples differ: {train.data_key}{list(train.example_shape)} vs "
            f"{test.data_key}{list(test.example_shape)}; load both splits of the same dataset"
        )


def _fit_locked(family: Family, config, train: Dataset, test: Dataset, workdir: str, experiment: str) -> FitResult:
    start_time = time.perf_counter()
    _check_datasets(train, test)
    if is_primary():
        prepare_workdir(workdir, config, fresh=config.fresh)
    wait_for_all_processes("genjax: run directory ready")
    with tempfile.TemporaryDirectory(prefix="genjax-process-files-") as scratch:
        return _fit(family, config, train, test, workdir, experiment, workdir if is_primary() else scratch, start_time)


def _fit(family, config, train, test, workdir, experiment, files_dir, start_time) -> FitResult:
    """`fit` with the directory for metrics, images and summary apart: the run directory on process 0."""
    mesh = make_mesh(config.num_devices)
    num_devices = mesh.devices.size
    num_shards = config.data_shards or jax.process_count()
    batch_size = config.batch_size
    if batch_size % num_devices:
        raise UserError(f"batch_size {batch_size} is not divisible by the {num_devices} devices; use a multiple of {num_devices}")
    if num_devices % num_shards:
        raise UserError(f"data_shards={num_shards} does not divide the {num_devices} devices; use a divisor of {num_devices}")
    if batch_size > train.num_examples // num_shards * num_shards:
        raise UserError(
            f"batch_size {batch_size} is larger than the {train.num_examples} training examples of {train.name}"
            + (f" (in {num_shards} data shards)" if num_shards > 1 else "")
        )
    keys = Keys.from_seed(config.seed)
    example = to_model_batch(train.take(np.arange(batch_size)))
    state = jax.jit(family.init, out_shardings=replicated(mesh))(keys.init, example)
    meta = {"experiment": experiment, "model": config.model, "config": config.to_dict()}

    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints)
    start_step, restored = checkpoints.restore_latest(state, meta)
    if start_step:
        state = restored
        log.info("resuming from checkpoint step %d in %s", start_step, checkpoints.directory)
    # training seconds of earlier fit calls on this workdir: a time budget covers them all
    prior_seconds = checkpoints.read_meta(start_step).get("train_seconds", 0.0) if start_step else 0.0
    out_of_time = bool(config.time_budget) and prior_seconds >= config.time_budget
    if start_step < config.num_steps and not out_of_time and is_primary() and os.path.exists(os.path.join(workdir, "summary.json")):
        os.remove(os.path.join(workdir, "summary.json"))  # the run is unfinished again until it ends
    writer = MetricWriter(files_dir, resume_step=start_step)
    run = _Run(family, config.num_steps, start_step, checkpoints, writer, batch_size)
    train_data = put_data_shards(mesh, train.arrays, num_shards)
    test_data = put_data_shards(mesh, test.arrays, 1)
    train_key = global_array(keys.train, replicated(mesh))
    train_chunk = TrainChunks(family, mesh, skip_nonfinite=config.skip_nonfinite)
    evaluate = make_evaluate(family, mesh, test.num_examples, batch_size)
    test_metrics, samples = {}, None

    def run_eval(step):
        nonlocal test_metrics, samples
        test_metrics = {k: float(v) for k, v in jax.device_get(evaluate(state, test_data, jax.random.fold_in(keys.eval, step))).items()}
        writer.write(step, "test", test_metrics)
        if is_primary():
            run.progress.write(f"step {step} test " + " ".join(f"{k}={v:.4g}" for k, v in test_metrics.items()))
        samples = artifacts.write_step_images(
            family, state, test, jax.random.fold_in(keys.sample, step), step, files_dir, config.num_samples
        )

    pending, final_step = None, start_step
    try:
        with StopRequests() as stops:
            for first_step, length in chunk_schedule(
                start_step, config.num_steps, (config.steps_per_call, config.eval_every, config.checkpoint_every)
            ):
                if out_of_time:
                    break
                indices = batch_indices(config.seed, train.num_examples, batch_size, first_step, length, num_shards)
                if pending and train_chunk.needs_compile(length):  # don't count compile time as training time
                    run.record_chunk(*pending)
                    pending = None
                state, metrics = train_chunk(state, train_data, indices, first_step, train_key, config.steps_per_call)
                dispatched_at = time.perf_counter()
                if pending:
                    run.record_chunk(*pending)
                pending = (first_step, length, metrics, dispatched_at)
                step = final_step = first_step + length
                stopping = any_process(stops.signum is not None)  # every process must stop at the same step
                # run.train_seconds covers the chunks recorded so far: the budget ends the run one chunk late at most
                out_of_time = bool(config.time_budget) and any_process(prior_seconds + run.train_seconds >= config.time_budget)
                at_eval = step % config.eval_every == 0 or out_of_time
                at_checkpoint = step % config.checkpoint_every == 0 or step == config.num_steps or stopping or out_of_time
                if at_eval or at_checkpoint:
                    run.record_chunk(*pending)
                    pending = None
                if at_checkpoint:
                    if not all_finite(state):
                        raise _diverged(f"the parameters became non-finite by step {step}", checkpoints)
                    checkpoints.save(step, state, {**meta, "step": step, "train_seconds": prior_seconds + run.train_seconds})
                if at_eval:
                    run_eval(step)
                if stopping:
                    checkpoints.wait()
                    raise Interrupted(stops.signum or signal.SIGTERM, step, checkpoints.directory)
                if out_of_time:
                    break
        if pending:
            run.record_chunk(*pending)
        if not test_metrics or (final_step % config.eval_every and not out_of_time):
            run_eval(final_step)
        summary = {
            "experiment": experiment,
            "model": config.model,
            "dataset": f"{train.name} ({train.source}, {train.num_examples} train / {test.num_examples} test)",
            "steps": final_step,
            "devices": num_devices,
            "processes": jax.process_count(),
            "data_shards": num_shards,
            "num_params": count_params(state),
            "wall_seconds": time.perf_counter() - start_time,
            "compile_seconds": train_chunk.compile_seconds,
            "train_seconds": run.train_seconds,
            "total_train_seconds": prior_seconds + run.train_seconds,
            "examples_per_s": run.trained_examples / run.train_seconds if run.train_seconds else None,
            "test": test_metrics,
            "train": run.last_train_metrics,
        }
        artifacts.write_final(family, state, test, samples, keys.figures, files_dir)
        checkpoints.wait()
        _write_json_atomically(os.path.join(files_dir, "summary.json"), summary)
        return FitResult(state, summary)
    finally:
        run.progress.close()
        writer.close()
        checkpoints.close()


def _write_json_atomically(path: str, value: dict) -> None:
    """Write JSON to `path` via a temporary file and a rename: readers never see half a file."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=2)
    os.replace(path + ".tmp", path)
