"""Where one train step's time goes, per compiled XLA operation, for a family's default model.

    python benchmarks/profile_step.py vae_conv              # any entry of benchmarks/throughput.py
    python benchmarks/profile_step.py dcgan --steps 40 --top 30 --json runs/dcgan_profile.json

The step is the one `benchmarks/throughput.py` times (the experiment's default config, embedded MNIST), jitted
alone with its state donated. After a warm-up, `--steps` steps run under `jax.profiler.trace`; XLA:CPU then
emits one trace event per executed operation (thunk), named after the HLO instruction of the compiled step
(`--xla_cpu_enable_xprof_traceme`, set here before JAX starts). Each instruction is attributed to what it
computes: a convolution or matmul handed to a kernel library (YNNPACK/XNNPACK fusions), a convolution or dot
on XLA's own kernels, a transpose or copy (layout changes, often with elementwise work fused in), or other
elementwise and reduction work; and to the model code it came from (the op_name JAX recorded: the module
path, and `transpose(jvp(...))` for the backward pass).

Times are the operations' own durations summed over the steps, per step; shares are of their sum. Read
them against the step's wall time: independent operations run concurrently on the two cores (the sum can
exceed the wall time), and XLA's own (Eigen) convolutions run asynchronously on its thread pool, so their
events can end before their work does (the sum then falls short of the wall time, and those convolutions'
times are lower bounds). Library fusions (YNNPACK) are timed whole. On other
backends the trace holds kernels rather than HLO instructions, so nothing is attributed: read the trace
itself there (it is kept under --trace_dir when given).
"""

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO, os.path.dirname(os.path.abspath(__file__))]  # profile this checkout, not an installed genjax

import throughput  # noqa: E402  (imports JAX only when it measures)

TRACE_FLAG = "--xla_cpu_enable_xprof_traceme=true"

LIBRARY_FUSIONS = ("__ynn_fusion", "__xnn_fusion", "__onednn_fusion")
KINDS = ("library conv/matmul", "XLA convolution", "XLA dot", "transpose/copy", "elementwise/other")


def compiled_step(entry_name: str):
    """(jitted train step with donated state, state, batch, key, optimized HLO text) of an entry's default model."""
    import jax

    from genjax.data import to_model_batch
    from genjax.train.loop import Keys

    config, train, family = throughput.genjax_family(throughput.ENTRIES[entry_name])
    keys = Keys.from_seed(config.seed)
    batch = to_model_batch(train.take(np.arange(config.batch_size)))
    state = jax.jit(family.init)(keys.init, batch)
    step = jax.jit(family.train_step, donate_argnums=0)
    text = step.lower(state, batch, keys.train).compile().as_text()
    return step, state, batch, keys.train, text


def instructions(hlo_text: str) -> dict:
    """{instruction name: (kind, result shape, source op_name)} of every top-level instruction of the module."""
    bodies, current = collections.defaultdict(list), None
    for line in hlo_text.splitlines():
        header = re.match(r"^(?:ENTRY )?%([\w.\-]+) \(", line)
        if header:
            current = header.group(1)
        elif current:
            bodies[current].append(line)
    found = {}
    for line in hlo_text.splitlines():
        match = re.match(r"\s*(?:ROOT )?%([\w.\-]+) = (\S+) ([\w\-]+)\(", line)
        if not match:
            continue
        name, shape, opcode = match.groups()
        called = re.search(r"calls=%([\w.\-]+)", line)
        body = "\n".join(bodies.get(called.group(1), [])) if called else line
        source = re.search(r'op_name="([^"]+)"', line) or re.search(r'op_name="([^"]+)"', body)
        found[name] = (kind_of(line, opcode, body), shape, source.group(1) if source else "")
    return found


def kind_of(line: str, opcode: str, body: str) -> str:
    """Which of KINDS an instruction (its line, opcode and, for a fusion, its fused computation) is."""
    if any(library in line for library in LIBRARY_FUSIONS):
        return KINDS[0]
    if opcode == "convolution" or " convolution(" in body:
        return KINDS[1]
    if opcode == "dot" or " dot(" in body:
        return KINDS[2]
    if opcode in ("transpose", "copy") or " transpose(" in body or " copy(" in body:
        return KINDS[3]
    return KINDS[4]


def traced_durations(trace_dir: str) -> collections.Counter:
    """{event name: summed duration in microseconds} of the complete events of the trace written under trace_dir."""
    (path,) = glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)
    with gzip.open(path) as f:
        events = json.load(f)["traceEvents"]
    durations = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and "dur" in event:
            durations[event["name"]] += event["dur"]
    return durations


def profile(entry_name: str, steps: int, trace_dir: str) -> dict:
    import jax

    step, state, batch, key, text = compiled_step(entry_name)
    for _ in range(3):  # warm-up: the first calls allocate and page in
        state, _ = step(state, batch, key)
    jax.block_until_ready(state)
    with jax.profiler.trace(trace_dir):
        start = time.perf_counter()
        for _ in range(steps):
            state, _ = step(state, batch, key)
        jax.block_until_ready(state)
        wall_ms = (time.perf_counter() - start) / steps * 1e3
    known = instructions(text)
    ops = [
        {"name": name, "ms_per_step": us / steps / 1e3, "kind": known[name][0], "shape": known[name][1], "source": known[name][2]}
        for name, us in traced_durations(trace_dir).most_common()
        if name in known
    ]
    by_kind = collections.Counter()
    for op in ops:
        by_kind[op["kind"]] += op["ms_per_step"]
    return {"entry": entry_name, "backend": jax.default_backend(), "step_wall_ms": wall_ms, "ops": ops, "by_kind": dict(by_kind)}


def short_source(op_name: str) -> str:
    """'jit(train_step)/transpose(jvp(VAE))/VAE.decode/decoder/Conv_0/conv_general_dilated' -> 'backward VAE.decode/decoder/Conv_0'."""
    parts = op_name.split("/")[1:]
    direction = "backward " if parts and parts[0].startswith("transpose(") else ""
    return direction + "/".join(p for p in parts[1:-1] if p)


def report(result: dict, top: int) -> str:
    total = sum(result["by_kind"].values())
    if not total:
        return f"{result['entry']}: no trace event matched an HLO instruction (backend {result['backend']}: read the trace itself)"
    lines = [
        f"{result['entry']} ({result['backend']}): step wall time {result['step_wall_ms']:.1f} ms; operations' own time {total:.1f} ms"
    ]
    lines += ["", "| kind | ms/step | share |", "| --- | --- | --- |"]
    lines += [f"| {kind} | {ms:.2f} | {ms / total:.0%} |" for kind, ms in sorted(result["by_kind"].items(), key=lambda kv: -kv[1])]
    lines += ["", "| ms/step | share | kind | result | from |", "| --- | --- | --- | --- | --- |"]
    for op in result["ops"][:top]:
        shape = op["shape"].split("{")[0]
        lines.append(
            f"| {op['ms_per_step']:.2f} | {op['ms_per_step'] / total:.0%} | {op['kind']} | {shape} | {short_source(op['source'])} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("entry", choices=sorted(throughput.ENTRIES))
    parser.add_argument("--steps", type=int, default=20, help="profiled steps (after 3 of warm-up)")
    parser.add_argument("--top", type=int, default=20, help="operations listed")
    parser.add_argument("--json", default=None, help="also write the whole profile here")
    parser.add_argument("--trace_dir", default=None, help="keep the profiler trace here (default: a temporary directory)")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    if "jax" in sys.modules:  # XLA reads its flags once, when JAX starts
        parser.error("JAX was imported before profile_step.main, so XLA will not trace its operations: run it as a script")
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + TRACE_FLAG).strip()
    with tempfile.TemporaryDirectory() as scratch:
        result = profile(args.entry, args.steps, args.trace_dir or scratch)
    print(report(result, args.top))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
