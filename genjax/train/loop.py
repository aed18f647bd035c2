"""The engine: `fit` trains any Family, compiled, sharded, chunked, checkpointed and logged.

Per-step randomness is `fold_in(train_key, step)` and the batch of step s is `batch_indices(seed, ..., s)`,
so a run resumed from a checkpoint draws the same numbers and sees the same data as an uninterrupted one.
Several steps run per host call (`lax.scan` over a chunk); chunk boundaries fall on multiples of
steps_per_call, eval_every and checkpoint_every (and where a time budget ends a run), so checkpoints and
evaluations always see a finished chunk. Whole datasets live on the devices (uint8; each device holds the
whole set or, with data shards, its shard) and each step gathers its batch there, sharded over the mesh:
the host only sends a few kilobytes of indices per chunk. The host reads a chunk's metrics after dispatching the next chunk, so the
device never waits for logging (genjax.train.chunk_log); only a fresh fit under a time budget waits for its first
call, to know the step rate before it commits to a second. How a chunk runs on each backend is the
execution policy's choice (genjax.train.policy).

A fit is four parts: `_start` (checks, initial state, resume from the latest checkpoint), `_train_chunks`
(the chunk plan, dispatch, checkpoints, evaluations, stop requests and time budget), the final evaluation,
and `_summary` (what summary.json records).

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
from collections.abc import Callable, Iterator

import jax
import numpy as np

from genjax.checkpoint import Checkpoints
from genjax.config import traced_hyperparameters, with_values
from genjax.data import Dataset, batch_indices, to_model_batch
from genjax.errors import UserError
from genjax.train import artifacts, policy
from genjax.train.chunk_log import ChunkLog, TrainingDiverged, diverged
from genjax.train.chunks import TrainChunks, tree_all_finite
from genjax.train.evaluation import make_evaluate
from genjax.train.family import Family, count_params, initial_state
from genjax.train.parallel import (
    any_process,
    global_array,
    is_primary,
    least_over_processes,
    make_mesh,
    put_data_shards,
    replicated,
    wait_for_all_processes,
)
from genjax.train.rundir import WorkdirLock, ensure_writable, prepare_workdir, write_config, write_json_atomically
from genjax.train.signals import Interrupted, StopRequests
from genjax.train.writer import MetricWriter

log = logging.getLogger("genjax")
__all__ = ["FitResult", "Keys", "TrainingDiverged", "chunk_schedule", "fit"]


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


def chunk_schedule(start: int, end: int, every: tuple[int, ...]) -> Iterator[tuple[int, int]]:
    """(first step, length) of each host call from `start` to `end`, cut at every multiple of `every`.

    Lazy: a run under a time budget has an effectively unlimited `end` (10**9 steps in the comparison), and
    building that list up front took 30 s of a 10 s run."""
    step = start
    while step < end:
        stop = min([end] + [(step // e + 1) * e for e in every])
        yield step, stop - step
        step = stop


_all_finite_jit = jax.jit(tree_all_finite)


def all_finite(state) -> bool:
    """Whether every floating-point array in `state` is free of NaN and infinity (never checkpoint one that is not)."""
    return bool(_all_finite_jit(state))


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The trained state (on the devices), the summary written to summary.json, and the family and config
    that trained it (so that a caller can evaluate the state without reading the run back from disk)."""

    state: object
    summary: dict
    family: Family | None = None
    config: object = None


def fit(family: Family, config, train: Dataset, test: Dataset, workdir: str, experiment: str, make_family=None, points=None) -> FitResult:
    """Train `family` on `train`, evaluating on `test`, writing the run directory `workdir`.

    make_family(config, dataset), the family's constructor, is needed when config.traced_hyperparameters names
    fields: the train step then builds the family from them as traced scalars (genjax.train.chunks.TrainChunks).
    points (BudgetPoints): measure the state at these points along the fit.

    Resumes from the latest checkpoint in workdir unless config.fresh. Raises UserError on bad input
    (including a workdir another run holds), TrainingDiverged on NaN/Inf metrics and Interrupted after
    checkpointing on SIGINT/SIGTERM.
    """
    ensure_writable(workdir)
    with WorkdirLock(workdir) if jax.process_index() == 0 else contextlib.nullcontext():
        return _fit_locked(family, config, train, test, workdir, experiment, make_family, points)


def _check_datasets(train: Dataset, test: Dataset) -> None:
    if train.example_shape != test.example_shape or train.data_key != test.data_key:
        raise ValueError(
            f"train and test examples differ: {train.data_key}{list(train.example_shape)} vs "
            f"{test.data_key}{list(test.example_shape)}; load both splits of the same dataset"
        )


def _fit_locked(family: Family, config, train: Dataset, test: Dataset, workdir: str, experiment: str, make_family, points) -> FitResult:
    start_time = time.perf_counter()
    _check_datasets(train, test)
    mesh = make_mesh(config.num_devices)  # built once: the checks below and the fit use it
    _check_batch(config, train, mesh)  # before a fresh run wipes the last one
    if is_primary():
        prepare_workdir(workdir, fresh=config.fresh)
    wait_for_all_processes("genjax: run directory ready")
    with tempfile.TemporaryDirectory(prefix="genjax-process-files-") as scratch:
        files_dir = workdir if is_primary() else scratch
        return _fit(family, config, train, test, workdir, experiment, files_dir, start_time, mesh, make_family, points)


@dataclasses.dataclass
class _Start:
    """Where a fit starts: its mesh and data shards, keys, state, first step and earlier training seconds, with the
    time budget an earlier fit stopped at (0: none) and its last step rate (0: unknown), read from the checkpoint."""

    mesh: object
    num_shards: int
    keys: Keys
    state: object
    step: int
    prior_seconds: float
    meta: dict
    checkpoints: Checkpoints
    budget_spent: float = 0.0
    step_seconds: float = 0.0


def _check_batch(config, train: Dataset, mesh) -> int:
    """Raise UserError unless the batch divides over the mesh's devices and fits the data; returns the data shards."""
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
    return num_shards


def _start(family, config, train: Dataset, workdir: str, experiment: str, mesh) -> _Start:
    """Build the initial state on `mesh` or resume from the latest checkpoint (which must fit the family's state).

    The caller closes the returned start's checkpoints."""
    num_shards = config.data_shards or jax.process_count()  # _check_batch checked it, before the run directory was touched
    batch_size = config.batch_size
    keys = Keys.from_seed(config.seed)
    example = to_model_batch(train.take(np.arange(batch_size)))
    shapes = jax.jit(family.init, out_shardings=replicated(mesh))  # traced for the shapes only, never compiled
    meta = {"experiment": experiment, "model": config.model, "config": config.to_dict()}
    checkpoints = Checkpoints(os.path.join(workdir, "checkpoints"), keep=config.keep_checkpoints)
    try:
        # a resumed fit restores into the state's shapes only: running init too cost a compile and a pass (the
        # study resumes every trial at each budget point)
        # `earlier`: the checkpoint's meta, with the training seconds of earlier fit calls on this workdir (a time
        # budget covers them all)
        start_step, state, earlier = (
            checkpoints.restore_latest(shapes.eval_shape(keys.init, example), meta) if checkpoints.latest_step() else (0, None, {})
        )
    except BaseException:
        checkpoints.close()
        raise
    if start_step:
        log.info("resuming from checkpoint step %d in %s", start_step, checkpoints.directory)
    else:
        state = initial_state(family.init, keys.init, example, out_shardings=replicated(mesh))
    seconds, spent, rate = (earlier.get(k, 0.0) for k in ("train_seconds", "budget_spent", "step_seconds"))
    return _Start(mesh, num_shards, keys, state, start_step, seconds, meta, checkpoints, spent, rate)


class _Evaluations:
    """Test-set metrics and the sample (and reconstruction) pictures at a step."""

    def __init__(self, family, config, test: Dataset, start: _Start, writer, chunk_log: ChunkLog, files_dir: str):
        self.family, self.config, self.test, self.start = family, config, test, start
        self.writer, self.chunk_log, self.files_dir = writer, chunk_log, files_dir
        if config.test_metrics:  # without them the test split is only sampled for pictures: nothing to put on the devices
            self.evaluate = make_evaluate(family, start.mesh, test.num_examples, config.batch_size)
            self.test_data = put_data_shards(start.mesh, test.arrays, 1)
        self.metrics, self.samples, self.step = {}, None, None

    def __call__(self, state, step: int) -> None:
        keys, self.step = self.start.keys, step
        if self.config.test_metrics:
            values = jax.device_get(self.evaluate(state, self.test_data, jax.random.fold_in(keys.eval, step)))
            self.metrics = {k: float(v) for k, v in values.items()}
            self.writer.write(step, "test", self.metrics)
            if is_primary():
                self.chunk_log.progress.write(f"step {step} test " + " ".join(f"{k}={v:.4g}" for k, v in self.metrics.items()))
        if not self.config.num_samples:
            return
        sample_key = jax.random.fold_in(keys.sample, step)
        self.samples = artifacts.write_step_images(self.family, state, self.test, sample_key, step, self.files_dir, self.config.num_samples)


def _step_programs(family, config, train: Dataset, mesh, make_family) -> TrainChunks:
    """The fit's train programs; the fields config.traced_hyperparameters names are their arguments."""
    traced = traced_hyperparameters(config)
    if traced and make_family is None:
        raise ValueError("config.traced_hyperparameters needs fit(..., make_family=the model's make_family)")
    hyper = {field: global_array(np.float32(config[field]), replicated(mesh)) for field in traced}
    scan = policy.scan_chunks(mesh.devices.flat[0].platform, family.convolutional)
    return TrainChunks(
        family,
        mesh,
        scan=scan,
        skip_nonfinite=config.skip_nonfinite,
        hyper=hyper,
        family_for=lambda values: make_family(with_values(config, values), train),
    )


@dataclasses.dataclass(frozen=True)
class BudgetPoints:
    """Points along one fit at which its caller measures the state (the study's budget points): `budgets`,
    ascending, in seconds of training when config.time_budget is set (it is the last of them), else in steps
    (config.num_steps the last). At each the fit checkpoints and draws its sample images as it does at its
    end, then, with the checkpoint on disk, calls `measure(family, state, step, train_seconds, flops_per_step)`
    outside the training clock (the study fits a later stage, such as the VQ-VAE's prior, to that checkpoint).

    One fit through every point, instead of one fit per point each resuming the last, builds, traces and
    restores once. A fit resumed at a point (the checkpoint's budget_spent) measures it again without training."""

    budgets: tuple
    measure: Callable


def _segment_ends(config, points: BudgetPoints | None) -> list:
    """Where the fit's segments end: the budget points, or the fit's own end (its time budget or num_steps)."""
    end = config.time_budget or config.num_steps
    if points is None:
        return [end]
    budgets = list(points.budgets)
    if not budgets or budgets != sorted(budgets) or budgets[-1] != end:
        raise ValueError(f"budget points {budgets} must ascend to the fit's own end, {end}")
    return budgets


def _train_chunks(
    family, config, train: Dataset, start: _Start, chunk_log: ChunkLog, evaluations: _Evaluations, make_family=None, points=None
):
    """Train from start.step to config.num_steps (or the time budget) in chunks; returns (state, last step, out of time, ...

    Checkpoints at every checkpoint_every steps, at the end, on a stop request and when the time is up;
    evaluates at every eval_every steps and when the time is up. With budget points (BudgetPoints), the fit is
    one segment per point, each ending as a fit with that budget would, and measured there. Also returns the
    compile seconds and XLA's FLOPs of one step (summary.json's flops_per_step).
    """
    mesh, state, final_step, checkpoints = start.mesh, start.state, start.step, start.checkpoints
    timed = bool(config.time_budget)
    # spent: the budget an earlier segment or fit stopped at (it ends nearest the budget, so possibly just below it)
    spent = start.budget_spent
    if start.step < config.num_steps and not (timed and spent >= config.time_budget) and is_primary():
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(evaluations.files_dir, "summary.json"))  # the run is unfinished again until it ends
    train_data = put_data_shards(mesh, train.arrays, start.num_shards)
    train_key = global_array(start.keys.train, replicated(mesh))
    train_chunk = _step_programs(family, config, train, mesh, make_family)
    flops = None

    def step_flops():
        nonlocal flops
        if flops is None:
            chunk_log.flush()
            indices = batch_indices(config.seed, train.num_examples, config.batch_size, 0, 1, start.num_shards)
            flops = train_chunk.step_flops(state, train_data, indices, train_key)
        return flops

    # Step by step every chunk length shares one compiled step, so under a time budget the last chunk is cut to
    # the step that ends nearest the budget: within half a step of it, not half a call (a call of flow matching's
    # U-Net on CPU is a third of the study's smallest budget). One lax.scan per length would compile a new one.
    any_length = not train_chunk.scan
    finest = 1 if any_length else config.steps_per_call

    def projected_past(budget: float) -> bool:
        """Whether the training seconds when the pending chunk ends, plus half of the finest next chunk (a step,
        or a call), reach `budget`: then stopping after the pending chunk ends the run nearer the budget."""
        return start.prior_seconds + chunk_log.projected_seconds(finest) >= budget

    def nearest_length(length: int, budget: float) -> int:
        """`length`, or fewer steps where they end nearer the budget (at the last chunk's rate; none yet: `length`).
        Every process takes the least of theirs, whatever its own rate, so that they run the same steps."""
        if not (budget and any_length):
            return length
        nearest = length
        if chunk_log.step_seconds:
            left = budget - start.prior_seconds - chunk_log.projected_seconds(0)
            nearest = min(length, max(1, round(left / chunk_log.step_seconds)))
        return least_over_processes(nearest)

    with StopRequests() as stops:
        for end in _segment_ends(config, points):
            budget, last = (end, config.num_steps) if timed else (0.0, int(end))
            out_of_time = bool(budget) and (spent >= budget or projected_past(budget))
            every = (config.steps_per_call, config.eval_every, config.checkpoint_every)
            while final_step < last and not out_of_time:
                first_step, length = next(chunk_schedule(final_step, last, every))
                length = nearest_length(length, budget)
                indices = batch_indices(config.seed, train.num_examples, config.batch_size, first_step, length, start.num_shards)
                if train_chunk.needs_compile(length):  # don't count compile time as training time
                    chunk_log.flush()
                state, metrics = train_chunk(state, train_data, indices, first_step, train_key, config.steps_per_call)
                chunk_log.dispatched(first_step, length, metrics, time.perf_counter())
                if budget and not chunk_log.step_seconds:
                    # no rate yet (a fresh fit): wait for this first call, so that the next is cut, or the run stopped,
                    # at a known rate. Dispatching a second blind would train two calls at least, past a budget under
                    # two calls (a two-stage study trial's prior: about 1.75 s trained for a 1.25 s share)
                    chunk_log.flush()
                step = final_step = first_step + length
                stopping = any_process(stops.signum is not None)  # every process must stop at the same step
                # the chunk just dispatched is still running: project its end, and stop where the run ends nearest the budget
                out_of_time = bool(budget) and any_process(projected_past(budget))
                at_eval = step % config.eval_every == 0 or out_of_time
                at_checkpoint = step % config.checkpoint_every == 0 or step == last or stopping or out_of_time
                if at_eval or at_checkpoint:
                    chunk_log.flush()
                    state = refit_ex_post(family, state, train)
                if at_checkpoint:
                    if not all_finite(state):
                        raise diverged(f"the parameters became non-finite by step {step}", checkpoints)
                    seconds = start.prior_seconds + chunk_log.train_seconds
                    spent = budget if out_of_time else spent
                    meta = {"step": step, "train_seconds": seconds, "budget_spent": spent, "step_seconds": chunk_log.step_seconds}
                    checkpoints.save(step, state, {**start.meta, **meta})
                if at_eval:
                    evaluations(state, step)
                if stopping:
                    checkpoints.wait()
                    raise Interrupted(stops.signum or signal.SIGTERM, step, checkpoints.directory)
            if points is not None:
                chunk_log.flush()
                if evaluations.step != final_step:  # the sample images a fit ending here draws
                    evaluations(state, final_step)
                checkpoints.wait()  # the point's checkpoint on disk: a later stage (a prior) may be fitted to it
                points.measure(family, state, final_step, start.prior_seconds + chunk_log.train_seconds, step_flops())
    if final_step == 0 and checkpoints.latest_step() is None:
        # a fit of no steps (vae2stage's stage2_num_steps=0: stage 1 alone) keeps its initial state like any end, so
        # that the run can be evaluated (genjax.evaluate) and continued
        meta = {"step": 0, "train_seconds": 0.0, "budget_spent": spent, "step_seconds": chunk_log.step_seconds}
        checkpoints.save(0, state, {**start.meta, **meta})
    chunk_log.flush()
    return state, final_step, out_of_time, train_chunk.compile_seconds, step_flops()


def refit_ex_post(family, state, train: Dataset):
    """The family's `ex_post` fit applied to the state (unchanged without one), its refitted leaves placed
    like the ones they replace (a state on the host, such as a grouped trial's, stays there). Every process
    fits the same data the same way, so they stay identical."""
    if family.ex_post is None:
        return state

    def place(new, old):
        return global_array(new, old.sharding) if isinstance(old, jax.Array) and not isinstance(new, jax.Array) else new

    return jax.tree.map(place, family.ex_post(state, train), state)


def _summary(config, experiment, train, test, start: _Start, state, steps, chunk_log: ChunkLog, test_metrics, compile_seconds, wall):
    """What summary.json records about a finished fit."""
    return {
        "experiment": experiment,
        "model": config.model,
        "dataset": f"{train.name} ({train.source}, {train.num_examples} train / {test.num_examples} test)",
        "steps": steps,
        "devices": start.mesh.devices.size,
        "processes": jax.process_count(),
        "data_shards": start.num_shards,
        "num_params": count_params(state),
        "wall_seconds": wall,
        "compile_seconds": compile_seconds,
        "train_seconds": chunk_log.train_seconds,
        "total_train_seconds": start.prior_seconds + chunk_log.train_seconds,
        "examples_per_s": chunk_log.trained_examples / chunk_log.train_seconds if chunk_log.train_seconds else None,
        "test": test_metrics,
        "train": chunk_log.last_train_metrics,
    }


def _finished_summary(files_dir: str, steps: int) -> dict | None:
    """The summary.json of a run that already ended at `steps` (a fit that trains removes it first), else None."""
    try:
        with open(os.path.join(files_dir, "summary.json")) as f:
            summary = json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return summary if summary.get("steps") == steps else None


def _fit(family, config, train, test, workdir, experiment, files_dir, start_time, mesh, make_family=None, points=None) -> FitResult:
    """`fit` with the directory for metrics, images and summary apart: the run directory on process 0."""
    start = _start(family, config, train, workdir, experiment, mesh)
    if is_primary():
        try:
            write_config(workdir, config, resumed=start.step > 0)  # the run passed its checks: it is this config's now
        except BaseException:
            start.checkpoints.close()
            raise
    writer = MetricWriter(files_dir, resume_step=start.step)
    chunk_log = ChunkLog(family, config.num_steps, start.step, start.checkpoints, writer, config.batch_size, start.step_seconds)
    try:
        evaluations = _Evaluations(family, config, test, start, writer, chunk_log, files_dir)
        state, steps, out_of_time, compile_seconds, flops = _train_chunks(
            family, config, train, start, chunk_log, evaluations, make_family, points
        )
        finished = _finished_summary(files_dir, steps) if steps == start.step else None
        if any_process(finished is not None):  # rerun on a finished run: it does nothing more, and keeps its record
            if finished is None:  # a process other than the first, which writes no summary.json: this call's
                finished = _summary(config, experiment, train, test, start, state, steps, chunk_log, {}, compile_seconds, 0.0)
            start.checkpoints.wait()
            return FitResult(state, finished, family, config)
        if evaluations.step != steps:
            evaluations(state, steps)
        wall = time.perf_counter() - start_time
        summary = _summary(config, experiment, train, test, start, state, steps, chunk_log, evaluations.metrics, compile_seconds, wall)
        summary["flops_per_step"] = flops
        artifacts.write_final(family, state, test, evaluations.samples, start.keys.figures, files_dir, config.figures)
        start.checkpoints.wait()
        write_json_atomically(os.path.join(files_dir, "summary.json"), summary, indent=2)
        return FitResult(state, summary, family, config)
    finally:
        chunk_log.close()
        writer.close()
        start.checkpoints.close()
