"""The pictures and arrays a run leaves in its directory.

At every evaluation: `samples_<step>.png` (a grid of generated images, or a scatter of generated points
over the data for 2-D datasets) and `reconstructions_<step>.png` (test images, each row followed by its
reconstruction) for families with an encoder. At the end: `samples.npz` (key `samples`: the final
generated examples in data space), `curves.png` (train and test metrics over steps) and the family's own
figures.
"""

import os

import jax
import numpy as np

from genjax import viz
from genjax.data import Dataset, to_model_batch
from genjax.data.toy2d import mixture_modes
from genjax.train.writer import read_metrics

NUM_RECONSTRUCTIONS = 32


def write_step_images(family, state, test: Dataset, key, step: int, workdir: str, n: int) -> np.ndarray | None:
    """Sample (and reconstruction) pictures at `step`, drawn with `key`; returns the samples (None if the
    family does not generate)."""
    sample_key, reconstruct_key = jax.random.split(key)
    samples = None
    if family.sample is not None:
        samples = np.asarray(jax.jit(family.sample, static_argnums=2)(state, sample_key, n))
        save_samples(family, test, samples, step, workdir)
    if family.reconstruct is not None and test.data_key == "image":
        batch = to_model_batch(test.take(np.arange(min(NUM_RECONSTRUCTIONS, test.num_examples))))  # classes interleaved
        reconstructions = np.asarray(jax.jit(family.reconstruct)(state, batch, reconstruct_key))
        viz.save_reconstructions(os.path.join(workdir, f"reconstructions_{step}.png"), np.asarray(batch["image"]), reconstructions)
    return samples


def save_samples(family, test: Dataset, samples: np.ndarray, step: int, workdir: str) -> None:
    """samples_<step>.png in `workdir`: a grid of the images, or a scatter of the points over the data."""
    path = os.path.join(workdir, f"samples_{step}.png")
    if test.data_key == "point":
        modes = mixture_modes(test.name)[0] if test.name in ("ring8", "grid25") else test.arrays["point"][:500]
        viz.save_point_scatter(path, samples, modes, title=f"{test.name}, step {step}")
    else:
        viz.save_image_grid(path, samples, columns=_grid_columns(len(samples), test.num_classes, family))


def _grid_columns(n: int, num_classes: int, family) -> int | None:
    """Conditional families draw samples class by class: one row per class. Others: a square grid."""
    return n // num_classes if family.conditional else None


def write_final(family, state, test: Dataset, samples: np.ndarray, figure_key, workdir: str, figures: bool = True) -> None:
    """samples.npz (the final step's samples), then unless `figures` is off curves.png and the family's own figures."""
    if samples is not None:
        np.savez_compressed(os.path.join(workdir, "samples.npz"), samples=samples)
    if not figures:
        return
    records = read_metrics(workdir)
    names = tuple(dict.fromkeys(k for r in records for k in r if k not in ("step", "split", "examples_per_s")))
    viz.save_curves(os.path.join(workdir, "curves.png"), records, names[:4])
    if family.figures is not None:
        family.figures(state, test, figure_key, workdir)
