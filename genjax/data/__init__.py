"""Datasets: `load(name, split)` returns an in-memory `Dataset`.

Names: 'mnist' (embedded 5,000-digit subset offline, full MNIST from tfds when prepared), the tfds
datasets 'fashion_mnist', 'binarized_mnist', 'cifar10', and the 2-D toys 'ring8', 'grid25', 'circles',
'moons'. Sources: 'auto' (tfds when prepared, else the embedded subset with one warning), 'embedded',
'tfds' (downloads when TensorFlow and network are there; else a clear error), 'toy'.
"""

import functools
import logging

from genjax.data.batching import batch_indices, epoch_permutation
from genjax.data.dataset import Dataset, images_uint8, to_model_batch
from genjax.data.embedded import load_mnist_subset
from genjax.data.tfds_source import PREPARE_HINT, TFDS_DATASETS, load_tfds
from genjax.data.toy2d import TOY_DATASETS, load_toy, mixture_modes, sample_toy
from genjax.errors import UserError

DATASETS = tuple(sorted(TFDS_DATASETS)) + TOY_DATASETS
SOURCES = ("auto", "embedded", "tfds", "toy")
SPLITS = ("train", "test")

__all__ = [
    "DATASETS",
    "SOURCES",
    "Dataset",
    "batch_indices",
    "epoch_permutation",
    "images_uint8",
    "load",
    "mixture_modes",
    "sample_toy",
    "to_model_batch",
]


def load(name: str, split: str, source: str = "auto", data_dir: str | None = None, seed: int = 0, toy_train_points: int = 0) -> Dataset:
    """One split of a dataset, in memory. `seed` and `toy_train_points` (0: 50,000) only matter for the 2-D
    toys, whose sample is drawn: the seed picks it, and the second sets the size of the training split."""
    if name not in DATASETS:
        raise UserError(f"unknown dataset '{name}'; choose one of: {', '.join(DATASETS)}")
    if source not in SOURCES:
        raise UserError(f"unknown data source '{source}'; choose one of: {', '.join(SOURCES)}")
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'; choose 'train' or 'test'")
    if name in TOY_DATASETS:
        if source not in ("auto", "toy"):
            raise UserError(f"'{name}' is a generated 2-D dataset; use source 'auto' or 'toy', not '{source}'")
        return load_toy(name, split, seed, toy_train_points if split == "train" else None)  # 0: load_toy's default
    if source == "toy":
        raise UserError(f"source 'toy' is for the 2-D datasets ({', '.join(TOY_DATASETS)}), not '{name}'")
    if source == "embedded":
        if name != "mnist":
            raise UserError(f"only 'mnist' has an embedded subset; '{name}' needs source 'tfds'")
        return load_mnist_subset(split)
    fallback = source == "auto" and name == "mnist"
    try:
        dataset = load_tfds(name, split, data_dir, download=True)
    except UserError:
        if not fallback:
            raise
        dataset = None
    if dataset is not None:
        return dataset
    if fallback:
        _warn_once(
            "tfds 'mnist' is not prepared here, so genjax uses its embedded 5,000-digit subset "
            "(4,500 train / 500 test); for full MNIST, " + PREPARE_HINT.format(name="mnist")
        )
        return load_mnist_subset(split)
    raise UserError(f"tfds dataset '{name}' is not prepared and cannot be downloaded here; {PREPARE_HINT.format(name=name)}")


@functools.cache
def _warn_once(message: str) -> None:
    """Log `message` the first time only: train and test splits are loaded separately."""
    logging.getLogger("genjax").warning(message)
