"""A chunk of train steps per host call: one lax.scan, or one jitted call per step (genjax.train.policy)."""

import time

import jax
import jax.numpy as jnp
import numpy as np

from genjax.data import to_model_batch
from genjax.train.family import Family
from genjax.train.parallel import batch_sharded, gather_batch, global_array, replicated
from genjax.train.policy import select_tree


def tree_all_finite(tree) -> jax.Array:
    """A boolean scalar: whether every floating-point leaf of `tree` is free of NaN and infinity."""
    leaves = [jnp.isfinite(leaf).all() for leaf in jax.tree.leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def program_flops(program) -> float:
    """XLA's count of the floating-point operations of a lowered or compiled program; 0 where the backend
    gives none. cost_analysis() is a dict, or a list of one dict per program in older jax."""
    cost = program.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float((cost or {}).get("flops", 0.0))


class TrainChunks:
    """Runs a chunk of train steps per host call; the state buffers are donated.

    `scan` says how (the caller asks genjax.train.policy.scan_chunks): True, a chunk is one device call, a
    lax.scan over its steps, compiled once per chunk length; False, each step is its own jitted call,
    dispatched asynchronously and compiled once for every chunk length. Both run the same `one_step`;
    compile time is measured apart from training time.

    With `skip_nonfinite`, a step whose metrics or new state contain NaN or infinity is discarded (the
    state stays as it was) and the metric `skipped` is 1 for it. Done here rather than per optimizer
    (optax.apply_if_finite) so that it covers every part of any family's state at once: both players of
    a GAN, batch statistics, parameter averages.

    With `hyper` ({config field: replicated float32 scalar}) and `family_for(values) -> Family`, the step is
    that of the family built inside the program from those fields as traced scalars: they are arguments of
    the compiled programs rather than constants, so runs that differ only in their values (the study's
    settings of one family) lower to the same program and share its persistent-cache entry.
    """

    def __init__(self, family: Family, mesh, scan: bool, skip_nonfinite: bool = False, hyper=None, family_for=None):
        if hyper and family_for is None:
            raise ValueError("traced hyperparameters need family_for(values), the family built from them")
        self.hyper = dict(hyper or {})

        def one_step(state, data, step, batch_indices_, train_key, hyper):
            batch = {**to_model_batch(gather_batch(mesh, data, batch_indices_)), "step": step}
            step_family = family_for(hyper) if hyper else family
            new_state, metrics = step_family.train_step(state, batch, jax.random.fold_in(train_key, step))
            if not skip_nonfinite:
                return new_state, metrics
            finite = tree_all_finite((new_state, metrics))
            return select_tree(finite, new_state, state), {**metrics, "skipped": 1.0 - finite.astype(jnp.float32)}

        def train_chunk(state, data, indices, steps, train_key, hyper):
            return jax.lax.scan(lambda state, xs: one_step(state, data, *xs, train_key, hyper), state, (steps, indices))

        def chunk_step(state, data, indices, steps, offset, train_key, hyper):
            """Step `offset` of a chunk whose indices and step numbers are padded to a fixed number of rows."""
            row = jax.lax.dynamic_index_in_dim(indices, offset, keepdims=False)
            return one_step(state, data, steps[offset], row, train_key, hyper)

        whole, examples, rows = replicated(mesh), batch_sharded(mesh), batch_sharded(mesh, axis=1)
        self.mesh, self.scan = mesh, scan
        self.chunk = jax.jit(
            train_chunk, in_shardings=(whole, examples, rows, whole, whole, whole), out_shardings=(whole, whole), donate_argnums=0
        )
        self.step = jax.jit(
            chunk_step, in_shardings=(whole, examples, rows, whole, whole, whole, whole), out_shardings=(whole, whole), donate_argnums=0
        )
        self.compiled, self.lowered = {}, {}
        self.compile_seconds = 0.0
        self.offsets = []

    def needs_compile(self, length: int) -> bool:
        return (length if self.scan else "step") not in self.compiled

    def _compiled(self, key, jitted, args):
        if key not in self.compiled:
            start = time.perf_counter()
            self.lowered[key] = jitted.lower(*args)
            self.compiled[key] = self.lowered[key].compile()
            self.compile_seconds += time.perf_counter() - start
        return self.compiled[key]

    def step_flops(self, state, data, indices, train_key) -> float:
        """XLA's count of the floating-point operations of one train step: the one-step program, lowered but not
        compiled (for the study's FLOPs axis; no device work). Step by step, the program that trained is that
        program (its padded rows only index): its count is free. Else the one-step program on the first row of
        `indices` is lowered for it (a trace and a lowering each fit; the study fits each trial at each budget point)."""
        if "step" in self.lowered:
            return program_flops(self.lowered["step"])
        row = global_array(np.asarray(indices[:1]), batch_sharded(self.mesh, axis=1))
        zero = global_array(np.zeros(1, np.int32), replicated(self.mesh))
        offset = global_array(np.int32(0), replicated(self.mesh))
        return program_flops(self.step.lower(state, data, row, zero, offset, train_key, self.hyper))

    def __call__(self, state, data, indices, first_step: int, train_key, rows: int | None = None):
        """(new state, metrics stacked over steps) for steps first_step, ..., first_step + len(indices) - 1.

        Step by step, `indices` is padded to `rows` rows (default: its length), so that every chunk length
        up to `rows` shares one compiled step.
        """
        length = len(indices)
        if self.scan:
            steps = np.arange(first_step, first_step + length, dtype=np.int32)
            args = (
                state,
                data,
                global_array(indices, batch_sharded(self.mesh, axis=1)),
                global_array(steps, replicated(self.mesh)),
                train_key,
                self.hyper,
            )
            return self._compiled(length, self.chunk, args)(*args)
        padded = np.concatenate([indices, np.repeat(indices[-1:], (rows or length) - length, axis=0)])
        steps = global_array(np.arange(first_step, first_step + len(padded), dtype=np.int32), replicated(self.mesh))
        padded = global_array(padded, batch_sharded(self.mesh, axis=1))
        while len(self.offsets) < length:  # device scalars 0, 1, ..., made once
            self.offsets.append(global_array(np.int32(len(self.offsets)), replicated(self.mesh)))
        step = self._compiled("step", self.step, (state, data, padded, steps, self.offsets[0], train_key, self.hyper))
        per_step = []
        for offset in self.offsets[:length]:
            state, metrics = step(state, data, padded, steps, offset, train_key, self.hyper)
            per_step.append(metrics)
        return state, jax.tree.map(lambda *values: jnp.stack(values), *per_step)
