"""Evaluate a trained model with every metric it supports; `python -m genjax.evaluate RUN_DIR` does it for any
finished (or interrupted) run directory, from its latest checkpoint, and writes RUN_DIR/eval.json.

    python -m genjax.evaluate runs/vae_mnist [--num_samples 1000] [--iwae_samples 5000] [--seed 0]

Which metrics a model gets follows from the registry (genjax.metrics.registry): each metric names the
capability it needs and the data it is defined on, and each suite below computes a group of them. Every
model also gets its family's own test metrics (eval_step) and its number of parameters. The run directory
alone is enough: its config.json names the model family and holds every field (no experiment module is
imported).
"""

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable

import jax
import numpy as np

from genjax import data, models
from genjax.checkpoint import Checkpoints
from genjax.compilation_cache import enable_compilation_cache
from genjax.config import config_from_dict
from genjax.errors import EXIT_BAD_INPUT, UserError
from genjax.metrics import registry, sample_quality
from genjax.metrics.classifier import NUM_STEPS as CLASSIFIER_STEPS
from genjax.metrics.classifier import images_of, load_classifier
from genjax.metrics.likelihood import importance_weighted_bound
from genjax.metrics.modes import NUM_SAMPLES as MODE_SAMPLES
from genjax.metrics.modes import mode_coverage
from genjax.train.evaluation import make_evaluate
from genjax.train.family import count_params
from genjax.train.parallel import make_mesh, replicated

SAMPLE_BATCH = 500


@dataclasses.dataclass
class Context:
    """What a suite may use: the trained model, its data, a key and the evaluation's settings."""

    family: object
    state: object
    train: data.Dataset
    test: data.Dataset
    key: jax.Array
    num_samples: int = 1000
    iwae_samples: int = 5000
    classifier: object = None
    classifier_steps: int = CLASSIFIER_STEPS
    likelihood_examples: int = 0
    on_samples: Callable | None = None

    def get_classifier(self):
        if self.classifier is None:
            self.classifier = load_classifier(self.train, self.test, self.classifier_steps)
        return self.classifier


def draw_samples(family, state, key, n: int) -> np.ndarray:
    """n samples, drawn in batches of SAMPLE_BATCH with keys fold_in(key, batch number)."""
    sample = jax.jit(family.sample, static_argnums=2)
    batches = [
        np.asarray(sample(state, jax.random.fold_in(key, i), min(SAMPLE_BATCH, n - start)))
        for i, start in enumerate(range(0, n, SAMPLE_BATCH))
    ]
    return np.concatenate(batches)


def _test_batches(test: data.Dataset, size: int = SAMPLE_BATCH, limit: int = 0):
    """(start, batch) over the test set, or over its first `limit` examples when limit > 0."""
    end = min(limit, test.num_examples) if limit > 0 else test.num_examples
    for start in range(0, end, size):
        yield start, data.to_model_batch(test.take(np.arange(start, min(start + size, end))))


def _sample_quality(ctx: Context) -> dict:
    classifier = ctx.get_classifier()
    fakes = draw_samples(ctx.family, ctx.state, ctx.key, ctx.num_samples)
    if ctx.on_samples is not None:
        ctx.on_samples(fakes)
    return {**sample_quality(classifier, images_of(ctx.test), fakes, ctx.test.num_classes), "classifier_accuracy": classifier.test_accuracy}


def mode_scores(family, state, dataset_name: str, key, num_samples: int = MODE_SAMPLES) -> dict:
    """Mode coverage (genjax.metrics.modes) of `num_samples` samples of a family on a 2-D mixture."""
    modes, std = data.mixture_modes(dataset_name)
    return mode_coverage(draw_samples(family, state, key, num_samples), modes, std)


def _modes(ctx: Context) -> dict:
    return mode_scores(ctx.family, ctx.state, ctx.test.name, ctx.key)


def _reconstruction(ctx: Context) -> dict:
    """recon_mse: the mean over test images of the squared error per pixel of their reconstructions."""
    reconstruct, errors = jax.jit(ctx.family.reconstruct), []
    for start, batch in _test_batches(ctx.test):
        reconstruction = np.asarray(reconstruct(ctx.state, batch, jax.random.fold_in(ctx.key, start)))
        errors.append(np.mean((reconstruction - np.asarray(batch["image"])) ** 2, axis=(1, 2, 3)))
    return {"recon_mse": float(np.mean(np.concatenate(errors)))}


def _likelihood_bound(ctx: Context) -> dict:
    if ctx.iwae_samples <= 0:
        return {}
    examples = np.asarray(data.to_model_batch(ctx.test.arrays)[ctx.test.data_key])
    bounds = importance_weighted_bound(
        ctx.family.importance_log_weights, ctx.state, examples, ctx.key, ctx.iwae_samples, data_key=ctx.test.data_key
    )
    return {"nll_iwae": float(-np.mean(bounds))}


def _exact_likelihood(ctx: Context) -> dict:
    """nll_exact over the first likelihood_examples test examples (0: all): an exact likelihood can cost an ODE
    solve per example, so the comparison may take fewer."""
    log_likelihood = jax.jit(ctx.family.log_likelihood)
    batches = _test_batches(ctx.test, 100, ctx.likelihood_examples)
    values = [np.asarray(log_likelihood(ctx.state, batch, jax.random.fold_in(ctx.key, start))) for start, batch in batches]
    return {"nll_exact": float(-np.mean(np.concatenate(values)))}


# suite -> (function, which of the evaluation's keys it draws from: 1 samples, 2 reconstructions, 3 IWAE, 4 more)
SUITES = {
    "sample_quality": (_sample_quality, 1),
    "modes": (_modes, 1),
    "reconstruction": (_reconstruction, 2),
    "likelihood_bound": (_likelihood_bound, 3),
    "exact_likelihood": (_exact_likelihood, 4),
}


def applicable_suites(family, test: data.Dataset) -> list[str]:
    """The suites with at least one metric this family gets on this data."""
    kinds = registry.data_kinds(test.data_key, test.name)
    return [s for s in SUITES if any(registry.applies(m, family.capabilities, kinds) for m in registry.suite_metrics(s))]


def evaluate_state(
    family,
    state,
    config,
    train: data.Dataset,
    test: data.Dataset,
    key,
    num_samples: int = 1000,
    iwae_samples: int = 5000,
    classifier=None,
    classifier_steps: int = CLASSIFIER_STEPS,
    likelihood_examples: int = 0,
    on_samples: Callable | None = None,
) -> dict:
    """Every metric the family supports (module docstring), as a flat dict of floats. `on_samples(samples)` is
    handed the samples the sample-quality metrics are computed on (the study draws its pictures from them)."""
    keys = [*jax.random.split(key, 4), jax.random.fold_in(key, 4)]  # 0: eval_step
    mesh = make_mesh(config.num_devices)
    evaluate = make_evaluate(family, mesh, test.num_examples, config.batch_size)
    test_data = jax.device_put(test.arrays, replicated(mesh))
    metrics = {k: float(v) for k, v in jax.device_get(evaluate(state, test_data, keys[0])).items()}
    metrics["num_params"] = count_params(state)
    ctx = Context(
        family, state, train, test, keys[0], num_samples, iwae_samples, classifier, classifier_steps, likelihood_examples, on_samples
    )
    for suite in applicable_suites(family, test):
        compute, key_index = SUITES[suite]
        ctx.key = keys[key_index]
        metrics.update(compute(ctx))
    return metrics


def evaluate_result(
    result, train: data.Dataset, test: data.Dataset, key, num_samples: int, iwae_samples: int, classifier, likelihood_examples: int
) -> dict:
    """`evaluate_state` of a fit's result (genjax.train.FitResult: its family, state and config)."""
    return evaluate_state(
        result.family,
        result.state,
        result.config,
        train,
        test,
        key,
        num_samples,
        iwae_samples,
        classifier=classifier,
        likelihood_examples=likelihood_examples,
    )


# the least counts an evaluation takes (a Frechet distance needs samples enough for a covariance); the comparison's too
EVALUATION_MINIMUMS = dict(num_samples=10, iwae_samples=0, likelihood_examples=0, classifier_steps=1)


def check_minimums(values, minimums: dict, flags=()) -> None:
    """Raise UserError naming the first field of `values` (an object) below its minimum; a field in `flags` is
    named as the command's flag (--num_samples), the others as fields. The evaluate command, the comparison and
    the study share it, so one minimum reads the same everywhere."""
    for field, least in minimums.items():
        if getattr(values, field) < least:
            name = f"--{field}" if field in flags else field
            raise UserError(f"{name} must be at least {least}, got {getattr(values, field)}")


def read_run_config(run_dir: str):
    """The config a run directory was trained with, from its config.json alone."""
    path = os.path.join(run_dir, "config.json")
    if not os.path.exists(path) or not os.path.isdir(os.path.join(run_dir, "checkpoints")):
        raise UserError(f"{run_dir} is not a genjax run directory (no config.json or checkpoints/); pass the --workdir of a run")
    try:
        with open(path) as f:
            return config_from_dict(json.load(f))
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error.msg}, line {error.lineno}); restore it or train the run again") from None


def load_run(run_dir: str):
    """(config, family, state, train, test) of a run directory, from its config.json and latest checkpoint."""
    config = read_run_config(run_dir)
    checkpoints = Checkpoints(os.path.join(run_dir, "checkpoints"))
    try:
        step = checkpoints.latest_step()
        if step is None:
            raise UserError(f"{run_dir} has no checkpoint yet; train it first")
        meta = checkpoints.read_meta(step)
        train = data.load(config.dataset, "train", config.source, config.data_dir or None, config.seed, config.toy_train_points)
        test = data.load(config.dataset, "test", config.source, config.data_dir or None, config.seed)
        family = models.get(config.model).make_family(config, train)
        example = data.to_model_batch(train.take(np.arange(config.batch_size)))
        like = jax.eval_shape(family.init, jax.random.PRNGKey(0), example)  # the shapes only: init is never run
        _, state, _ = checkpoints.restore_latest(like, meta)
    finally:
        checkpoints.close()
    return config, family, state, train, test


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m genjax.evaluate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run_dir")
    parser.add_argument("--num_samples", type=int, default=1000, help="generated samples for the sample-quality metrics (>= 10)")
    parser.add_argument("--iwae_samples", type=int, default=5000, help="K of the IWAE bound (0 to skip)")
    parser.add_argument("--likelihood_examples", type=int, default=0, help="test examples for nll_exact (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the samples and of the IWAE draws")
    parser.add_argument("--classifier_steps", type=int, default=CLASSIFIER_STEPS, help="training steps of the feature classifier")
    args = parser.parse_args(argv)
    from genjax.cli import configure_logging

    configure_logging()
    enable_compilation_cache()  # a second evaluation loads the programs of the first
    try:
        check_minimums(args, EVALUATION_MINIMUMS, flags=EVALUATION_MINIMUMS)
        config, family, state, train, test = load_run(args.run_dir)
        metrics = evaluate_state(
            family,
            state,
            config,
            train,
            test,
            jax.random.PRNGKey(args.seed),
            args.num_samples,
            args.iwae_samples,
            classifier_steps=args.classifier_steps,
            likelihood_examples=args.likelihood_examples,
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    with open(os.path.join(args.run_dir, "eval.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    width = max(map(len, metrics))
    print("\n".join(f"{name:<{width}}  {value:.6g}" for name, value in metrics.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
