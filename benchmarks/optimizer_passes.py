"""Whether a cheaper weight update could bring the vmapped MLP VAE to 60% of the matmul peak: its Adam and
weight-average update as genjax writes it (optax), the same maths as one fusion per weight, and both against the
whole train step, with the step's share of the peak as it is and as it would be if the update cost nothing.

    python benchmarks/optimizer_passes.py             # 4 trials over one XLA:CPU device per core, as the study
    python benchmarks/optimizer_passes.py --trials 2 --host_devices 1

Why. The vmapped MLP VAE reaches about half of the matmul peak (README, Performance); besides its matrix
products a step spends much of its time in Adam's and the weight average's elementwise passes over the
weights, which XLA:CPU runs as four loop fusions per weight (the first moment, the second, the parameter, the
average), each reading what the one before wrote: 13 array passes where one read of the gradient and of the
four state arrays and one write of each of the four (9) would do.

The two updates are jitted functions of T trials' weights (vmapped, as a study group trains them; the trial axis
sharded over the devices when their number divides T, so each core updates its own trials), `--scan` updates a
call, the state donated:
- optax: `genjax.train.optim.apply_gradients` with the family's `adam(config)`, then
  `optax.incremental_update` for the average, exactly the VAE's train step's update;
- one fusion: each weight's (parameter, first moment, second moment, average) kept as one stacked array, so
  that the whole update is one output, which XLA:CPU does emit as one loop fusion per weight (it has no
  multi-output fusion: four outputs make four fusions); the same maths, checked against optax here (a mismatch
  beyond float tolerance exits 1). That fusion is a concatenate: each of its four rows evaluates its own
  expression, so the average's row recomputes the parameter's and both moments' (and the result is copied into
  the donated buffer): fewer passes, more arithmetic, and measured slower;
- the step: a TrialGroup of T settings of the VAE (the study's vmapped trials), timed as benchmarks/trials.py
  times it (`--calls` x `--scan` steps after the compiling chunk).
Reported: the median milliseconds of each over `--repeats` windows of `--calls` calls, the step's share of the
float32 matmul peak (benchmarks/throughput.py's, timed before and after, the higher taken, as
benchmarks/trials.py does; the share is XLA's FLOPs of the step over its time, over the peak), and that share
with the optax update's time taken out of the step: no update, fused or not, can take the step past it.
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]  # measure this checkout, not an installed genjax

import throughput  # noqa: E402  (imports JAX only when it measures)
from trials import families, settings_for  # noqa: E402
from trials import images_per_s as group_images_per_s  # noqa: E402


def one_pass_update(stacked, grads, count, config):
    """Adam (Kingma & Ba 2015, in optax's form: eps outside the root) and the weight average, on one stacked
    array a weight: axis 0 of each leaf of `stacked` holds (parameter, first moment, second moment, average).

        m <- b1 m + (1 - b1) g,   v <- b2 v + (1 - b2) g^2,   t <- t + 1
        p <- p - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps),   average <- d average + (1 - d) p
    """
    import jax
    import jax.numpy as jnp

    b1, b2, lr, eps, decay = config.adam_b1, config.adam_b2, config.learning_rate, 1e-8, config.ema_decay
    count = count + 1

    def leaf(s, g):
        p, m, v, average = s[0], s[1], s[2], s[3]
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * jnp.square(g)
        p = p - lr * (m / (1 - b1**count)) / (jnp.sqrt(v / (1 - b2**count)) + eps)
        return jnp.stack([p, m, v, decay * average + (1 - decay) * p])

    return jax.tree.map(leaf, stacked, grads), count


def on_trial_axis(tree, axis: int = 0):
    """`tree` with its trial axis (`axis` of every leaf) sharded over the devices when their number divides it."""
    import jax
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    devices = jax.devices()
    trials = jax.tree.leaves(tree)[0].shape[axis]
    if trials % len(devices):
        return tree
    spec = PartitionSpec(*([None] * axis), "trials")
    return jax.device_put(tree, NamedSharding(Mesh(np.array(devices), ("trials",)), spec))


def median_ms(step, state, calls: int, repeats: int, scan: int) -> float:
    """Median milliseconds a step (of `scan` steps a device call, as the engine's chunks) over `repeats`
    windows of `calls` calls; `step(state) -> state` is scanned and jitted here with its state donated."""
    import jax

    chunk = jax.jit(lambda state: jax.lax.scan(lambda s, _: (step(s), None), state, None, length=scan)[0], donate_argnums=0)
    state = jax.block_until_ready(chunk(state))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            state = chunk(state)
        jax.block_until_ready(state)
        times.append((time.perf_counter() - start) / (calls * scan) * 1e3)
    return float(np.median(times))


def measure(trials: int, batch_size: int, calls: int, repeats: int, scan: int, peak_sizes) -> dict:
    import jax
    import jax.numpy as jnp
    import optax

    from genjax.data import to_model_batch
    from genjax.train.chunks import program_flops
    from genjax.train.loop import Keys
    from genjax.train.optim import adam, apply_gradients

    before = throughput.matmul_peak(peak_sizes)["peak_flops"]
    # the study's batch of 64 (benchmarks/throughput.py's windows use 128)
    entry = dataclasses.replace(throughput.ENTRIES["vae_mlp"], overrides={"batch_size": batch_size})
    config, train, family = throughput.genjax_family(entry)
    keys = Keys.from_seed(config.seed)
    batch = to_model_batch(train.take(np.arange(config.batch_size)))
    state = jax.vmap(family.init, in_axes=(0, None))(jax.random.split(keys.init, trials), batch)
    grads = jax.tree.map(lambda p: 1e-3 * jax.random.normal(jax.random.PRNGKey(1), p.shape, p.dtype), state["params"])
    tx = adam(config)

    def optax_update(carry):
        params, opt_state, average = carry
        params, opt_state = jax.vmap(lambda p, o, g: apply_gradients(tx, p, o, g))(params, opt_state, grads)
        return params, opt_state, optax.incremental_update(params, average, 1 - config.ema_decay)

    def fused_update(carry):  # the stacked axis outside the trial axis: each of the four rows is one contiguous array
        return jax.vmap(lambda s, c, g: one_pass_update(s, g, c, config), in_axes=(1, 0, 0), out_axes=(1, 0))(*carry, grads)

    # fresh copies of one start for each (the chunks donate their state)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # noqa: E731
    params, opt_state = state["params"], state["opt_state"]
    carry = on_trial_axis((copy(params), copy(opt_state), copy(params)))
    rows = jax.tree.map(lambda p: jnp.stack([p, jnp.zeros_like(p), jnp.zeros_like(p), p]), params)
    stacked = (on_trial_axis(rows, axis=1), on_trial_axis(jnp.zeros(trials, jnp.int32)))
    grads = on_trial_axis(grads)

    # the same numbers from both after a few updates
    check_optax, check_fused = jax.jit(optax_update), jax.jit(fused_update)
    a, b = copy(carry), copy(stacked)
    for _ in range(3):
        a, b = check_optax(a), check_fused(b)
    for name, ours, row in (("parameters", a[0], 0), ("average", a[2], 3)):
        for x, y in zip(jax.tree.leaves(ours), jax.tree.leaves(jax.tree.map(lambda s: s[row], b[0]))):
            if not np.allclose(x, y, rtol=1e-5, atol=1e-7):
                raise SystemExit(f"optimizer_passes: the fused update's {name} differ from optax's; fix one_pass_update")

    optax_ms = median_ms(optax_update, carry, calls, repeats, scan)
    fused_ms = median_ms(fused_update, stacked, calls, repeats, scan)
    # the group's step: benchmarks/trials.py's timing of a TrialGroup (the study's vmapped trials), T settings
    images_per_s = group_images_per_s(config, settings_for(families()["vae"], trials), train, calls * scan, scan, "vmap")
    step_ms = trials * config.batch_size / images_per_s * 1e3
    one = jax.tree.map(lambda leaf: leaf[0], state)
    step_flops = trials * program_flops(jax.jit(family.train_step).lower(one, batch, keys.train))  # lowered, as the engine counts a step
    peak = max(before, throughput.matmul_peak(peak_sizes)["peak_flops"])
    share = lambda ms: step_flops / (ms * 1e-3) / peak  # noqa: E731
    return {
        "trials": trials,
        "batch_size": batch_size,
        "devices": len(jax.devices()),
        "scan": scan,
        "peak_gflops": peak / 1e9,
        "optax_ms": optax_ms,
        "fused_ms": fused_ms,
        "step_ms": step_ms,
        "images_per_s": images_per_s,
        "update_share_of_step": optax_ms / step_ms,
        "step_of_peak": share(step_ms),
        # a step timed faster than its update alone (a noisy machine) bounds nothing
        "step_of_peak_update_free": share(step_ms - optax_ms) if step_ms > optax_ms else math.inf,
        "cpu_pressure": throughput.cpu_pressure(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=4, help="trials vmapped (the study's groups: 2 a core)")
    parser.add_argument("--batch_size", type=int, default=64, help="images a step (the study's 64)")
    parser.add_argument("--host_devices", type=int, default=0, help="XLA:CPU devices (0: one per core, as the study)")
    parser.add_argument("--scan", type=int, default=10, help="steps (or updates) a device call, as the engine's chunks")
    parser.add_argument("--calls", type=int, default=20, help="device calls per timed window")
    parser.add_argument("--repeats", type=int, default=5, help="timed windows; the median is reported")
    parser.add_argument("--peak_sizes", type=int, nargs="+", default=[512, 1024, 2048], help="matmul sizes of the peak")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if min(args.trials, args.batch_size, args.scan, args.calls, args.repeats) < 1 or args.host_devices < 0:
        parser.error("--trials, --batch_size, --scan, --calls and --repeats must be at least 1, --host_devices at least 0")
    from genjax import xla_flags

    xla_flags.add_host_devices(args.host_devices)  # before JAX's first computation
    r = measure(args.trials, args.batch_size, args.calls, args.repeats, args.scan, tuple(args.peak_sizes))
    print(
        f"MLP VAE, {r['trials']} trials vmapped at batch {r['batch_size']} over {r['devices']} device(s), {r['scan']} steps a call; matmul peak "
        f"{r['peak_gflops']:.1f} GFLOP/s; CPU pressure {r['cpu_pressure']}%\n"
        f"  Adam + average, optax:      {r['optax_ms']:.3f} ms\n"
        f"  Adam + average, one fusion: {r['fused_ms']:.3f} ms\n"
        f"  train step:                 {r['step_ms']:.3f} ms ({r['images_per_s']:,.0f} images/s), {r['step_of_peak']:.0%} of the peak; "
        f"the optax update is {r['update_share_of_step']:.0%} of it\n"
        f"  the step with the update free: {r['step_of_peak_update_free']:.0%} of the peak at most"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
