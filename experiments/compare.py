"""GAN or VAE (or VQ-VAE, or a plain AE)? Train each on the same data with the same budget and several
seeds, measure them all the same way, and write report.md and report.html (tables, figures and a "when to
use which" paragraph computed from the numbers).

    python -m experiments.compare                              # the default comparison (about 27 min on 2 CPU cores)
    python -m experiments.compare --quick                      # every model at a tiny budget, about 3 minutes
    python -m experiments.compare --models vae,dcgan --seconds 60 --seeds 0,1,2
    python -m experiments.compare --toy_models= --steps 3000   # images only

Runs, records and the report go to --workdir (default runs/compare); rerunning the same command reuses
finished models and resumes an interrupted one. See genjax/comparison.py for what is held equal.
"""

import argparse
import dataclasses
import importlib
import sys

from experiments.__main__ import names as experiment_names
from genjax.comparison import MIXTURES, Budget, Settings, compare
from genjax.data import TOY_DATASETS
from genjax.errors import UserError
from genjax.experiment import contenders_of


def contenders() -> tuple[dict, dict]:
    """({name: Contender} on images, {name: Contender} on the 2-D datasets): every CONTENDERS entry of every
    experiment module, split by the dataset its config trains on, in the order of their model families."""
    image, toy = {}, {}
    for experiment in experiment_names():
        module = importlib.import_module(f"experiments.{experiment}")
        for contender in contenders_of(module, experiment):
            kind = toy if contender.config().dataset in TOY_DATASETS else image
            if contender.name in kind:
                raise ValueError(
                    f"two experiments declare the contender '{contender.name}': {kind[contender.name].experiment} and {experiment}"
                )
            kind[contender.name] = contender

    def by_family(contenders: dict) -> dict:  # the report's rows grouped by model family
        return dict(sorted(contenders.items(), key=lambda item: item[1].config().model))

    return by_family(image), by_family(toy)


IMAGE_CONTENDERS, TOY_CONTENDERS = contenders()
DEFAULT = Settings(IMAGE_CONTENDERS, TOY_CONTENDERS)
QUICK = dict(
    steps=20,
    toy_steps=100,
    seeds=(0,),
    segments=2,
    num_samples=100,
    curve_samples=50,
    iwae_samples=20,
    likelihood_examples=10,
    classifier_steps=100,
)


def _names(text: str) -> tuple:
    return tuple(name for name in text.split(",") if name)


def _seeds(text: str) -> tuple:
    try:
        return tuple(int(seed) for seed in text.split(",") if seed)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got '{text}'") from None


def parse_settings(argv) -> Settings:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.compare", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workdir", default=DEFAULT.workdir)
    parser.add_argument("--models", type=_names, default=DEFAULT.models, help=f"image models ({','.join(IMAGE_CONTENDERS)})")
    parser.add_argument("--dataset", default=DEFAULT.dataset, help="image dataset (embedded MNIST subset offline)")
    parser.add_argument("--steps", type=int, default=None, help=f"training steps per model (default {DEFAULT.budget.steps})")
    parser.add_argument("--seconds", type=float, default=None, help="or: seconds of training per model (compilation excluded)")
    parser.add_argument("--batch_size", type=int, default=DEFAULT.budget.batch_size, help="batch size of every image model")
    parser.add_argument("--seeds", type=_seeds, default=DEFAULT.seeds, help="comma-separated seeds, each a full run of every model")
    parser.add_argument("--segments", type=int, default=DEFAULT.budget.segments, help="points of the Frechet distance curve over training")
    parser.add_argument(
        "--toy_models", type=_names, default=DEFAULT.toy_models, help=f"2-D models ({','.join(TOY_CONTENDERS)}; empty: none)"
    )
    parser.add_argument("--toy_datasets", type=_names, default=DEFAULT.toy_datasets, help=f"2-D mixtures ({','.join(MIXTURES)})")
    parser.add_argument(
        "--toy_steps",
        type=int,
        default=DEFAULT.toy_budget.steps,
        help=f"training steps of the 2-D models (batch {DEFAULT.toy_budget.batch_size})",
    )
    parser.add_argument("--num_samples", type=int, default=DEFAULT.num_samples, help="samples per model for the sample-quality metrics")
    parser.add_argument("--curve_samples", type=int, default=DEFAULT.curve_samples, help="samples per point of the curve over training")
    parser.add_argument("--iwae_samples", type=int, default=DEFAULT.iwae_samples, help="K of the IWAE likelihood bound (0: skip)")
    parser.add_argument(
        "--likelihood_examples", type=int, default=DEFAULT.likelihood_examples, help="test images for an exact likelihood (0: all)"
    )
    parser.add_argument("--classifier_steps", type=int, default=DEFAULT.classifier_steps, help="training steps of the feature classifier")
    parser.add_argument(
        "--quick", action="store_true", help="tiny budgets and sample counts: a smoke run in a few minutes (a flag given with it wins)"
    )
    if parser.parse_known_args(argv)[0].quick:  # its sizes become the defaults, so that a flag given beside it still counts
        parser.set_defaults(**{field: value for field, value in QUICK.items() if field != "steps"})
    args = parser.parse_args(argv)
    if args.steps is not None and args.seconds is not None:
        raise UserError("give the budget as --steps or --seconds, not both")
    default_steps = QUICK["steps"] if args.quick else DEFAULT.budget.steps
    steps = 0 if args.seconds is not None else (args.steps if args.steps is not None else default_steps)
    return Settings(
        contenders=IMAGE_CONTENDERS,
        toy_contenders=TOY_CONTENDERS,
        workdir=args.workdir,
        models=args.models,
        dataset=args.dataset,
        budget=Budget(steps=steps, seconds=args.seconds or 0.0, batch_size=args.batch_size, segments=args.segments),
        seeds=args.seeds,
        toy_models=args.toy_models,
        toy_datasets=args.toy_datasets,
        toy_budget=dataclasses.replace(DEFAULT.toy_budget, steps=args.toy_steps),
        num_samples=args.num_samples,
        curve_samples=args.curve_samples,
        iwae_samples=args.iwae_samples,
        likelihood_examples=args.likelihood_examples,
        classifier_steps=args.classifier_steps,
    )


def main(argv=None) -> int:
    from genjax.cli import configure_logging, exit_code_for

    configure_logging()
    try:
        paths = compare(parse_settings(sys.argv[1:] if argv is None else argv))
    except (Exception, KeyboardInterrupt) as error:  # one line and an exit code; finished models are kept
        return exit_code_for(error)
    print(f"report: {paths['markdown']} and {paths['html']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
