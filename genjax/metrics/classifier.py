"""The feature extractor behind genjax's sample-quality metrics: a small CNN classifier genjax trains itself.

Frechet distance, precision/recall and class coverage need features of a network that knows the data.
With no downloads possible, genjax trains a classifier on the dataset's training split, deterministically
(seed 0), through the same engine as every model, and caches the finished run under
`$GENJAX_CACHE_DIR/classifier/<dataset>-<source>-<examples>-<steps>` (default cache dir ~/.cache/genjax):
the first evaluation trains it (about half a minute on 2 CPU cores for the MNIST subset), later ones
restore it with Orbax. Its test accuracy is reported with every metric computed from it.

Architecture: two stride-2 4x4 convolutions (32, 64 channels) and a 128-unit ReLU layer, whose activations
are the features; a linear layer to the class logits. Trained with cross-entropy and Adam.
"""

import dataclasses
import fcntl
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from genjax.config import base_config
from genjax.data import Dataset, to_model_batch
from genjax.nn import ConvEncoder
from genjax.train.family import Family, check_batch
from genjax.train.loop import fit
from genjax.train.optim import apply_gradients
from genjax.train.parallel import small_run_devices

FEATURES = 128
NUM_STEPS = 1500


class Classifier(nn.Module):
    """Images -> (features [B, 128], logits [B, num_classes])."""

    num_classes: int

    @nn.compact
    def __call__(self, x):
        features = nn.relu(ConvEncoder((32, 64), FEATURES)(x))
        return features, nn.Dense(self.num_classes)(features)


def make_family(config, dataset: Dataset) -> Family:
    model = Classifier(dataset.num_classes)
    tx = optax.adam(config.learning_rate)

    def init(key, batch):
        check_batch(batch, "image", dataset.example_shape, "classifier.init")
        params = model.init(key, batch["image"])["params"]
        return {"params": params, "opt_state": tx.init(params)}

    def train_step(state, batch, key):
        def loss_fn(params):
            _, logits = model.apply({"params": params}, batch["image"])
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
            return loss, {"loss": loss, "accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

        grads, metrics = jax.grad(loss_fn, has_aux=True)(state["params"])
        params, opt_state = apply_gradients(tx, state["params"], state["opt_state"], grads)
        return {"params": params, "opt_state": opt_state}, metrics

    def eval_step(state, batch, key):
        _, logits = model.apply({"params": state["params"]}, batch["image"])
        return {
            "accuracy": (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32),
            "loss": optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]),
        }

    return Family("classifier", init, train_step, eval_step, progress_metrics=("loss", "accuracy"), convolutional=True)


@dataclasses.dataclass(frozen=True)
class TrainedClassifier:
    """A trained classifier: `embed(images)` gives (features, logits); `test_accuracy` its held-out accuracy."""

    model: Classifier
    params: dict
    test_accuracy: float
    workdir: str

    def embed(self, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, 128], logits [N, C]) of float images [N, H, W, C] in [0, 1]."""
        apply = _apply_fn(self.model)
        outputs = [apply(self.params, jnp.asarray(images[i : i + batch_size], jnp.float32)) for i in range(0, len(images), batch_size)]
        return np.concatenate([np.asarray(f) for f, _ in outputs]), np.concatenate([np.asarray(logits) for _, logits in outputs])


def _apply_fn(model: Classifier):
    return jax.jit(lambda params, x: model.apply({"params": params}, x))


def cache_dir() -> str:
    return os.environ.get("GENJAX_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "genjax")


def classifier_config(num_steps: int = NUM_STEPS):
    config = base_config()
    config.update(
        dict(model="classifier", num_steps=num_steps, eval_every=num_steps, checkpoint_every=num_steps, keep_checkpoints=1, num_samples=1)
    )
    return config


def load_classifier(train: Dataset, test: Dataset, num_steps: int = NUM_STEPS) -> TrainedClassifier:
    """The cached classifier of this dataset, trained first if the cache does not have it yet.

    Concurrent callers (parallel tests, two evaluations) wait for each other on a lock beside the cached
    run instead of training it twice.
    """
    config = classifier_config(num_steps)
    config.num_devices = small_run_devices()
    name = f"{train.name}-{train.source}-{train.num_examples}-{num_steps}"
    workdir = os.path.join(cache_dir(), "classifier", name)
    os.makedirs(os.path.dirname(workdir), exist_ok=True)
    with open(workdir + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = fit(make_family(config, train), config, train, test, workdir, experiment="classifier")
    return TrainedClassifier(Classifier(train.num_classes), result.state["params"], result.summary["test"]["accuracy"], workdir)


def images_of(dataset: Dataset) -> np.ndarray:
    """A dataset's images as float32 in [0, 1]."""
    return np.asarray(to_model_batch(dataset.arrays)["image"])
