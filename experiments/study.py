"""The study: GAN or VAE (or VQ-VAE, AE, flow), which, when? Every image family gets the same number K of
hyperparameter settings from its declared search space, the same data, batch size and budget, and is
measured at several budget points along its training on several training-set sizes; each family's best
setting is re-trained with more seeds, and the report maps which family wins at which budget and data size
(Lucic et al. 2018, "Are GANs Created Equal?").

    python -m experiments.study --quick                     # the whole pipeline at a tiny size (about 2 min)
    python -m experiments.study                             # the default study
    python -m experiments.study --full                      # K = 32, 3 data sizes, budgets to 16,000 steps
    python -m experiments.study --families vae,gan --settings 8 --budgets 5,10,20 --data_sizes 500,4500
    python -m experiments.study --families gan --settings 16 --reseed_default   # does the search beat the default?
    python -m experiments.study --families all              # every family (those OFF_BY_DEFAULT too, when any are)
    python -m experiments.study --shard 0/4 --workdir runs/study0   # one of 4 slices (a SLURM array task)
    python -m experiments.study --merge runs/study0 runs/study1 runs/study2 runs/study3 --workdir runs/study

Writes study.md, study.html and study.json in --workdir (default runs/study). Rerunning the same command
resumes: finished trials are reused, an interrupted one continues from its last checkpoint. A trial does not
depend on the other families, so a rerun with more (or fewer) --families trains only the families not yet
there and reports the families named.
"""

import argparse
import dataclasses
import sys

from experiments.compare import IMAGE_CONTENDERS
from genjax import cli, xla_flags
from genjax.errors import UserError
from genjax.study import Protocol, merge, study
from genjax.study.plan import UNITS, VECTORIZE, units_of


def study_contenders() -> dict:
    """One contender per image experiment (its first): a family's variants, such as beta_vae, are settings
    of its search space, not families of their own."""
    seen, families = set(), {}
    for name, contender in IMAGE_CONTENDERS.items():
        if contender.experiment not in seen and not contender.config().get("conditional", False):
            seen.add(contender.experiment)
            families[name] = contender
    return families


CONTENDERS = study_contenders()
# Families left out of the default to keep it within 90 minutes on 2 CPU cores ({name: why}), each one --families
# away (`--families all` in the default's workdir trains only them). None: every family fits since the largest
# budget came down (the README's study section has the measured times; at 20 s flow matching's evaluations, 500
# samples by a 40-evaluation ODE and exact likelihoods by ODE solves at each point, had pushed all eleven to 105
# minutes, and at 15 s a run on a slow evening took 98)
OFF_BY_DEFAULT: dict = {}
# Chosen to fit 90 minutes on 2 CPU cores with a margin (the README's study section has the measured time): every
# family but OFF_BY_DEFAULT, K = 6, two data sizes, budget points of equal compute at 3, 6 and 12 s of training.
DEFAULT = Protocol(families=tuple(name for name in CONTENDERS if name not in OFF_BY_DEFAULT))  # and Protocol's defaults
QUICK = dict(
    families=("gan", "vae"),
    num_settings=2,
    budgets=(20.0, 40.0),
    unit="steps",
    data_sizes=(200, 500),
    reseeds=2,
    reseed_default=True,
    num_samples=100,
    iwae_samples=10,
    likelihood_examples=10,
    classifier_steps=100,
)
FULL = dict(
    families=tuple(CONTENDERS),
    num_settings=32,
    data_sizes=(500, 1500, 4500),
    budgets=(1000.0, 2000.0, 4000.0, 8000.0, 16000.0),
    unit="steps",
    reseed_default=True,
    likelihood_examples=100,
)


def _list(kind):
    def parse(text: str) -> tuple:
        try:
            return tuple(kind(part) for part in text.split(",") if part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__} values, got '{text}'") from None

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.study", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    d = DEFAULT
    parser.add_argument("--workdir", default="runs/study")
    parser.add_argument(
        "--families",
        type=_list(str),
        default=None,
        help=f"families ({','.join(CONTENDERS)}), or all; default "
        + (f"all but {','.join(OFF_BY_DEFAULT)}" if OFF_BY_DEFAULT else "all")
        + ". In a finished study's "
        "workdir, more families train only the new ones",
    )
    parser.add_argument("--dataset", default=d.dataset, help="image dataset (the embedded MNIST subset offline)")
    parser.add_argument("--settings", type=int, default=None, help=f"K, settings per family (default {d.num_settings})")
    parser.add_argument(
        "--budgets", type=_list(float), default=None, help=f"budget points, ascending (default {','.join(f'{b:g}' for b in d.budgets)})"
    )
    parser.add_argument("--unit", choices=UNITS, default=None, help=f"budget unit (default {d.unit}: equal compute)")
    parser.add_argument(
        "--data_sizes", type=_list(int), default=None, help=f"training-set sizes (default {','.join(map(str, d.data_sizes))})"
    )
    parser.add_argument("--reseeds", type=int, default=None, help=f"extra seeds of each best setting (default {d.reseeds})")
    parser.add_argument(
        "--reseed_default",
        action="store_true",
        default=None,
        help="re-seed the default setting at every budget point too, to judge the search against it on the same seeds "
        "(on in --quick and --full)",
    )
    parser.add_argument("--search_seed", type=int, default=d.search_seed, help="the seed of the search and of the settings drawn")
    parser.add_argument("--num_samples", type=int, default=None, help=f"samples per evaluation (default {d.num_samples})")
    parser.add_argument(
        "--vectorize",
        choices=VECTORIZE,
        default=None,
        help="search settings as vectorized groups: vmap or unroll (one program per group), off (one at a time); "
        "default auto: vmap on accelerators; on CPU each family's declared choice (vmap: "
        + (",".join(name for name, c in CONTENDERS.items() if c.cpu_vectorize == "vmap") or "none")
        + "; the rest one at a time, measured faster there)",
    )
    parser.add_argument("--quick", action="store_true", help="the whole pipeline at a tiny size (tests)")
    parser.add_argument("--full", action="store_true", help="the large protocol: K = 32, 3 data sizes, budgets to 16,000 steps")
    parser.add_argument("--shard", default=None, help="i/n: run units i, i+n, ... only (merge the slices with --merge)")
    parser.add_argument("--merge", nargs="+", default=None, metavar="DIR", help="build the report from these slices' workdirs")
    return parser


def parse_args(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick and args.full:
        raise UserError("give --quick or --full, not both")
    if args.merge:  # merging reads the protocol from the slices' plans: any other flag but --workdir would be ignored
        if args.shard:
            raise UserError("--shard runs one slice and --merge builds the report from finished slices: give one of them, not both")
        defaults = vars(parser.parse_args([]))
        ignored = [f"--{name}" for name, value in vars(args).items() if name not in ("merge", "workdir") and value != defaults[name]]
        if ignored:
            raise UserError(
                f"--merge takes the protocol from the slices' own plans, so {', '.join(ignored)} would be ignored; drop {'them' if len(ignored) > 1 else 'it'}"
            )
    values = dict(QUICK if args.quick else FULL if args.full else {})
    given = dict(
        families=tuple(CONTENDERS) if args.families == ("all",) else args.families,
        dataset=args.dataset,
        num_settings=args.settings,
        budgets=args.budgets,
        unit=args.unit,
        data_sizes=args.data_sizes,
        reseeds=args.reseeds,
        reseed_default=args.reseed_default,
        search_seed=args.search_seed,
        num_samples=args.num_samples,
        vectorize=args.vectorize,
    )
    values.update({k: v for k, v in given.items() if v is not None})
    return args, dataclasses.replace(DEFAULT, **values)


def main(argv=None) -> int:
    cli.configure_logging()
    try:
        args, protocol = parse_args(sys.argv[1:] if argv is None else argv)
        if args.merge:
            paths = merge(args.merge, args.workdir, CONTENDERS)
        else:
            shard = cli.parse_shard(args.shard, len(units_of(protocol)), "the study's units") if args.shard else (0, 1)
            paths = study(protocol, CONTENDERS, args.workdir, shard)
    except (Exception, KeyboardInterrupt) as error:  # one line and an exit code; finished trials are kept
        return cli.exit_code_for(error)
    if paths is None:
        print(f"slice {args.shard} done in {args.workdir}; build the report with --merge")
    else:
        print(f"study: {paths['markdown']}, {paths['html']} and {paths['json']}")
    return 0


if __name__ == "__main__":
    # one CPU device per core, before anything computes, for groups to spread their trials over (the command
    # only: an in-process caller's JAX may be running already, and its environment is its own)
    xla_flags.add_host_devices()
    sys.exit(main())
