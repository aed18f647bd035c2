"""Train several model families on the same data with the same budget and several seeds, measure each with
the same metrics, and write the report: the engine behind `python -m experiments.compare`.

The contenders come from the experiments (each experiment module declares its CONTENDERS; see
genjax.experiment.Contender): the library takes them as given. The comparison sets what must be equal for
all (dataset, batch size, budget, seed) and nothing else, so each model keeps the optimizer and
architecture its own experiment documents. A budget is either
    steps    every model trains this many steps (one step = one batch; a GAN step updates D, then G; with
             WGAN-GP's n_critic 5 the generator takes steps / 5 of them), or
    seconds  every model trains for this many seconds of measured training time (compilation excluded;
             genjax's time_budget, which stops within one chunk of steps).
A model trained in stages gives each stage its declared share of the budget (Stage.budget_share): in
steps, share x steps (the VQ-VAE's prior: half, on top of the VQ-VAE's); in seconds, the seconds split
in proportion to the shares.

Training is one fit that stops at the end of each of `segments` equal parts of the budget
(genjax.train.BudgetPoints, as the study's trials); at each but the last the Frechet distance of
`curve_samples` samples gives the curve over training. A model of several stages trains in one go, so its
curve has only its final point. The trained states stay in memory for the evaluation and the figures.

Each model's record is kept in its run directory (compare_record.json): rerunning the same command reuses
finished models and resumes an interrupted one from its last checkpoint.
"""

import dataclasses
import json
import logging
import math
import os

import jax

from genjax import data, experiment, report
from genjax.compilation_cache import enable_compilation_cache
from genjax.errors import UserError
from genjax.evaluate import EVALUATION_MINIMUMS, check_minimums, draw_samples, evaluate_result, load_run
from genjax.metrics import registry, sample_quality
from genjax.metrics.classifier import images_of, load_classifier
from genjax.metrics.frechet import frechet_distance_between
from genjax.report_figures import interpolation_figure
from genjax.train import BudgetPoints, TrainingDiverged
from genjax.train.rundir import write_json_atomically

log = logging.getLogger("genjax")
UNLIMITED_STEPS = 10**9
MIXTURES = ("ring8", "grid25")  # the 2-D datasets with modes to count


@dataclasses.dataclass(frozen=True)
class Budget:
    """What every model gets: `steps` training steps or `seconds` of training, at one batch size."""

    steps: int = 0
    seconds: float = 0.0
    batch_size: int = 64
    segments: int = 2

    def describe(self) -> str:
        amount = f"{self.steps:,} steps" if self.steps else f"{self.seconds:g} s of training"
        return f"{amount} per model at batch size {self.batch_size}, in {self.segments} segment(s)"


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a comparison needs; `experiments.compare` builds it from the command line.

    contenders / toy_contenders: {name: genjax.experiment.Contender} on images / on the 2-D mixtures;
    models / toy_models: the names of those to run (None: all of them).
    """

    contenders: dict = dataclasses.field(default_factory=dict)
    toy_contenders: dict = dataclasses.field(default_factory=dict)
    workdir: str = "runs/compare"
    models: tuple | None = None
    dataset: str = "mnist"
    budget: Budget = Budget(steps=1000)
    seeds: tuple = (0, 1)
    toy_models: tuple | None = None
    toy_datasets: tuple = MIXTURES
    toy_budget: Budget = Budget(steps=3000, batch_size=256, segments=1)
    num_samples: int = 1000
    curve_samples: int = 500
    iwae_samples: int = 5000
    likelihood_examples: int = 100
    classifier_steps: int = 1500

    def __post_init__(self):
        if self.models is None:
            object.__setattr__(self, "models", tuple(self.contenders))
        if self.toy_models is None:
            object.__setattr__(self, "toy_models", tuple(self.toy_contenders))

    def check(self) -> None:
        """Raise UserError for anything the comparison cannot run, before any training."""
        lists = (
            (self.models, self.contenders, "model", "--models"),
            (self.toy_models, self.toy_contenders, "toy model", "--toy_models"),
            (self.toy_datasets, MIXTURES, "toy dataset", "--toy_datasets"),
        )
        for names, known, what, flag in lists:
            for name in names:
                if name not in known:
                    raise UserError(f"unknown {what} '{name}'; choose from {', '.join(known)}")
            if len(set(names)) != len(names):  # a name twice would count one run as two seeds
                twice = next(name for name in names if names.count(name) > 1)
                raise UserError(f"{what} '{twice}' is named twice in {flag}; name each once")
        if self.dataset not in data.DATASETS or self.dataset in data.TOY_DATASETS:
            raise UserError(f"unknown image dataset '{self.dataset}'; choose an image dataset of genjax.data.DATASETS")
        for budget, what, flags in (
            (self.budget, "image models'", "--steps or --seconds"),
            (self.toy_budget, "2-D models'", "--toy_steps"),
        ):
            if (budget.steps > 0) == (budget.seconds > 0) or budget.steps < 0 or budget.seconds < 0 or not math.isfinite(budget.seconds):
                raise UserError(
                    f"the {what} budget must be a positive number of steps or a finite positive number of seconds ({flags}), "
                    f"got steps={budget.steps} seconds={budget.seconds:g}"
                )
            if budget.batch_size <= 0 or budget.segments <= 0:
                raise UserError(f"batch size and segments must be positive, got {budget.batch_size} and {budget.segments}")
        if not self.seeds or any(seed < 0 for seed in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        minimums = {**EVALUATION_MINIMUMS, "curve_samples": 10}  # every one but likelihood_examples is a flag of compare
        check_minimums(self, minimums, flags=set(minimums) - {"likelihood_examples"})
        if not self.models and not self.toy_models:
            raise UserError("nothing to compare: give at least one model or toy model")


def split_budget(config, stage, stages: tuple, steps: float = 0, seconds: float = 0.0):
    """Give one stage its share of a budget of `steps` (each stage share x steps) or of `seconds` (split in
    proportion to the shares): sets config.num_steps and config.time_budget; returns the config."""
    if steps:
        config.num_steps, config.time_budget = max(1, round(steps * stage.budget_share)), 0.0
    else:
        config.num_steps = UNLIMITED_STEPS
        config.time_budget = seconds * stage.budget_share / sum(s.budget_share for s in stages)
    return config


def budget_for(budget: Budget, fraction: float, stages: tuple):
    """adjust(stage, config) for genjax.experiment.run_stages: `fraction` of the budget, split over the stages."""

    def adjust(stage, config):
        split_budget(config, stage, stages, budget.steps * fraction, budget.seconds * fraction)
        # evaluate and checkpoint at the end of each segment only (the engine always does both at the last step)
        config.eval_every = config.checkpoint_every = UNLIMITED_STEPS if budget.seconds else max(1, budget.steps)
        return config

    return adjust


def contender_config(contender, dataset: str, seed: int, batch_size: int):
    """The contender's config with what the comparison holds equal: dataset, seed and batch size."""
    config = contender.config()
    config.update(dict(dataset=dataset, seed=seed, batch_size=batch_size))
    return config


def train_contender(contender, budget: Budget, dataset: str, seed: int, workdir: str, after_segment=None) -> list:
    """Train one model through its segments; returns the FitResults of its stages.

    A one-stage model trains in one fit that stops at each segment's end (genjax.train.BudgetPoints): its programs
    are built, traced and compiled once, where a fit per segment, each resuming the last, did all of that again
    (half the quick comparison's tracing). after_segment(segment, family, state, train_seconds) is called at each
    end but the last (the curve over training). A model of several stages trains its whole budget in one go.
    """
    config = contender_config(contender, dataset, seed, budget.batch_size)
    stages = contender.stages
    if len(stages) > 1 or budget.segments == 1:
        return experiment.run_stages(config, workdir, contender.experiment, stages, budget_for(budget, 1.0, stages))
    # each segment's end as a fit with that part of the budget would have it (its steps, or its time budget)
    ends = [
        experiment.stage_configs(config.copy_and_resolve_references(), workdir, stages, budget_for(budget, k / budget.segments, stages))[0]
        for k in range(1, budget.segments + 1)
    ]
    reached = []

    def at_end(family, state, steps, train_seconds, flops_per_step):
        # the fit stops at every end, also at those it resumed past, with the state it resumed: one curve point for them
        fresh = not reached or steps > reached[-1]
        reached.append(steps)
        if fresh and len(reached) < len(ends) and after_segment:
            after_segment(len(reached), family, state, train_seconds)

    points = BudgetPoints(tuple(c.time_budget or c.num_steps for c in ends), at_end)
    return [experiment.fit_one(ends[-1], experiment.stage_dir(workdir, stages[0]), contender.experiment, points)]


def _train_seconds(summaries: list[dict]) -> float:
    return sum(s.get("total_train_seconds", s["train_seconds"]) for s in summaries)


def measure_contender(contender, budget: Budget, dataset: str, seed: int, workdir: str, settings: Settings, classifier, key):
    """Train (or resume) one model and evaluate it; returns (its record for the report, its FitResult or None
    when the record was reused or the run diverged)."""
    record_path = os.path.join(workdir, "compare_record.json")
    identity = {
        "model": contender.name,
        "experiment": contender.experiment,
        "overrides": contender.overrides,
        "dataset": dataset,
        "seed": seed,
        "budget": dataclasses.asdict(budget),
        "num_samples": settings.num_samples,
        "iwae_samples": settings.iwae_samples,
        "likelihood_examples": settings.likelihood_examples,
    }
    if os.path.exists(record_path):
        with open(record_path) as f:
            record = json.load(f)
        if record.get("identity") == identity:
            log.info("%s seed %d on %s: reusing the finished run in %s", contender.name, seed, dataset, workdir)
            return record, None
    train, test = experiment.load_data(contender_config(contender, dataset, seed, budget.batch_size))
    kinds = sorted(registry.data_kinds(test.data_key, test.name))
    curve = []

    def curve_point(segment, family, state, train_seconds):
        """The Frechet distance only: the curve needs no precision, recall or KID."""
        fakes = draw_samples(family, state, jax.random.fold_in(key, segment), settings.curve_samples)
        real_features = classifier.embed(images_of(test)[: settings.curve_samples])[0]
        curve.append((train_seconds, frechet_distance_between(real_features, classifier.embed(fakes)[0])))

    log.info("training %s (seed %d) on %s: %s", contender.name, seed, dataset, budget.describe())
    record = {"identity": identity, "model": contender.name, "dataset": dataset, "seed": seed, "workdir": workdir, "kinds": kinds}
    try:
        results = train_contender(contender, budget, dataset, seed, workdir, curve_point if classifier else None)
    except TrainingDiverged as error:
        log.warning("%s seed %d diverged: %s", contender.name, seed, error)
        record.update(metrics={}, diverged=str(error), train_seconds=None, examples_per_s=None, steps=None, curve=curve)
        return record, None
    last, summaries = results[-1], [r.summary for r in results]
    metrics = evaluate_result(last, train, test, key, settings.num_samples, settings.iwae_samples, classifier, settings.likelihood_examples)
    if classifier and "frechet_distance" in metrics:
        curve.append((_train_seconds(summaries), metrics["frechet_distance"]))
    first = summaries[0]
    record.update(
        metrics=metrics,
        train_seconds=_train_seconds(summaries),
        examples_per_s=first["steps"] * budget.batch_size / max(_train_seconds(summaries[:1]), 1e-9),
        steps=first["steps"],
        curve=curve,
    )
    write_json_atomically(record_path, record)
    return record, last


def real_data_floor(classifier, train: data.Dataset, test: data.Dataset, num_samples: int) -> dict:
    """The metrics of held-out real images (the training split's first num_samples) against the test
    split: the best a perfect generator could score with this many samples."""
    return sample_quality(classifier, images_of(test), images_of(train)[:num_samples], test.num_classes)


def floor_text(floor: dict, names) -> str:
    """The floor's metrics `names` as the reports' setup line gives them (genjax.report.metric_text: registry title and format)."""
    return ", ".join(report.metric_text(registry.BY_NAME[name], floor[name]) for name in names)


def _header(settings: Settings, train, test, classifier, floor: dict) -> dict:
    return {
        "dataset": f"{train.name} ({train.source}), {train.num_examples} train / {test.num_examples} test images",
        "budget": settings.budget.describe(),
        "seeds": ", ".join(map(str, settings.seeds)),
        "sample metrics": f"{settings.num_samples} samples against the {test.num_examples} test images, in the features of "
        f"genjax's classifier (test accuracy {classifier.test_accuracy:.3f}, {settings.classifier_steps} steps)",
        "floor (real training images vs test)": floor_text(
            floor, ("frechet_distance", "frechet_distance_infinity", "kid", "precision", "recall", "classes_covered")
        ),
        "NLL bound": f"IWAE with K = {settings.iwae_samples}" if settings.iwae_samples else "not computed",
        "exact NLL": f"over the first {settings.likelihood_examples or test.num_examples} test images",
    }


def compare(settings: Settings) -> dict:
    """Run the whole comparison; returns the paths of report.md and report.html."""
    settings.check()
    os.makedirs(settings.workdir, exist_ok=True)
    enable_compilation_cache()  # before the classifier's programs, not at the first fit (genjax.experiment.fit_one)
    image_records, toy_records, header, trained, test = [], [], {}, {}, None
    if settings.models:
        train = data.load(settings.dataset, "train", seed=0)
        test = data.load(settings.dataset, "test", seed=0)
        classifier = load_classifier(train, test, settings.classifier_steps)
        header = _header(settings, train, test, classifier, real_data_floor(classifier, train, test, settings.num_samples))
        for name in settings.models:
            for seed in settings.seeds:
                workdir = os.path.join(settings.workdir, "runs", settings.dataset, name, f"seed{seed}")
                contender, key = settings.contenders[name], jax.random.PRNGKey(seed)
                record, result = measure_contender(contender, settings.budget, settings.dataset, seed, workdir, settings, classifier, key)
                image_records.append(record)
                if record["metrics"] and name not in trained:  # the first finished seed, for the interpolations
                    trained[name] = (result.family, result.state) if result else load_run(workdir)[1:3]
    for dataset in settings.toy_datasets if settings.toy_models else ():
        for name in settings.toy_models:
            for seed in settings.seeds:
                workdir = os.path.join(settings.workdir, "runs", dataset, name, f"seed{seed}")
                contender, key = settings.toy_contenders[name], jax.random.PRNGKey(seed)
                toy_records.append(measure_contender(contender, settings.toy_budget, dataset, seed, workdir, settings, None, key)[0])
    if toy_records:
        header["toy budget"] = settings.toy_budget.describe()
    header["models"] = "; ".join(f"{n}: {settings.contenders[n].description}" for n in settings.models)
    interpolations = os.path.join(settings.workdir, "fig_interpolations.png")
    drawn = test is not None and interpolation_figure(interpolations, trained, test)
    return report.write_report(settings.workdir, image_records, toy_records, header, interpolations if drawn else None)
