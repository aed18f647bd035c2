"""Training throughput of genjax beside PyTorch: same model, optimizer, batch size, data and machine.

    python benchmarks/throughput.py                          # every entry, 5 repeats
    python benchmarks/throughput.py vae_mlp --repeats 7      # one entry
    python benchmarks/throughput.py --frameworks genjax      # no PyTorch
    python benchmarks/throughput.py --peak_only              # this machine's matmul peak
    python benchmarks/throughput.py --torch_threads 1        # on cores shared with other jobs (see --help)
    python benchmarks/throughput.py --frameworks genjax --compute_dtype bfloat16   # mixed precision, on a GPU

PyTorch is optional: pip install torch==2.13.0 (the CPU build).

genjax trains an experiment's default model through the engine's compiled chunked loop (TrainChunks:
steps_per_call steps per host call, as one jitted lax.scan or, for steps with convolutions on CPU, one
jitted call per step, with the on-device gather, driven chunk by chunk as `fit` does, without a run
directory). PyTorch trains the twin module of benchmarks/torch_models.py eagerly (`torch-eager`: forward,
backward, the optimizers, and the parameter average when genjax keeps one) and, when it
works, with the whole step under torch.compile (`torch-compile`). Every (entry, framework) run is its own
subprocess (own thread pool, own peak memory) and the runs alternate across repeats, so load from other
processes hits all frameworks alike.

Reported per run: images/s (median of timed windows after a warm-up), time to the first step (setup and
compilation of everything the first step needs, plus one step: the first chunk's wall time less the
steady-state time of its other steps), peak resident memory of the process and
what training added to it. Across repeats: the median (and range) per framework, the ratio to torch-eager,
and the FLOP/s achieved as a fraction of the device's measured matmul peak in the compute dtype (XLA's cost analysis
of one compiled genjax train step; the PyTorch twin does the same FLOPs).

Adding a family is one `Entry`: the experiment and config overrides of the genjax model, and the name of
its PyTorch twin in torch_models.py (a module with a `loss(x)` method, or `make_step(config)` for a model
with several optimizers).
"""

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]  # benchmark this checkout, not an installed genjax

TORCH_HINT = "PyTorch is not installed: pip install torch==2.13.0 (the CPU build), or pass --frameworks genjax"
FRAMEWORKS = ("genjax", "torch-eager", "torch-compile")


@dataclasses.dataclass(frozen=True)
class Entry:
    """One model: genjax's experiment (+ config overrides) and its PyTorch twin in torch_models.py."""

    experiment: str
    overrides: dict
    torch_model: str
    torch_kwargs: dict = dataclasses.field(default_factory=dict)


ENTRIES = {  # every family's default model
    "vae_mlp": Entry("vae_mnist", {}, "MLPVAE"),
    "vae_conv": Entry("vae_mnist", {"architecture": "conv"}, "ConvVAE"),
    "ae": Entry("ae_mnist", {}, "MLPAutoencoder"),
    "gan": Entry("gan_mnist", {}, "GAN", {"architecture": "mlp", "norm": "none"}),
    "dcgan": Entry("dcgan_mnist", {}, "GAN", {"architecture": "conv", "norm": "batch"}),
    "wgan_gp": Entry("wgan_gp_mnist", {}, "GAN", {"architecture": "conv", "norm": "none", "loss": "wasserstein_gp"}),
    "sngan": Entry("sngan_mnist", {}, "GAN", {"architecture": "conv", "norm": "spectral", "loss": "hinge"}),
    "vqvae": Entry("vqvae_mnist", {}, "VQVAE"),  # stage 1, the VQ-VAE
}


def genjax_config(entry: Entry, compute_dtype: str = "float32"):
    import importlib

    config = importlib.import_module(f"experiments.{entry.experiment}").get_config()
    config.update({"source": "embedded", "compute_dtype": compute_dtype, **entry.overrides})
    return config


def genjax_family(entry: Entry, compute_dtype: str = "float32"):
    """(config, training set, Family) of an entry's genjax model, as the experiment builds them."""
    from genjax import experiment

    config = genjax_config(entry, compute_dtype)
    model = experiment.validate(config)
    train, _ = experiment.load_data(config)
    return config, train, model.make_family(config, train)


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    """CPU time of this process, all threads, user + system."""
    times = os.times()
    return times.user + times.system


def _windows(run_window, windows: int) -> tuple[list[float], list[float]]:
    """(wall seconds, CPU seconds) of each timed window."""
    wall, cpu = [], []
    for _ in range(windows):
        start, start_cpu = time.perf_counter(), _cpu_seconds()
        run_window()
        wall.append(time.perf_counter() - start)
        cpu.append(_cpu_seconds() - start_cpu)
    return wall, cpu


def run_genjax(entry: Entry, windows: int, steps_per_window: int, compute_dtype: str = "float32") -> dict:
    """Train through the engine's TrainChunks as `fit` does: plan a chunk's indices on the host, dispatch
    it, then read the previous chunk's metrics while it runs."""
    import jax

    from genjax.data import batch_indices, to_model_batch
    from genjax.train import policy
    from genjax.train.chunks import TrainChunks, program_flops
    from genjax.train.loop import Keys
    from genjax.train.parallel import global_array, make_mesh, put_data_shards, replicated

    config, train, family = genjax_family(entry, compute_dtype)
    baseline_rss = _rss_mib()

    start = time.perf_counter()
    mesh = make_mesh(config.num_devices)
    keys = Keys.from_seed(config.seed)
    example = to_model_batch(train.take(np.arange(config.batch_size)))
    state = jax.jit(family.init, out_shardings=replicated(mesh))(keys.init, example)
    data = put_data_shards(mesh, train.arrays, 1)
    train_key = global_array(keys.train, replicated(mesh))
    chunks = TrainChunks(family, mesh, scan=policy.scan_chunks(mesh.devices.flat[0].platform, family.convolutional))
    length, step = config.steps_per_call, 0

    def chunk():
        nonlocal state, step
        indices = batch_indices(config.seed, train.num_examples, config.batch_size, step, length)
        state, metrics = chunks(state, data, indices, step, train_key, length)
        step += length
        return metrics

    jax.device_get(chunk())
    first_chunk_seconds = time.perf_counter() - start  # init, transfers, compilation and `length` steps
    pending = chunk()

    def window():
        nonlocal pending
        for _ in range(max(1, steps_per_window // length)):
            metrics = chunk()
            jax.device_get(pending)
            pending = metrics
        jax.device_get(pending)

    window()  # warm-up
    seconds, cpu_seconds = _windows(window, windows)
    steps = max(1, steps_per_window // length) * length
    batch = to_model_batch(train.take(np.arange(config.batch_size)))
    step_flops = program_flops(jax.jit(family.train_step).lower(state, batch, keys.train).compile())
    images_per_s = [steps * config.batch_size / s for s in seconds]
    return {
        "images_per_s": float(np.median(images_per_s)),
        "windows_images_per_s": images_per_s,
        "images_per_cpu_s": float(np.median([steps * config.batch_size / s for s in cpu_seconds])),
        "scan": chunks.scan,
        # the first chunk less the steady-state time of all its steps but one
        "first_step_s": first_chunk_seconds - (length - 1) * config.batch_size / float(np.median(images_per_s)),
        "compile_s": chunks.compile_seconds,
        "flops_per_step": step_flops,
        "peak_rss_mib": _peak_rss_mib(),
        "added_rss_mib": _peak_rss_mib() - baseline_rss,
        "batch_size": config.batch_size,
    }


def single_loss_step(model, config):
    """Forward, backward and Adam on the twin's `loss`, and the parameter average when genjax keeps one."""
    import torch

    optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
    params = list(model.parameters())
    ema_decay = config.get("ema_decay", 0.0)
    average = [p.detach().clone() for p in params] if ema_decay else None

    def train_step(x):
        loss = model.loss(x)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if average is not None:
            with torch.no_grad():
                torch._foreach_lerp_(average, params, 1 - ema_decay)
        return loss.detach()

    return train_step


def run_torch(entry: Entry, windows: int, steps_per_window: int, compiled: bool, threads: int = 0, compute_dtype: str = "float32") -> dict:
    """The same training eagerly in PyTorch (or with the step under torch.compile): shuffled batches of the
    same data, the same optimizers, and the same parameter average when genjax keeps one. With bfloat16,
    the step runs under torch.autocast, PyTorch's mixed precision: float32 parameters, bfloat16 matmuls
    and convolutions."""
    try:
        import torch
    except ImportError:
        sys.exit(TORCH_HINT)
    import torch_models

    from genjax import experiment
    from genjax.data import to_model_batch

    config = genjax_config(entry)
    train, _ = experiment.load_data(config)
    images = torch.from_numpy(np.asarray(to_model_batch(train.arrays)["image"])).permute(0, 3, 1, 2).contiguous()
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    baseline_rss = _rss_mib()

    start = time.perf_counter()
    model = getattr(torch_models, entry.torch_model)(**entry.torch_kwargs)
    train_step = model.make_step(config) if hasattr(model, "make_step") else single_loss_step(model, config)
    if compute_dtype != "float32":
        train_step = autocast(train_step, getattr(torch, compute_dtype))
    step_fn = torch.compile(train_step) if compiled else train_step
    batches = iter(())

    def next_batch():
        nonlocal batches
        batch = next(batches, None)
        if batch is None:  # a new epoch: a fresh permutation, last partial batch dropped (as genjax)
            order = torch.randperm(len(images), generator=generator)
            batches = iter(order[: len(order) // config.batch_size * config.batch_size].split(config.batch_size))
            batch = next(batches)
        return images[batch]

    step_fn(next_batch())
    first_step_seconds = time.perf_counter() - start

    def window():
        for _ in range(steps_per_window):
            loss = step_fn(next_batch())
        float(loss)

    window()  # warm-up (and torch.compile's recompilations)
    seconds, cpu_seconds = _windows(window, windows)
    images_per_s = [steps_per_window * config.batch_size / s for s in seconds]
    return {
        "images_per_s": float(np.median(images_per_s)),
        "windows_images_per_s": images_per_s,
        "images_per_cpu_s": float(np.median([steps_per_window * config.batch_size / s for s in cpu_seconds])),
        "first_step_s": first_step_seconds,
        "threads": torch.get_num_threads(),
        "peak_rss_mib": _peak_rss_mib(),
        "added_rss_mib": _peak_rss_mib() - baseline_rss,
        "batch_size": config.batch_size,
    }


def autocast(train_step, dtype):
    """train_step with its forward pass under torch.autocast(dtype) on the CPU."""
    import torch

    def mixed_precision_step(x):
        with torch.autocast("cpu", dtype=dtype):
            return train_step(x)

    return mixed_precision_step


def matmul_peak(sizes=(512, 1024, 2048), repeats: int = 5, dtype: str = "float32") -> dict:
    """This device's matmul FLOP/s in `dtype` through XLA (on the default backend: the CPU, or the GPU
    when JAX has one): the best size's median over `repeats` timings."""
    import jax

    best = {}
    for n in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
        matmul = jax.jit(lambda a: a @ a)
        matmul(a).block_until_ready()
        calls = max(2, int(2e10 / (2 * n**3)))

        def window():
            for _ in range(calls):
                out = matmul(a)
            out.block_until_ready()

        flops = [2 * n**3 * calls / s for s in _windows(window, repeats)[0]]
        best[n] = float(np.median(flops))
    return {"peak_flops": max(best.values()), "by_size": best, "backend": jax.default_backend(), "device": str(jax.devices()[0])}


def worker(kind: str, entry_name: str, args) -> dict:
    if kind == "peak":
        return matmul_peak(dtype=args.compute_dtype)
    entry = ENTRIES[entry_name]
    if kind == "genjax":
        return run_genjax(entry, args.windows, args.steps, args.compute_dtype)
    return run_torch(entry, args.windows, args.steps, kind == "torch-compile", args.torch_threads, args.compute_dtype)


def spawn(kind: str, entry: str, args) -> dict | None:
    """Run one measurement in a fresh process; None (with the reason on stderr) when it fails."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        kind,
        entry or "-",
        "--windows",
        str(args.windows),
        "--steps",
        str(args.steps),
        "--torch_threads",
        str(args.torch_threads),
        "--compute_dtype",
        args.compute_dtype,
    ]
    process = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout, env={**os.environ, "TQDM_DISABLE": "1"})
    lines = [line for line in process.stdout.splitlines() if line.startswith("{")]
    if process.returncode or not lines:
        tail = (process.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"  {kind} {entry}: failed ({tail})", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def cpu_pressure() -> float | None:
    """Percent of the last 10 s in which runnable tasks waited for a CPU (Linux PSI), a noise indicator."""
    try:
        with open("/proc/pressure/cpu") as f:
            return float(f.readline().split()[1].split("=")[1])
    except (OSError, IndexError, ValueError):
        return None


def summarize(results: dict, peak: float, entries, frameworks) -> str:
    """A Markdown table: medians over repeats, ratios to torch-eager, fraction of the matmul peak."""
    lines = [
        "| model | framework | images/s (median, range) | vs torch-eager | first step (s) | peak RSS / added (MiB) | GFLOP/s | of peak |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for entry in entries:
        runs = {fw: results.get((entry, fw), []) for fw in frameworks}
        flops = next((r["flops_per_step"] for r in runs.get("genjax", []) if "flops_per_step" in r), None)
        reference = np.median([r["images_per_s"] for r in runs.get("torch-eager", [])]) if runs.get("torch-eager") else None
        for fw, measured in runs.items():
            if not measured:
                lines.append(f"| {entry} | {fw} | failed or skipped | | | | | |")
                continue
            rate = np.median([r["images_per_s"] for r in measured])
            low, high = min(r["images_per_s"] for r in measured), max(r["images_per_s"] for r in measured)
            ratio = f"{rate / reference:.2f}x" if reference else ""
            first = np.median([r["first_step_s"] for r in measured])
            memory = f"{np.median([r['peak_rss_mib'] for r in measured]):.0f} / {np.median([r['added_rss_mib'] for r in measured]):.0f}"
            achieved = rate / measured[0]["batch_size"] * flops if flops else None
            gflops = f"{achieved / 1e9:.0f}" if achieved else ""
            fraction = f"{achieved / peak:.0%}" if achieved and peak else ""
            lines.append(
                f"| {entry} | {fw} | {rate:,.0f} ({low:,.0f}-{high:,.0f}) | {ratio} | {first:.2f} | {memory} | {gflops} | {fraction} |"
            )
    return "\n".join(lines)


def save_log(path: str | None, log: list) -> None:
    if path:
        with open(path, "w") as f:
            json.dump(log, f, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entries", nargs="*", help=f"models to measure (default: all of {', '.join(ENTRIES)})")
    parser.add_argument("--frameworks", nargs="+", default=list(FRAMEWORKS), choices=FRAMEWORKS)
    parser.add_argument("--repeats", type=int, default=5, help="fresh processes per (model, framework)")
    parser.add_argument("--windows", type=int, default=5, help="timed windows per process (its median is kept)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per timed window")
    parser.add_argument(
        "--torch_threads",
        type=int,
        default=0,
        help="PyTorch's intra-op threads (default 0: PyTorch's own choice, one per core). On cores "
        "shared with other processes, 1 avoids OpenMP threads spinning against each other",
    )
    parser.add_argument(
        "--compute_dtype",
        default="float32",
        choices=("float32", "bfloat16"),
        help="genjax's --config.compute_dtype, PyTorch's autocast dtype, and the matmul peak's dtype (bfloat16 is for GPUs and TPUs)",
    )
    parser.add_argument("--timeout", type=int, default=900, help="seconds before a run is abandoned")
    parser.add_argument("--json", help="also write every run's measurements to this file")
    parser.add_argument("--peak_only", action="store_true")
    parser.add_argument("--worker", nargs=2, metavar=("KIND", "ENTRY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker[0], args.worker[1], args)))
        return
    entries = args.entries or list(ENTRIES)
    unknown = [e for e in entries if e not in ENTRIES]
    if unknown:
        parser.error(f"unknown model {unknown[0]}; choose from {', '.join(ENTRIES)}")
    if any(fw.startswith("torch") for fw in args.frameworks):
        try:
            import torch  # noqa: F401
        except ImportError:
            sys.exit(TORCH_HINT)

    peaks, results, log = [], {}, []
    for repeat in range(args.repeats):
        peak = spawn("peak", None, args)
        if peak:
            peaks.append(peak["peak_flops"])
            log.append({"kind": "peak", "repeat": repeat, "cpu_pressure": cpu_pressure(), **peak})
        if args.peak_only:
            continue
        for entry in entries:
            for fw in args.frameworks:
                pressure = cpu_pressure()
                measured = spawn(fw, entry, args)
                if measured:
                    results.setdefault((entry, fw), []).append(measured)
                    log.append({"kind": fw, "entry": entry, "repeat": repeat, "cpu_pressure_before": pressure, **measured})
                    save_log(args.json, log)  # as it goes: an interrupted benchmark keeps what it measured
                    print(f"  repeat {repeat} {entry} {fw}: {measured['images_per_s']:,.0f} images/s", file=sys.stderr)
    peak = float(np.median(peaks)) if peaks else None
    pressures = [r.get("cpu_pressure_before", r.get("cpu_pressure")) for r in log]
    pressures = [p for p in pressures if p is not None]
    device = next((r["device"] for r in log if r["kind"] == "peak"), "?")
    print(
        f"matmul peak (XLA {args.compute_dtype} on {device}, median of {len(peaks)}): {peak / 1e9:.0f} GFLOP/s"
        if peak
        else "matmul peak: not measured"
    )
    if pressures:
        print(
            f"CPU pressure before runs (PSI some avg10, 0 = quiet machine): median {np.median(pressures):.0f}%, max {max(pressures):.0f}%"
        )
    if not args.peak_only:
        print(summarize(results, peak, entries, args.frameworks))
    save_log(args.json, log)


if __name__ == "__main__":
    main()
