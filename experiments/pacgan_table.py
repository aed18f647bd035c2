"""The PacGAN table (Lin et al. 2018, Table 1), measured: for each 2-D mixture and pack size m, `--runs`
runs of pacgan_toy2d (seeds 0, 1, ...), each scored on 2,500 samples by modes captured, % high-quality
samples and reverse KL (genjax.metrics.modes), reported as mean and standard error over the runs beside
the paper's numbers. The discriminator's batch is the experiment's batch_size in packs: for pacgan_toy2d
the paper's 100 packs (batch_size 100 m). `--experiment gan_toy2d` measures the smaller 2-128-128 networks
instead, and --config.FIELD=VALUE sets a field of the experiment's config for every run (a generator
average, a sampler; not the pack, mixture, seed or steps, which the table's flags set): each configuration
keeps its runs in a directory of its own. One run (--runs 1) reports its means without a standard error.

    python -m experiments.pacgan_table --steps 10000                      # the measured table (README): both mixtures
    python -m experiments.pacgan_table --packs 1,4 --runs 3 --steps 2000  # a quick look
    python -m experiments.pacgan_table --experiment gan_toy2d --packs 2 --steps 50000 --config.ema_decay=0.999

Writes pacgan_table.md and pacgan_table.json in --workdir (default runs/pacgan_table). Each run keeps its
own run directory and result.json: a rerun reuses finished runs and resumes an interrupted one. `--shard i/n`
trains every n-th run only, from the i-th (a SLURM array, or one process pinned to each CPU core: small
networks leave a second core mostly idle); the same command without --shard then writes the table from the
finished runs (shards on one machine can share the workdir, their runs' directories are disjoint; from
several machines, copy the shards' run directories into one workdir first).
"""

import argparse
import json
import os
import sys

import jax
import numpy as np

from experiments import gan_toy2d, pacgan_toy2d
from genjax import cli, experiment
from genjax.config import apply_overrides
from genjax.errors import UserError
from genjax.evaluate import mode_scores
from genjax.metrics.modes import NUM_SAMPLES
from genjax.train.rundir import write_json_atomically

MIXTURES = ("ring8", "grid25")
METRICS = ("modes_captured", "high_quality_percent", "reverse_kl")
# Lin et al. (2018), Table 1: (mean, standard error) over 10 runs of modes, % high quality, reverse KL
PAPER = {
    "ring8": {
        1: (6.3, 0.5, 98.2, 0.2, 0.45, 0.09),
        2: (7.9, 0.1, 95.6, 2.0, 0.07, 0.03),
        3: (7.8, 0.1, 97.7, 0.3, 0.10, 0.02),
        4: (7.8, 0.1, 95.9, 1.4, 0.07, 0.02),
    },
    "grid25": {
        1: (17.3, 0.8, 94.8, 0.7, 0.70, 0.07),
        2: (23.8, 0.7, 91.3, 0.8, 0.13, 0.04),
        3: (24.6, 0.4, 94.2, 0.4, 0.06, 0.02),
        4: (24.8, 0.2, 93.6, 0.6, 0.04, 0.01),
    },
}


EXPERIMENTS = {"pacgan_toy2d": pacgan_toy2d, "gan_toy2d": gan_toy2d}
# Fields every run's config takes from the table's own flags: a --config.FIELD for one of them would be
# overwritten (and its value would still name the configuration's directory), so it is refused.
TABLE_FIELDS = {
    "pack": "give the pack sizes with --packs",
    "dataset": "give the mixtures with --datasets",
    "seed": "the runs are seeds 0 .. --runs - 1",
    "num_steps": "give the steps with --steps",
    "eval_every": "each run is evaluated at its end, --steps",
    "checkpoint_every": "each run is checkpointed at its end, --steps",
    "figures": "the table's runs draw no figures",
}


def run_config(dataset: str, pack: int, seed: int, steps: int, name: str = "pacgan_toy2d", overrides: dict | None = None):
    config = EXPERIMENTS[name].get_config()
    apply_overrides(config, overrides or {})
    config.update(dataset=dataset, pack=pack, batch_size=config.batch_size * pack, seed=seed, num_steps=steps)
    config.eval_every = config.checkpoint_every = steps
    config.figures = False
    return config


def label(name: str, overrides: dict) -> str:
    """The configuration's directory name: the experiment and its overrides, e.g. gan_toy2d,ema_decay=0.999."""
    return ",".join([name, *(f"{field}={value}" for field, value in sorted(overrides.items()))])


def measure(dataset: str, pack: int, seed: int, steps: int, root: str, name: str = "pacgan_toy2d", overrides=None) -> dict:
    """One run's mode coverage (reused when its result.json says it finished these steps)."""
    overrides = overrides or {}
    directory = os.path.join(root, label(name, overrides), dataset, f"pack{pack}", f"seed{seed}")
    path = os.path.join(directory, "result.json")
    if os.path.exists(path):
        with open(path) as f:
            done = json.load(f)
        if done.get("steps") == steps:
            return done
    result = experiment.run(run_config(dataset, pack, seed, steps, name, overrides), directory, name)
    scores = mode_scores(result.family, result.state, dataset, jax.random.PRNGKey(seed), NUM_SAMPLES)
    record = {"steps": steps, "train_seconds": result.summary["train_seconds"], **scores}
    write_json_atomically(path, record)
    return record


def summarize(runs: list[dict]) -> dict:
    """{metric: (mean, standard error)} over runs. One run has no standard error, nor has a mean over an infinite
    value (the reverse KL of a run with no high-quality sample): None, null in the JSON."""
    out = {}
    for name in METRICS:
        values = np.array([r[name] for r in runs], np.float64)
        defined = len(values) > 1 and np.all(np.isfinite(values))
        out[name] = (float(values.mean()), float(values.std(ddof=1) / np.sqrt(len(values))) if defined else None)
    return out


def _mean_and_error(mean: float, error: float | None) -> str:
    return f"{mean:.2f}" if error is None else f"{mean:.2f} +- {error:.2f}"


def markdown(table: dict, runs: int, steps: int, configuration: str = "pacgan_toy2d") -> str:
    over = f"mean +- standard error over {runs} runs" if runs > 1 else "one run (no standard error)"
    lines = [
        f"PacGAN table ({configuration}): {over} of {steps:,} steps each; paper: Lin et al. (2018), Table 1 (10 runs, 400 epochs).",
        "",
        "| mixture | pack | modes | high quality % | reverse KL | paper modes | paper high quality % | paper reverse KL |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for dataset, by_pack in table.items():
        for pack, summary in by_pack.items():
            ours = " | ".join(_mean_and_error(*summary[name]) for name in METRICS)
            paper = PAPER[dataset].get(pack)
            theirs = " | ".join(f"{paper[2 * i]} +- {paper[2 * i + 1]}" for i in range(3)) if paper else " | ".join(["-"] * 3)
            name = "GAN" if pack == 1 else f"PacGAN{pack}"
            lines.append(f"| {dataset} | {name} | {ours} | {theirs} |")
    return "\n".join(lines) + "\n"


def _ints(text: str) -> tuple:
    try:
        return tuple(int(part) for part in text.split(",") if part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got '{text}'") from None


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m experiments.pacgan_table", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default="runs/pacgan_table")
    parser.add_argument("--experiment", default="pacgan_toy2d", choices=tuple(EXPERIMENTS), help="the networks and optimizer")
    parser.add_argument("--datasets", default=",".join(MIXTURES), help="comma-separated mixtures (ring8, grid25)")
    parser.add_argument("--packs", type=_ints, default=(1, 2, 3, 4), help="pack sizes m (1: the plain GAN)")
    parser.add_argument("--runs", type=int, default=10, help="runs (seeds) per mixture and pack size")
    parser.add_argument("--steps", type=int, default=20000, help="training steps of each run")
    parser.add_argument("--shard", default=None, help="i/n: train runs i, i+n, ... of the table only, for several processes or machines")
    args, rest = parser.parse_known_args(argv)
    _, args.overrides, _ = cli.parse_args(rest)  # --config.FIELD=VALUE; anything else is refused there
    for field, hint in TABLE_FIELDS.items():
        if field in args.overrides:
            raise UserError(f"--config.{field} is set by the table itself: {hint}")
    run_config("ring8", 1, 0, 1, args.experiment, args.overrides)  # unknown fields and bad values: refused before training
    datasets = tuple(d for d in args.datasets.split(",") if d)
    for name in datasets:
        if name not in MIXTURES:
            raise UserError(f"unknown mixture '{name}'; choose from {', '.join(MIXTURES)}")
    if not datasets or not args.packs or min(args.packs) < 1:
        raise UserError("give at least one mixture and pack sizes >= 1, e.g. --datasets ring8 --packs 1,4")
    if args.runs < 1 or args.steps < 1:
        raise UserError(f"--runs and --steps must be >= 1, got {args.runs} and {args.steps}")
    return args, datasets


def main(argv=None) -> int:
    from genjax.cli import configure_logging, exit_code_for

    configure_logging()
    try:
        args, datasets = parse_args(sys.argv[1:] if argv is None else argv)
        jobs = [(dataset, pack, seed) for dataset in datasets for pack in args.packs for seed in range(args.runs)]
        if args.shard:
            index, count = cli.parse_shard(args.shard, len(jobs), "the table's runs")
            mine = jobs[index::count]
            for job in mine:
                measure(*job, args.steps, args.workdir, args.experiment, args.overrides)
            print(
                f"shard {args.shard}: {len(mine)} of {len(jobs)} runs done in {args.workdir}; once every "
                "shard's run directories are in one workdir, the same command without --shard writes the table"
            )
            return 0
        results = {job: measure(*job, args.steps, args.workdir, args.experiment, args.overrides) for job in jobs}
        table = {
            dataset: {pack: summarize([results[dataset, pack, seed] for seed in range(args.runs)]) for pack in args.packs}
            for dataset in datasets
        }
    except (Exception, KeyboardInterrupt) as error:  # one line and an exit code; finished runs are kept
        return exit_code_for(error)
    configuration = label(args.experiment, args.overrides)
    text = markdown(table, args.runs, args.steps, configuration)
    record = {"configuration": configuration, "runs": args.runs, "steps": args.steps, "table": table}
    write_json_atomically(os.path.join(args.workdir, "pacgan_table.json"), record)
    with open(os.path.join(args.workdir, "pacgan_table.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
