"""The in-memory `Dataset` every loader returns, and the conversion to model inputs.

Images are stored as uint8 [N, H, W, C] (0..255) so that whole datasets fit on an accelerator four times
over; `to_model_batch` turns them into float32 in [0, 1] inside the compiled step. 2-D toy data is stored
as float32 points [N, 2]. Labels are int32 [N] (class, or mixture component for toy data).
"""

import dataclasses

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """One split of one dataset, as numpy arrays keyed 'image' or 'point', plus 'label'."""

    name: str
    split: str
    source: str  # 'embedded', 'tfds' or 'toy'
    arrays: dict
    num_classes: int

    def __post_init__(self):
        where = f"dataset {self.name}/{self.split}"
        keys = set(self.arrays)
        if "label" not in keys or len(keys & {"image", "point"}) != 1:
            raise ValueError(f"{where}: arrays must be 'label' and one of 'image' or 'point', got {sorted(keys)}")
        sizes = {key: len(value) for key, value in self.arrays.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"{where}: arrays of different lengths {sizes}")
        image, point, label = self.arrays.get("image"), self.arrays.get("point"), self.arrays["label"]
        if image is not None and (image.dtype != np.uint8 or image.ndim != 4):
            raise ValueError(f"{where}: 'image' must be uint8 [N, H, W, C] (0..255), got {image.dtype}{list(image.shape)}")
        if point is not None and (not np.issubdtype(point.dtype, np.floating) or point.ndim != 2):
            raise ValueError(f"{where}: 'point' must be float [N, D], got {point.dtype}{list(point.shape)}")
        if not np.issubdtype(label.dtype, np.integer) or label.ndim != 1:
            raise ValueError(f"{where}: 'label' must be integer [N], got {label.dtype}{list(label.shape)}")

    @property
    def num_examples(self) -> int:
        return len(self.arrays["label"])

    @property
    def data_key(self) -> str:
        """'image' for image datasets, 'point' for 2-D toy data."""
        return "image" if "image" in self.arrays else "point"

    @property
    def example_shape(self) -> tuple:
        """Shape of one example, e.g. (28, 28, 1) or (2,)."""
        return self.arrays[self.data_key].shape[1:]

    def first(self, n: int) -> "Dataset":
        """The split's first n examples, as a Dataset (the training-set sizes of a data-size study)."""
        return dataclasses.replace(self, arrays=self.take(np.arange(n)))

    def take(self, indices) -> dict:
        """The examples at `indices` as a dict of numpy arrays (raw dtypes)."""
        return {key: value[indices] for key, value in self.arrays.items()}


def to_model_batch(raw: dict) -> dict:
    """Raw arrays (uint8 images) to model inputs (float32 images in [0, 1]); works on numpy and jax arrays."""
    batch = dict(raw)
    if "image" in batch and batch["image"].dtype == jnp.uint8:
        batch["image"] = batch["image"].astype(jnp.float32) / 255.0
    batch["label"] = batch["label"].astype(jnp.int32)
    return batch


def images_uint8(images: np.ndarray) -> np.ndarray:
    """Float images in [0, 1] (any leading shape) to uint8, rounding; for saving and comparing."""
    return np.clip(np.rint(np.asarray(images, np.float32) * 255.0), 0, 255).astype(np.uint8)
