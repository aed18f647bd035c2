"""Forward and forward+backward time of genjax's up- and downsampling formulations at the MNIST models' shapes.

    python benchmarks/conv_formulations.py              # both directions, batch 64 and 128
    python benchmarks/conv_formulations.py --in_scan    # also inside lax.scan (slow on CPU, see below)

Formulations (genjax.nn.conv): upsampling 'transpose' (4x4 stride-2 transposed convolution), 'subpixel'
(3x3 convolution to 4x channels + depth-to-space) and 'resize' (nearest 2x + 3x3 convolution); downsampling
'strided' (4x4 stride-2 convolution) and 'space_to_depth' (space-to-depth + 2x2 convolution). Each layer is
timed alone under jit: the forward pass, and the gradient of <layer(x), g> with respect to its parameters
and its input (what a train step computes). Formulations alternate within each round of timings and the
median over rounds is reported, so load from other processes hits them alike.

`--in_scan` adds the same gradient computed inside a lax.scan, where XLA:CPU leaves the gradient
convolutions in non-canonical dimension orders and runs them on a slow generic kernel (jax-ml/jax#12868);
that is why genjax's engine runs one jitted call per step on CPU (genjax.train.chunks.TrainChunks, genjax.train.policy).
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

from genjax.nn.conv import DOWNSAMPLES, UPSAMPLES, Upsample2x, downsample2x  # noqa: E402

# (height = width, input channels, output channels): the layers of the conv VAE, the DCGAN and the VQ-VAE
UP_SHAPES = [(7, 64, 32), (14, 32, 1), (7, 128, 64), (14, 64, 1)]
DOWN_SHAPES = [(28, 1, 32), (14, 32, 64), (28, 1, 64), (14, 64, 128)]


class Down(nn.Module):
    features: int
    kind: str

    @nn.compact
    def __call__(self, x):
        return downsample2x(x, self.features, self.kind)


def layer(direction: str, kind: str, features: int) -> nn.Module:
    return Upsample2x(features, kind) if direction == "up" else Down(features, kind)


def timed_functions(module, x, in_scan: bool, scan_length: int = 4):
    """(forward, gradient[, gradient inside a scan]) as jitted functions of (params, x), and the params."""
    params = module.init(jax.random.PRNGKey(0), x)
    cotangent = jax.random.normal(jax.random.PRNGKey(1), jax.eval_shape(module.apply, params, x).shape)
    gradient = jax.grad(lambda p, x: jnp.vdot(module.apply(p, x), cotangent), argnums=(0, 1))

    def scanned(p, x):
        def body(carry, _):
            grads = gradient(p, x + carry)
            return carry + 1e-6 * sum(jnp.mean(g) for g in jax.tree.leaves(grads)), None

        return jax.lax.scan(body, 0.0, None, length=scan_length)[0]

    functions = {"forward": jax.jit(module.apply), "forward+backward": jax.jit(gradient)}
    if in_scan:
        functions["in lax.scan"] = jax.jit(scanned)
    return functions, params, scan_length


def measure(cases, rounds: int, in_scan: bool, min_seconds: float = 0.05):
    """{case: {formulation: {what: median ms}}}, formulations alternating within each round."""
    results = {}
    for case, modules, x in cases:
        prepared = {}
        for kind, module in modules.items():
            functions, params, scan_length = timed_functions(module, x, in_scan)
            for function in functions.values():
                jax.block_until_ready(function(params, x))  # compile
            prepared[kind] = (functions, params, scan_length)
        times = {kind: {what: [] for what in prepared[kind][0]} for kind in prepared}
        for _ in range(rounds):
            for kind, (functions, params, scan_length) in prepared.items():
                for what, function in functions.items():
                    calls, start = 0, time.perf_counter()
                    while time.perf_counter() - start < min_seconds or calls < 2:
                        jax.block_until_ready(function(params, x))
                        calls += 1
                    per_call = (time.perf_counter() - start) / calls / (scan_length if what == "in lax.scan" else 1)
                    times[kind][what].append(per_call * 1e3)
        results[case] = {kind: {what: float(np.median(t)) for what, t in whats.items()} for kind, whats in times.items()}
        summary = ", ".join(f"{kind} {r['forward+backward']:.2f} ms" for kind, r in results[case].items())
        print(f"  {case}: forward+backward {summary}", file=sys.stderr, flush=True)
    return results


def table(results, in_scan: bool) -> str:
    columns = ["forward", "forward+backward"] + (["in lax.scan"] if in_scan else [])
    lines = [
        "| layer | formulation | " + " | ".join(f"{c} (ms)" for c in columns) + " | fastest fwd+bwd |",
        "| --- | --- | " + " | ".join("---" for _ in columns) + " | --- |",
    ]
    for case, by_kind in results.items():
        fastest = min(by_kind, key=lambda kind: by_kind[kind]["forward+backward"])
        for kind, r in by_kind.items():
            best = by_kind[fastest]["forward+backward"]
            mark = "**fastest**" if kind == fastest else f"{r['forward+backward'] / best:.1f}x"
            lines.append(f"| {case} | {kind} | " + " | ".join(f"{r[c]:.2f}" for c in columns) + f" | {mark} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--directions", nargs="+", default=["up", "down"], choices=["up", "down"])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--in_scan", action="store_true", help="also time the gradient inside lax.scan")
    args = parser.parse_args()
    cases = []
    for direction in args.directions:
        kinds, shapes = (UPSAMPLES, UP_SHAPES) if direction == "up" else (DOWNSAMPLES, DOWN_SHAPES)
        for batch in args.batch_sizes:
            for size, channels_in, channels_out in shapes:
                out_size = size * 2 if direction == "up" else size // 2
                case = f"{direction} b{batch} {size}x{size}x{channels_in} -> {out_size}x{out_size}x{channels_out}"
                x = jax.random.normal(jax.random.PRNGKey(2), (batch, size, size, channels_in))
                cases.append((case, {kind: layer(direction, kind, channels_out) for kind in kinds}, x))
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, {os.cpu_count()} CPUs; median of {args.rounds} rounds")
    print(table(measure(cases, args.rounds, args.in_scan), args.in_scan))


if __name__ == "__main__":
    main()
