"""2-D Gaussian mixtures and shapes for watching mode collapse, generated from a PRNG key.

`ring8` and `grid25` are the benchmarks of VEEGAN (Srivastava et al. 2017) and PacGAN (Lin et al. 2018):
  ring8:  8 Gaussians with means on the unit circle, std 0.01;
  grid25: 25 Gaussians with means on {-4, -2, 0, 2, 4}^2, std 0.05.
`circles` (two concentric circles, radii 1 and 0.5) and `moons` (two interleaved half circles) follow
scikit-learn's make_circles / make_moons with Gaussian noise of std 0.05. Labels are the mixture component.
"""

import jax
import jax.numpy as jnp
import numpy as np

from genjax.data.dataset import Dataset

TOY_DATASETS = ("ring8", "grid25", "circles", "moons")
SHAPE_NOISE = 0.05
TOY_SIZES = {"train": 50_000, "test": 2_500}


def mixture_modes(name: str) -> tuple[np.ndarray, float]:
    """(means [K, 2], per-axis std) of a Gaussian mixture dataset."""
    if name == "ring8":
        angles = 2 * np.pi * np.arange(8) / 8
        return np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32), 0.01
    if name == "grid25":
        axis = np.array([-4.0, -2.0, 0.0, 2.0, 4.0], np.float32)
        return np.stack(np.meshgrid(axis, axis, indexing="ij"), axis=-1).reshape(-1, 2), 0.05
    raise ValueError(f"'{name}' is not a Gaussian mixture; mixtures: ring8, grid25")


def sample_toy(name: str, key: jax.Array, n: int) -> tuple[jax.Array, jax.Array]:
    """n points [n, 2] float32 and their component labels [n] int32."""
    component_key, position_key, noise_key = jax.random.split(key, 3)
    if name in ("ring8", "grid25"):
        means, std = mixture_modes(name)
        labels = jax.random.randint(component_key, (n,), 0, len(means))
        return jnp.asarray(means)[labels] + std * jax.random.normal(noise_key, (n, 2)), labels
    labels = jax.random.randint(component_key, (n,), 0, 2)
    angle = jnp.pi * jax.random.uniform(position_key, (n,))
    if name == "circles":
        radius = jnp.where(labels == 0, 1.0, 0.5)
        points = radius[:, None] * jnp.stack([jnp.cos(angle * 2), jnp.sin(angle * 2)], axis=1)
    elif name == "moons":
        upper = jnp.stack([jnp.cos(angle), jnp.sin(angle)], axis=1)
        lower = jnp.stack([1 - jnp.cos(angle), 0.5 - jnp.sin(angle)], axis=1)
        points = jnp.where((labels == 0)[:, None], upper, lower)
    else:
        raise ValueError(f"unknown toy dataset '{name}'; known: {', '.join(TOY_DATASETS)}")
    return points + SHAPE_NOISE * jax.random.normal(noise_key, (n, 2)), labels


def load_toy(name: str, split: str, seed: int, num_examples: int | None = None) -> Dataset:
    """A fixed sample of `name` drawn from fold_in(PRNGKey(seed), split): `num_examples` points, by default
    train 50,000 and test 2,500."""
    split_index = ("train", "test").index(split)
    key = jax.random.fold_in(jax.random.PRNGKey(seed), split_index)
    points, labels = sample_toy(name, key, num_examples or TOY_SIZES[split])
    num_classes = len(mixture_modes(name)[0]) if name in ("ring8", "grid25") else 2
    arrays = {"point": np.asarray(points, np.float32), "label": np.asarray(labels, np.int32)}
    return Dataset(name, split, "toy", arrays, num_classes=num_classes)
