"""Evaluate a trained model with the full metric suite; `python -m genjax.evaluate RUN_DIR` does it for any
finished (or interrupted) run directory, from its latest checkpoint, and writes RUN_DIR/eval.json.

    python -m genjax.evaluate runs/vae_mnist [--num_samples 1000] [--iwae_samples 5000] [--seed 0]

Which metrics a model gets depends on what its family can do (see genjax.metrics for definitions):
    every family          the family's own test metrics (eval_step), number of parameters
    generates images      frechet_distance, precision, recall, density, coverage, class_kl, classes_covered
                          (features of genjax's classifier; its test accuracy is reported as
                          classifier_accuracy)
    generates 2-D points  modes_captured, num_modes, high_quality_percent, reverse_kl (ring8, grid25)
    has an encoder        recon_mse: mean squared error per pixel of test reconstructions
    latent variables      nll_iwae: -L_K, the importance-weighted bound with K = iwae_samples, nats per example
"""

import argparse
import json
import os
import sys

import jax
import numpy as np

from genjax import data, models
from genjax.checkpoint import Checkpoints
from genjax.config import apply_overrides
from genjax.errors import EXIT_BAD_INPUT, UserError
from genjax.metrics import sample_quality
from genjax.metrics.classifier import NUM_STEPS as CLASSIFIER_STEPS
from genjax.metrics.classifier import images_of, load_classifier
from genjax.metrics.likelihood import importance_weighted_bound
from genjax.metrics.modes import NUM_SAMPLES as MODE_SAMPLES
from genjax.metrics.modes import mode_coverage
from genjax.train.family import count_params
from genjax.train.loop import make_evaluate
from genjax.train.parallel import make_mesh, replicated

SAMPLE_BATCH = 500


def draw_samples(family, state, key, n: int) -> np.ndarray:
    """n samples, drawn in batches of SAMPLE_BATCH with keys fold_in(key, batch number)."""
    sample = jax.jit(family.sample, static_argnums=2)
    batches = [
        np.asarray(sample(state, jax.random.fold_in(key, i), min(SAMPLE_BATCH, n - start)))
        for i, start in enumerate(range(0, n, SAMPLE_BATCH))
    ]
    return np.concatenate(batches)


def reconstruction_mse(family, state, test: data.Dataset, key) -> float:
    """Mean over test images of the mean squared error per pixel of their reconstructions."""
    reconstruct = jax.jit(family.reconstruct)
    errors = []
    for start in range(0, test.num_examples, SAMPLE_BATCH):
        batch = data.to_model_batch(test.take(np.arange(start, min(start + SAMPLE_BATCH, test.num_examples))))
        reconstruction = np.asarray(reconstruct(state, batch, jax.random.fold_in(key, start)))
        errors.append(np.mean((reconstruction - np.asarray(batch["image"])) ** 2, axis=(1, 2, 3)))
    return float(np.mean(np.concatenate(errors)))


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
) -> dict:
    """Every metric the family supports (module docstring), as a flat dict of floats."""
    eval_key, sample_key, reconstruct_key, iwae_key = jax.random.split(key, 4)
    mesh = make_mesh(config.num_devices)
    evaluate = make_evaluate(family, mesh, test.num_examples, config.batch_size)
    test_data = jax.device_put(test.arrays, replicated(mesh))
    metrics = {k: float(v) for k, v in jax.device_get(evaluate(state, test_data, eval_key)).items()}
    metrics["num_params"] = count_params(state)
    if family.sample is not None and test.data_key == "image":
        classifier = classifier or load_classifier(train, test, classifier_steps)
        fakes = draw_samples(family, state, sample_key, num_samples)
        metrics.update(sample_quality(classifier, images_of(test), fakes, test.num_classes))
        metrics["classifier_accuracy"] = classifier.test_accuracy
    elif family.sample is not None and test.name in ("ring8", "grid25"):
        modes, std = data.mixture_modes(test.name)
        metrics.update(mode_coverage(draw_samples(family, state, sample_key, MODE_SAMPLES), modes, std))
    if family.reconstruct is not None and test.data_key == "image":
        metrics["recon_mse"] = reconstruction_mse(family, state, test, reconstruct_key)
    if family.importance_log_weights is not None and iwae_samples > 0:
        examples = np.asarray(data.to_model_batch(test.arrays)[test.data_key])
        bounds = importance_weighted_bound(family.importance_log_weights, state, examples, iwae_key, iwae_samples, data_key=test.data_key)
        metrics["nll_iwae"] = float(-np.mean(bounds))
    return metrics


def load_run(run_dir: str):
    """(config, family, state, train, test) of a run directory, from its config.json and latest checkpoint."""
    config_path = os.path.join(run_dir, "config.json")
    checkpoint_dir = os.path.join(run_dir, "checkpoints")
    if not os.path.exists(config_path) or not os.path.isdir(checkpoint_dir):
        raise UserError(f"{run_dir} is not a genjax run directory (no config.json or checkpoints/); pass the --workdir of a run")
    checkpoints = Checkpoints(checkpoint_dir)
    step = checkpoints.latest_step()
    if step is None:
        raise UserError(f"{run_dir} has no checkpoint yet; train it first")
    meta = checkpoints.read_meta(step)
    config = experiment_config(meta["experiment"], json.load(open(config_path)))
    model = models.get(config.model)
    train = data.load(config.dataset, "train", config.source, config.data_dir or None, config.seed)
    test = data.load(config.dataset, "test", config.source, config.data_dir or None, config.seed)
    family = model.make_family(config, train)
    example = data.to_model_batch(train.take(np.arange(config.batch_size)))
    like = jax.jit(family.init)(jax.random.PRNGKey(0), example)
    _, state = checkpoints.restore_latest(like, meta)
    checkpoints.close()
    return config, family, state, train, test


def experiment_config(experiment: str, values: dict):
    """The experiment's config with the saved values (JSON lists back to tuples, via the CLI's parser)."""
    import importlib

    config = importlib.import_module(f"experiments.{experiment}").get_config()
    apply_overrides(config, {k: _as_text(v) for k, v in values.items() if k in config})
    for name, value in values.items():  # fields a multi-stage experiment adds to a stage's config (e.g. the prior's vqvae_workdir)
        if name not in config:
            config[name] = tuple(value) if isinstance(value, list) else value
    return config


def _as_text(value) -> str:
    return repr(tuple(value)) if isinstance(value, list) else str(value)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir")
    parser.add_argument("--num_samples", type=int, default=1000, help="generated samples for the sample-quality metrics")
    parser.add_argument("--iwae_samples", type=int, default=5000, help="K of the IWAE bound (0 to skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classifier_steps", type=int, default=CLASSIFIER_STEPS, help="training steps of the feature classifier")
    args = parser.parse_args(argv)
    from genjax.cli import configure_logging

    configure_logging()
    try:
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
