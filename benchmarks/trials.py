"""Vectorized trials against sequential ones: T settings of a family trained in one vmapped program
(genjax.train.trials.TrialGroup) against the same T settings trained one after another, both as groups of
one and through the engine's own run (`experiment.run`, what the study's one-at-a-time trials use: its
training images/s from the run summary, compilation excluded).

    python benchmarks/trials.py                      # every one-stage family of the study, T = 8
    python benchmarks/trials.py vae --trials 4 16 --steps 300

The families are the study's (experiments.study.CONTENDERS, from the registry) that train in one stage, each
with its own config at the study's batch size, and the T settings are the study's draws from the family's own
search space (its defaults first), cut to the fields a group traces, so that they form one group.
Both sides run the same code (a group of one setting is the sequential case), the same steps and data; the
first chunk of each (compilation) is not timed. Reported: training images/s summed over the trials, for the
vmapped group, the unrolled group (the trials' unbatched steps side by side in one program) and the
sequential groups, the engine's runs, and the ratios to the engine's runs (the decision a family's
`cpu_vectorize` records); then, for the vmapped group and the engine's runs, trials per hour (trials of
`--trial_steps` steps, the study's scale: 3,000-8,000 MLP steps in its 15 s budget) and the share of this
machine's matmul peak (benchmarks/throughput.py's, measured in this process before and after the models: the
higher of the two): images/s times XLA's FLOPs per training image of the engine's step, over the peak. Speeds
on a shared machine vary: compare the ratio, measured side by side in one run, and read the CPU pressure printed.

As in the study, the process has one XLA:CPU device per core (`--host_devices`, genjax.xla_flags.add_host_devices):
a vmapped group whose size they divide spreads its trials over them, and an engine run (and a group of one)
trains on one device, whose programs use every core. `--host_devices 1` measures the single-device process.
"""

import argparse
import os
import sys
import time

import jax
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.throughput import cpu_pressure, matmul_peak  # noqa: E402
from genjax import data  # noqa: E402


def families() -> dict:
    """The study's one-stage families ({name: Contender}, experiments.study.CONTENDERS, from the registry): the
    ones it can train as groups (a two-stage family's later stages fit each trial's own first stage)."""
    from experiments.study import CONTENDERS

    return {name: contender for name, contender in CONTENDERS.items() if len(contender.stages) == 1}


def settings_for(contender, count: int, seed: int = 0) -> list:
    """`count` settings of one group: the study's draws from the family's own search space (its defaults first,
    search seed `seed`), cut to the traced fields (the untraced ones stay at the defaults)."""
    import dataclasses

    from experiments.study import DEFAULT
    from genjax.study.groups import traced_fields
    from genjax.study.plan import settings_of

    traced = traced_fields(contender)
    drawn = settings_of(dataclasses.replace(DEFAULT, num_settings=count, search_seed=seed), contender)
    return [{field: setting[field] for field in traced} for setting in drawn]


def images_per_s(config, settings, train, steps: int, chunk: int, vectorize: str = "vmap") -> float:
    from genjax.train.trials import TrialGroup

    group = TrialGroup(config, settings, train, vectorize)
    state, _ = group.train(group.init(), 0, chunk)  # compiles
    jax.block_until_ready(state)
    start = time.perf_counter()
    for first in range(chunk, chunk + steps, chunk):
        state, metrics = group.train(state, first, chunk)
    jax.block_until_ready((state, metrics))
    return len(settings) * steps * config.batch_size / (time.perf_counter() - start)


def engine_run(experiment_name: str, config, setting: dict, steps: int, chunk: int) -> tuple[float, float]:
    """(training images/s, XLA's FLOPs per step) of one run of `setting` through experiment.run, `chunk`
    steps per device call."""
    import tempfile

    from genjax import experiment
    from genjax.comparison import UNLIMITED_STEPS

    config = config.copy_and_resolve_references()
    config.update(setting)
    config.update(dict(num_steps=chunk + steps, steps_per_call=chunk, num_samples=16, figures=False, num_devices=1))
    config.eval_every = config.checkpoint_every = UNLIMITED_STEPS
    with tempfile.TemporaryDirectory() as workdir:
        summary = experiment.run(config, workdir, experiment_name).summary
    return float(summary["examples_per_s"]), float(summary["flops_per_step"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    contenders = families()
    names = list(contenders)
    parser.add_argument("models", nargs="*", choices=[*names, []], help=f"default: all of {', '.join(names)}")
    parser.add_argument("--trials", type=int, nargs="+", default=[8])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per trial (conv models: a tenth)")
    parser.add_argument(
        "--chunk", type=int, default=0, help="steps per device call (0: 50, conv models 10; a study under a seconds budget: 10)"
    )
    parser.add_argument("--trial_steps", type=int, default=4000, help="steps of one trial, for trials per hour")
    parser.add_argument("--peak_sizes", type=int, nargs="+", default=[512, 1024, 2048], help="matmul sizes of the peak")
    parser.add_argument("--host_devices", type=int, default=0, help="XLA:CPU devices (0: one per core, as the study)")
    args = parser.parse_args()
    from experiments.study import DEFAULT
    from genjax import experiment, xla_flags

    xla_flags.add_host_devices(args.host_devices)  # before JAX's first computation

    train = data.load("mnist", "train", "embedded")
    print(f"CPU pressure before (PSI some avg10): {cpu_pressure()}%; {jax.device_count()} {jax.default_backend()} devices")
    # the peak moves by 15% between processes on a shared machine, and within one: measured before and after the
    # models, the shares are of the higher, so a slow moment of the peak's timing cannot inflate them
    before = matmul_peak(tuple(args.peak_sizes))["peak_flops"]
    rows = []
    for name in args.models or names:
        contender = contenders[name]
        config = contender.config()
        batch_size = DEFAULT.batch_size  # the study's
        config.update(dict(batch_size=batch_size, source="embedded"))
        conv = experiment.validate(config).make_family(config, train).convolutional
        steps = max(args.steps // 10, 10) if conv else args.steps
        chunk = args.chunk or (10 if conv else 50)
        steps = steps // chunk * chunk or chunk
        for count in args.trials:
            settings = settings_for(contender, count)
            vmapped = images_per_s(config, settings, train, steps, chunk, "vmap")
            unrolled = images_per_s(config, settings, train, steps, chunk, "unroll")
            sequential = count / sum(1 / images_per_s(config, [s], train, steps, chunk) for s in settings)
            runs = [engine_run(contender.experiment, config, s, steps, chunk) for s in settings]
            engine = count / sum(1 / speed for speed, _ in runs)
            flops_per_image = float(np.mean([flops for _, flops in runs])) / batch_size  # the same network: settings change no FLOPs
            rows.append((name, count, batch_size, vmapped, unrolled, sequential, engine, flops_per_image))
    after = matmul_peak(tuple(args.peak_sizes))["peak_flops"]
    peak = max(before, after)
    print(
        f"matmul peak (float32, {jax.default_backend()}): {before / 1e9:,.1f} GFLOP/s before the models, {after / 1e9:,.1f} after "
        f"(the shares: of the higher); trials of {args.trial_steps:,} steps"
    )
    print(
        "| model | trials | vmapped images/s | unrolled images/s | groups of one images/s | engine runs images/s "
        "| vmapped / engine | unrolled / engine | trials/h vmapped | trials/h engine | of peak vmapped | of peak engine |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, count, batch_size, vmapped, unrolled, sequential, engine, flops_per_image in rows:
        per_hour = 3600 / (batch_size * args.trial_steps)  # trials of trial_steps steps per hour, per image/s
        print(
            f"| {name} | {count} | {vmapped:,.0f} | {unrolled:,.0f} | {sequential:,.0f} | {engine:,.0f} | "
            f"{vmapped / engine:.2f}x | {unrolled / engine:.2f}x | {vmapped * per_hour:,.0f} | {engine * per_hour:,.0f} | "
            f"{vmapped * flops_per_image / peak:.0%} | {engine * flops_per_image / peak:.0%} |"
        )


if __name__ == "__main__":
    main()
