"""genjax's GroupNorm (genjax.nn.group_norm) against Flax's `nn.GroupNorm`, side by side in one process: each
layer alone at the flow U-Net's shapes (forward, and the gradient with respect to the parameters and the input,
what a train step computes), then the flow's train step (batch 64), its sampler (the study's 500 samples by 20
Heun steps, 40 evaluations of the U-Net) and its exact log-likelihood (the study's 20 test images), with the
U-Net's GroupNorms built by one or the other.

    python benchmarks/group_norm.py
    python benchmarks/group_norm.py --samples 100 --rounds 3

Both layers have the same parameters and compute the same function (the largest difference is printed; float32
rounding). The two alternate within each round and the median over rounds is reported, so load from other
processes hits both alike; read the CPU pressure printed before the figures.
"""

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's genjax

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from benchmarks.throughput import cpu_pressure  # noqa: E402
from genjax import data  # noqa: E402
from genjax.models import flow  # noqa: E402
from genjax.nn.group_norm import GroupNorm  # noqa: E402

LAYERS = {"flax": nn.GroupNorm, "genjax": GroupNorm}
LIKELIHOOD_EXAMPLES = 20  # the study's exact likelihoods: 100 Heun steps back to noise, one Hutchinson probe each
SHAPES = [(64, 28, 28, 16), (64, 14, 14, 32), (500, 28, 28, 16), (500, 14, 14, 32)]  # U-Net (16, 32) activations


def seconds(fn, args) -> float:
    started = time.perf_counter()
    jax.block_until_ready(fn(*args))
    return time.perf_counter() - started


def side_by_side(programs: dict, args: tuple, rounds: int) -> dict:
    """{name: median seconds}, the programs alternating round by round after one untimed call each (compiles)."""
    for fn in programs.values():
        jax.block_until_ready(fn(*args))
    times = {name: [] for name in programs}
    for _ in range(rounds):
        for name, fn in programs.items():
            times[name].append(seconds(fn, args))
    return {name: float(np.median(t)) for name, t in times.items()}


def layer_programs(shape):
    x = jax.random.normal(jax.random.PRNGKey(0), shape)
    g = jax.random.normal(jax.random.PRNGKey(1), shape)
    modules = {name: layer(num_groups=8) for name, layer in LAYERS.items()}
    params = modules["flax"].init(jax.random.PRNGKey(2), x)
    forward = {name: jax.jit(m.apply) for name, m in modules.items()}
    grad = {name: jax.jit(jax.grad(lambda p, x, m=m: jnp.vdot(m.apply(p, x), g), argnums=(0, 1))) for name, m in modules.items()}
    difference = float(jnp.abs(forward["flax"](params, x) - forward["genjax"](params, x)).max())
    return forward, grad, (params, x), difference


def flow_programs(num_samples: int):
    """The flow's train step and sampler with each GroupNorm (flow.group_norm patched while building them)."""
    from experiments import flow_mnist

    config = flow_mnist.get_config()
    train = data.load("mnist", "train")
    batch = data.to_model_batch(train.take(np.arange(config.batch_size)))
    examples = data.to_model_batch(data.load("mnist", "test").take(np.arange(LIKELIHOOD_EXAMPLES)))
    steps, samplers, likelihoods, state = {}, {}, {}, None
    original = flow.GroupNorm
    try:
        for name, layer in LAYERS.items():
            flow.GroupNorm = layer
            family = flow.make_family(config, train)
            if state is None:  # parameters moved off their initial values (the last conv starts at zero: v = 0)
                state = jax.jit(family.init)(jax.random.PRNGKey(0), batch)
                leaves, tree = jax.tree.flatten(state["ema_params"])
                keys = jax.random.split(jax.random.PRNGKey(4), len(leaves))
                moved = [leaf + 0.05 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys, strict=True)]
                state = {**state, "ema_params": jax.tree.unflatten(tree, moved)}
            # compiled here: the U-Net is traced with this layer in place
            key = jax.random.PRNGKey(1)
            steps[name] = jax.jit(lambda s, b, k, f=family: f.train_step(s, b, k)[0]).lower(state, batch, key).compile()
            samplers[name] = jax.jit(lambda s, k, f=family: f.sample(s, k, num_samples)).lower(state, key).compile()
            likelihoods[name] = jax.jit(family.log_likelihood).lower(state, examples, key).compile()
    finally:
        flow.GroupNorm = original
    return steps, samplers, likelihoods, state, batch, examples


def row(what: str, seconds: dict, difference: str = "") -> str:
    flax_ms, ours_ms = seconds["flax"] * 1e3, seconds["genjax"] * 1e3
    return f"| {what} | {flax_ms:.1f} | {ours_ms:.1f} | {flax_ms / ours_ms:.2f}x | {difference} |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--samples", type=int, default=500, help="samples drawn by the flow's sampler")
    args = parser.parse_args(argv)
    print(f"CPU pressure before (PSI some avg10): {cpu_pressure()}; {jax.devices()[0].platform}, {os.cpu_count()} cores")
    print("| what | Flax nn.GroupNorm ms | genjax GroupNorm ms | Flax / genjax | largest difference |")
    print("| --- | --- | --- | --- | --- |")
    for shape in SHAPES:
        forward, grad, layer_args, difference = layer_programs(shape)
        for what, programs in (("forward", forward), ("gradient", grad)):
            t = side_by_side(programs, layer_args, args.rounds)
            print(row(f"{what} {list(shape)}", t, f"{difference:.1e}"))
    steps, samplers, likelihoods, state, batch, examples = flow_programs(args.samples)
    key = jax.random.PRNGKey(3)
    t = side_by_side(steps, (state, batch, key), args.rounds)
    print(row(f"flow train step, batch {batch['image'].shape[0]}", t))
    t = side_by_side(samplers, (state, key), max(1, args.rounds // 2))
    same = float(jnp.abs(samplers["flax"](state, key) - samplers["genjax"](state, key)).max())
    print(row(f"flow sampler, {args.samples} samples", t, f"{same:.1e}"))
    t = side_by_side(likelihoods, (state, examples, key), max(1, args.rounds // 2))
    same = float(jnp.abs(likelihoods["flax"](state, examples, key) - likelihoods["genjax"](state, examples, key)).max())
    print(row(f"flow log-likelihood, {LIKELIHOOD_EXAMPLES} test images", t, f"{same:.1e} nats"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
