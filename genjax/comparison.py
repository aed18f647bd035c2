"""Train several model families on the same data with the same budget and several seeds, measure each with
the same metrics, and write the report: the engine behind `python -m experiments.compare`.

Every contender is an experiment module of experiments/ with a few config overrides; the comparison sets
what must be equal for all (dataset, batch size, budget, seed) and nothing else, so each model keeps the
optimizer and architecture its own experiment documents. A budget is either
    steps    every model trains this many steps (one step = one batch; a GAN step updates D, then G; with
             WGAN-GP's n_critic 5 the generator takes steps / 5 of them), or
    seconds  every model trains for this many seconds of measured training time (compilation excluded;
             genjax's time_budget, which stops within one chunk of steps).
The VQ-VAE is two models: its VQ-VAE gets the budget and its prior half of it on top in steps (the
experiment's own 2:1 ratio), or each half of it in seconds.

Training runs in `segments` equal parts of the budget, each resuming the last (the engine's resume is
exact, so the result equals one uninterrupted run); after each part the Frechet distance of
`curve_samples` samples gives the curve over training. The VQ-VAE's prior is trained after the VQ-VAE,
so its curve has only its final point.

Each model's record is kept in its run directory (compare_record.json): rerunning the same command reuses
finished models and resumes an interrupted one from its last checkpoint.
"""

import dataclasses
import importlib
import json
import logging
import math
import os

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from genjax import data, experiment, report  # noqa: E402
from genjax.errors import UserError  # noqa: E402
from genjax.evaluate import draw_samples, evaluate_state, load_run  # noqa: E402
from genjax.metrics import sample_quality  # noqa: E402
from genjax.metrics.classifier import images_of, load_classifier  # noqa: E402
from genjax.train import TrainingDiverged  # noqa: E402

log = logging.getLogger("genjax")
UNLIMITED_STEPS = 10**9


@dataclasses.dataclass(frozen=True)
class Contender:
    """One row of the report: experiments.<experiment> with config overrides."""

    experiment: str
    overrides: dict = dataclasses.field(default_factory=dict)
    description: str = ""


IMAGE_CONTENDERS = {
    "ae": Contender("ae_mnist", {}, "autoencoder, samples from a Gaussian fit of its codes (Ghosh et al. 2020)"),
    "vae": Contender("vae_mnist", {}, "VAE (Kingma & Welling 2014)"),
    "beta_vae": Contender("vae_mnist", {"beta": 4.0}, "beta-VAE, beta = 4 (Higgins et al. 2017)"),
    "vqvae": Contender("vqvae_mnist", {}, "VQ-VAE + transformer prior (van den Oord et al. 2017)"),
    "gan": Contender("gan_mnist", {}, "MLP GAN, non-saturating loss (Goodfellow et al. 2014)"),
    "dcgan": Contender("dcgan_mnist", {}, "DCGAN (Radford et al. 2016)"),
    "wgan_gp": Contender("wgan_gp_mnist", {}, "WGAN-GP, n_critic 5 (Gulrajani et al. 2017)"),
    "sngan": Contender("sngan_mnist", {}, "hinge loss + spectral norm (Miyato et al. 2018)"),
}
TOY_CONTENDERS = {
    "vae": Contender("vae_toy2d", {}, "MLP VAE, 2-D latent, Gaussian decoder, KL warm-up"),
    "gan": Contender("gan_toy2d", {}, "MLP GAN, non-saturating loss"),
    "wgan_gp": Contender(
        "gan_toy2d",
        {"loss": "wasserstein_gp", "n_critic": 5, "learning_rate": 1e-4, "adam_b1": 0.5, "adam_b2": 0.9},
        "MLP WGAN-GP, n_critic 5",
    ),
    "sngan": Contender("gan_toy2d", {"loss": "hinge", "discriminator_norm": "spectral"}, "MLP GAN, hinge loss + spectral norm"),
}
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
    """Everything a comparison needs; `experiments.compare` builds it from the command line."""

    workdir: str = "runs/compare"
    models: tuple = tuple(IMAGE_CONTENDERS)
    dataset: str = "mnist"
    budget: Budget = Budget(steps=1000)
    seeds: tuple = (0, 1)
    toy_models: tuple = tuple(TOY_CONTENDERS)
    toy_datasets: tuple = MIXTURES
    toy_budget: Budget = Budget(steps=3000, batch_size=256, segments=1)
    num_samples: int = 1000
    curve_samples: int = 500
    iwae_samples: int = 5000
    classifier_steps: int = 1500

    def check(self) -> None:
        """Raise UserError for anything the comparison cannot run, before any training."""
        for name in self.models:
            if name not in IMAGE_CONTENDERS:
                raise UserError(f"unknown model '{name}'; choose from {', '.join(IMAGE_CONTENDERS)}")
        for name in self.toy_models:
            if name not in TOY_CONTENDERS:
                raise UserError(f"unknown toy model '{name}'; choose from {', '.join(TOY_CONTENDERS)}")
        for name in self.toy_datasets:
            if name not in MIXTURES:
                raise UserError(f"unknown toy dataset '{name}'; choose from {', '.join(MIXTURES)}")
        if self.dataset not in data.DATASETS or self.dataset in data.TOY_DATASETS:
            raise UserError(f"unknown image dataset '{self.dataset}'; choose an image dataset of genjax.data.DATASETS")
        for budget in (self.budget, self.toy_budget):
            if (budget.steps > 0) == (budget.seconds > 0) or budget.steps < 0 or budget.seconds < 0 or not math.isfinite(budget.seconds):
                raise UserError("give the budget as a positive number of steps or of seconds, not both")
            if budget.batch_size <= 0 or budget.segments <= 0:
                raise UserError(f"batch size and segments must be positive, got {budget.batch_size} and {budget.segments}")
        if not self.seeds or any(seed < 0 for seed in self.seeds) or len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds must be distinct non-negative integers, got {list(self.seeds)}")
        if min(self.num_samples, self.curve_samples) < 10 or self.iwae_samples < 0 or self.classifier_steps <= 0:
            raise UserError("num_samples and curve_samples must be >= 10, iwae_samples >= 0 and classifier_steps > 0")
        if not self.models and not self.toy_models:
            raise UserError("nothing to compare: give at least one model or toy model")


def contender_config(contender: Contender, budget: Budget, dataset: str, seed: int, fraction: float):
    """The experiment's config with the comparison's dataset, seed, batch size and `fraction` of the budget."""
    module = importlib.import_module(f"experiments.{contender.experiment}")
    config = module.get_config()
    unknown = [field for field in contender.overrides if field not in config]
    if unknown:
        raise UserError(f"experiment {contender.experiment} has no config field {unknown[0]}")
    config.update(contender.overrides)
    config.update(dict(dataset=dataset, seed=seed, batch_size=budget.batch_size))
    two_stage = "prior_num_steps" in config
    if budget.steps:
        config.num_steps = max(1, round(budget.steps * fraction))
        config.time_budget = 0.0
        if two_stage:
            config.prior_num_steps = max(1, budget.steps // 2)
    else:
        config.num_steps = UNLIMITED_STEPS
        config.time_budget = budget.seconds * fraction / (2 if two_stage else 1)
        if two_stage:
            config.prior_num_steps = UNLIMITED_STEPS
    # evaluate and checkpoint at the end of each segment only (the engine always does both at the last step)
    config.eval_every = config.checkpoint_every = UNLIMITED_STEPS if budget.seconds else max(1, budget.steps)
    return module, config


def train_contender(contender: Contender, budget: Budget, dataset: str, seed: int, workdir: str, after_segment=None) -> list[dict]:
    """Train one model in its segments; returns the summaries of the runs it consists of (VQ-VAE: two).

    after_segment(segment) is called after each segment but the last (for the curve over training).
    """
    two_stage = "prior_num_steps" in importlib.import_module(f"experiments.{contender.experiment}").get_config()
    segments = 1 if two_stage else budget.segments  # a two-stage model trains its whole budget in one go
    for segment in range(1, segments + 1):
        module, config = contender_config(contender, budget, dataset, seed, segment / segments)
        run = getattr(module, "run", None) or experiment.run
        run(config, workdir, contender.experiment)
        if segment < segments and after_segment:
            after_segment(segment)
    summaries = [_read_json(os.path.join(workdir, "summary.json"))]
    if two_stage:
        summaries.insert(0, _read_json(os.path.join(workdir, "vqvae", "summary.json")))
    return summaries


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _train_seconds(summaries: list[dict]) -> float:
    return sum(s.get("total_train_seconds", s["train_seconds"]) for s in summaries)


def measure_contender(
    name: str, contender: Contender, budget: Budget, dataset: str, seed: int, workdir: str, settings: Settings, classifier, key
) -> dict:
    """Train (or resume) one model and evaluate it; returns its record for the report."""
    record_path = os.path.join(workdir, "compare_record.json")
    identity = {
        "model": name,
        "experiment": contender.experiment,
        "overrides": contender.overrides,
        "dataset": dataset,
        "seed": seed,
        "budget": dataclasses.asdict(budget),
        "num_samples": settings.num_samples,
        "iwae_samples": settings.iwae_samples,
    }
    if os.path.exists(record_path):
        record = _read_json(record_path)
        if record.get("identity") == identity:
            log.info("%s seed %d on %s: reusing the finished run in %s", name, seed, dataset, workdir)
            return record
    curve = []

    def curve_point(segment):
        config, family, state, train, test = load_run(workdir)
        fakes = draw_samples(family, state, jax.random.fold_in(key, segment), settings.curve_samples)
        quality = sample_quality(classifier, images_of(test)[: settings.curve_samples], fakes, test.num_classes)
        curve.append((_train_seconds([_read_json(os.path.join(workdir, "summary.json"))]), quality["frechet_distance"]))

    log.info("training %s (seed %d) on %s: %s", name, seed, dataset, budget.describe())
    record = {"identity": identity, "model": name, "dataset": dataset, "seed": seed, "workdir": workdir}
    try:
        summaries = train_contender(contender, budget, dataset, seed, workdir, curve_point if classifier else None)
    except TrainingDiverged as error:
        log.warning("%s seed %d diverged: %s", name, seed, error)
        record.update(metrics={}, diverged=str(error), train_seconds=None, examples_per_s=None, steps=None, curve=curve)
        return record
    config, family, state, train, test = load_run(workdir)
    metrics = evaluate_state(family, state, config, train, test, key, settings.num_samples, settings.iwae_samples, classifier=classifier)
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
    with open(record_path + ".tmp", "w") as f:
        json.dump(record, f, indent=1, default=float)
    os.replace(record_path + ".tmp", record_path)
    return record


def interpolation_figure(path: str, records: list[dict], num_points: int = 9) -> bool:
    """Decoded straight lines in latent space between two test images of different classes, one row per
    encoder model (its first seed): how smoothly each representation moves from one digit to another."""
    rows, labels = [], []
    for name, runs in report.group(records).items():
        run = next((r for r in runs if r["metrics"]), None)
        if run is None:
            continue
        config, family, state, train, test = load_run(run["workdir"])
        if family.encode is None or family.decode is None or test.data_key != "image":
            continue
        labels_of_test = test.arrays["label"]
        pair = np.array([np.flatnonzero(labels_of_test == label)[0] for label in (1, 7) if np.any(labels_of_test == label)])
        pair = pair if len(pair) == 2 else np.array([0, 1])
        batch = data.to_model_batch(test.take(pair))
        codes = np.asarray(jax.jit(family.encode)(state, batch))
        weights = np.linspace(0.0, 1.0, num_points).reshape(-1, *[1] * (codes.ndim - 1))
        line = (1 - weights) * codes[:1] + weights * codes[1:]
        decoded = np.asarray(jax.jit(family.decode)(state, line.astype(np.float32)))
        rows.append(np.concatenate([np.asarray(batch["image"][:1]), decoded, np.asarray(batch["image"][1:])]))
        labels.append(name)
    if not rows:
        return False
    fig, axes = plt.subplots(len(rows), num_points + 2, figsize=(1.1 * (num_points + 2), 1.25 * len(rows)), squeeze=False)
    for row_axes, images, label in zip(axes, rows, labels):
        for column, (ax, image) in enumerate(zip(row_axes, images)):
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=9)
    axes[0][0].set_title("test image", fontsize=8)
    axes[0][-1].set_title("test image", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def real_data_floor(classifier, train: data.Dataset, test: data.Dataset, num_samples: int) -> dict:
    """The metrics of held-out real images (the training split's first num_samples) against the test
    split: the best a perfect generator could score with this many samples."""
    return sample_quality(classifier, images_of(test), images_of(train)[:num_samples], test.num_classes)


def compare(settings: Settings) -> dict:
    """Run the whole comparison; returns the paths of report.md and report.html."""
    settings.check()
    os.makedirs(settings.workdir, exist_ok=True)
    image_records, toy_records, header = [], [], {}
    if settings.models:
        train = data.load(settings.dataset, "train", seed=0)
        test = data.load(settings.dataset, "test", seed=0)
        classifier = load_classifier(train, test, settings.classifier_steps)
        floor = real_data_floor(classifier, train, test, settings.num_samples)
        header.update(
            {
                "dataset": f"{train.name} ({train.source}), {train.num_examples} train / {test.num_examples} test images",
                "budget": settings.budget.describe(),
                "seeds": ", ".join(map(str, settings.seeds)),
                "sample metrics": f"{settings.num_samples} samples against the {test.num_examples} test images, in the features of "
                f"genjax's classifier (test accuracy {classifier.test_accuracy:.3f}, {settings.classifier_steps} steps)",
                "floor (real training images vs test)": f"Frechet distance {floor['frechet_distance']:.2f}, precision "
                f"{floor['precision']:.2f}, recall {floor['recall']:.2f}, "
                f"classes covered {floor['classes_covered']:.0f}",
                "NLL bound": f"IWAE with K = {settings.iwae_samples}" if settings.iwae_samples else "not computed",
            }
        )
        for name in settings.models:
            contender = IMAGE_CONTENDERS[name]
            for seed in settings.seeds:
                workdir = os.path.join(settings.workdir, "runs", settings.dataset, name, f"seed{seed}")
                image_records.append(
                    measure_contender(
                        name, contender, settings.budget, settings.dataset, seed, workdir, settings, classifier, jax.random.PRNGKey(seed)
                    )
                )
    for dataset in settings.toy_datasets if settings.toy_models else ():
        for name in settings.toy_models:
            for seed in settings.seeds:
                workdir = os.path.join(settings.workdir, "runs", dataset, name, f"seed{seed}")
                toy_records.append(
                    measure_contender(
                        name, TOY_CONTENDERS[name], settings.toy_budget, dataset, seed, workdir, settings, None, jax.random.PRNGKey(seed)
                    )
                )
    if toy_records:
        header["toy budget"] = settings.toy_budget.describe()
    header["models"] = "; ".join(f"{n}: {IMAGE_CONTENDERS[n].description}" for n in settings.models)
    interpolations = os.path.join(settings.workdir, "fig_interpolations.png")
    has_interpolations = interpolation_figure(interpolations, image_records)
    return report.write_report(settings.workdir, image_records, toy_records, header, interpolations if has_interpolations else None)
