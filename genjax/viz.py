"""Pictures of a run: image grids (PNG via Pillow) and plots (matplotlib, headless Agg backend)."""

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from genjax.data import images_uint8  # noqa: E402


def image_grid(images: np.ndarray, columns: int | None = None, pad: int = 2) -> np.ndarray:
    """Float images [N, H, W, C] in [0, 1] tiled into one uint8 image, `columns` per row (default sqrt N)."""
    images = images_uint8(images)
    n, h, w, c = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = np.full((rows * (h + pad) + pad, columns * (w + pad) + pad, c), 255, np.uint8)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + col * (w + pad) : pad + col * (w + pad) + w] = image
    return grid


def save_image(path: str, image: np.ndarray) -> None:
    """Write a uint8 [H, W, 1 or 3] array as PNG."""
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)


def save_image_grid(path: str, images: np.ndarray, columns: int | None = None) -> None:
    save_image(path, image_grid(images, columns))


def save_reconstructions(path: str, originals: np.ndarray, reconstructions: np.ndarray, columns: int = 8) -> None:
    """Rows of originals, each followed by the row of their reconstructions."""
    pairs = []
    for start in range(0, len(originals), columns):
        pairs += [originals[start : start + columns], reconstructions[start : start + columns]]
    save_image_grid(path, np.concatenate(pairs), columns)


def save_point_scatter(path: str, points: np.ndarray, reference: np.ndarray | None = None, title: str = "") -> None:
    """Scatter of 2-D samples, over `reference` points (e.g. the mixture means) when given."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(points[:, 0], points[:, 1], s=2, alpha=0.5, label="samples")
    if reference is not None:
        ax.scatter(reference[:, 0], reference[:, 1], s=40, c="red", marker="x", label="modes")
        ax.legend(loc="upper right")
    ax.set_aspect("equal")
    ax.set_title(title)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_latent_scatter(path: str, latents: np.ndarray, labels: np.ndarray) -> None:
    """2-D latent codes coloured by class label."""
    fig, ax = plt.subplots(figsize=(6, 5))
    points = ax.scatter(latents[:, 0], latents[:, 1], c=labels, cmap="tab10", s=6)
    fig.colorbar(points, ax=ax, label="label")
    ax.set_xlabel("z[0]")
    ax.set_ylabel("z[1]")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def save_curves(path: str, records: list[dict], names: tuple[str, ...]) -> None:
    """Train and test curves of the metrics `names` from metrics.jsonl records, one panel each."""
    names = [n for n in names if any(n in r for r in records)]
    if not names:
        return
    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3), squeeze=False)
    for ax, name in zip(axes[0], names):
        for split in ("train", "test"):
            points = [(r["step"], r[name]) for r in records if r["split"] == split and isinstance(r.get(name), (int, float))]
            if points:
                # test points are few: marked; a train series of one record (a run of one call) too, or it is no line at all
                ax.plot(*zip(*points), label=split, marker="." if split == "test" or len(points) == 1 else None)
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
