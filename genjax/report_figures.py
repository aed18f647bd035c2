"""The comparison's figures: panels of each model's sample and reconstruction images, training losses, the
quality metric over training, 2-D samples over the mixture modes and latent interpolations."""

import math
import os

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from genjax import data  # noqa: E402
from genjax.data import mixture_modes  # noqa: E402
from genjax.train.writer import read_metrics  # noqa: E402


def _save(fig, path: str, dpi: int = 110) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def group(records: list[dict]) -> dict:
    """{model: [records]} in first-seen order."""
    groups = {}
    for record in records:
        groups.setdefault(record["model"], []).append(record)
    return groups


def value_of(record: dict, metric: str):
    return record.get(metric, record["metrics"].get(metric))


def first_seed(records: list[dict]) -> dict:
    """{model: record of its first seed that finished} (models whose every seed diverged are left out)."""
    finished = {model: [r for r in runs if r["metrics"]] for model, runs in group(records).items()}
    return {model: runs[0] for model, runs in finished.items() if runs}


def final_file(workdir: str, prefix: str) -> str | None:
    steps = [int(name[len(prefix) + 1 : -4]) for name in os.listdir(workdir) if name.startswith(prefix + "_") and name.endswith(".png")]
    return os.path.join(workdir, f"{prefix}_{max(steps)}.png") if steps else None


def figure_of_pngs(path: str, images: dict, title: str) -> bool:
    """Side-by-side panels of existing PNG files {label: path}; False when there is nothing to show."""
    images = {label: p for label, p in images.items() if p and os.path.exists(p)}
    if not images:
        return False
    columns = min(4, len(images))
    rows = math.ceil(len(images) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (label, png) in zip(axes.ravel(), images.items()):
        ax.imshow(np.asarray(Image.open(png).convert("RGB")))
        ax.set_title(label, fontsize=10)
    fig.suptitle(title, wrap=True)  # one panel is narrower than a long title: its lines break to fit
    _save(fig, path)
    return True


def loss_figure(path: str, records: list[dict]) -> bool:
    """Each model's training losses over steps (first seed), one panel per model."""
    runs = first_seed(records)
    if not runs:
        return False
    columns = min(4, len(runs))
    rows = math.ceil(len(runs) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.8 * rows), squeeze=False)
    for ax in axes.ravel()[len(runs) :]:
        ax.axis("off")
    for ax, (model, record) in zip(axes.ravel(), runs.items()):
        train = [r for r in read_metrics(record["workdir"]) if r["split"] == "train"]
        names = [k for k in train[0] if "loss" in k] if train else []
        for name in names:
            ax.plot([r["step"] for r in train], [r[name] for r in train], label=name)
        ax.set_title(model, fontsize=10)
        ax.set_xlabel("step")
        if len(names) > 1:
            ax.legend(fontsize=7)
    _save(fig, path)
    return True


def curve_figure(path: str, records: list[dict], ylabel: str) -> bool:
    """The quality metric against training seconds, one line per model: point i is the mean over seeds of
    the i-th measurement (seconds and value), over the seeds that have it."""
    fig, ax = plt.subplots(figsize=(6, 4))
    drawn = False
    for model, runs in group(records).items():
        curves = [np.asarray(r["curve"], float) for r in runs if r.get("curve")]
        if not curves:
            continue
        points = [np.mean([c[i] for c in curves if len(c) > i], axis=0) for i in range(max(map(len, curves)))]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=model)
        drawn = True
    if drawn:
        ax.set_xlabel("training seconds")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return drawn


def toy_figure(path: str, records: list[dict], dataset: str) -> bool:
    """Final samples of each model (first seed) over the mixture means."""
    runs = first_seed([r for r in records if r["dataset"] == dataset])
    if not runs:
        return False
    means, _ = mixture_modes(dataset)
    fig, axes = plt.subplots(1, len(runs), figsize=(3.4 * len(runs), 3.4), squeeze=False)
    for ax, (model, record) in zip(axes[0], runs.items()):
        with np.load(os.path.join(record["workdir"], "samples.npz")) as f:
            samples = f["samples"]
        ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.4)
        ax.scatter(means[:, 0], means[:, 1], s=30, c="red", marker="x")
        ax.set_title(f"{model}: {value_of(record, 'modes_captured')}/{len(means)} modes", fontsize=10)
        ax.set_aspect("equal")
    _save(fig, path)
    return True


def interpolation_figure(path: str, models: dict, test, num_points: int = 9) -> bool:
    """Decoded straight lines in latent space between two test images of different classes, one row per
    model with a latent space ({name: (family, state)}): how smoothly each representation moves from one
    digit to another."""
    rows, labels = [], []
    for name, (family, state) in models.items():
        if "latent" not in family.capabilities or test.data_key != "image":
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
