"""The comparison report: tables, figures and a "when to use which" paragraph from measured runs.

Input is a list of run records (one per model, dataset and seed), each a dict with
    model, dataset, seed, workdir, metrics (genjax.evaluate.evaluate_state's dict; empty when the run
    diverged, and then `diverged` holds the reason), train_seconds, examples_per_s, steps,
    curve ([(training seconds, Frechet distance)] over training)
Output: report.md and report.html (the same content) and PNG figures, all in one directory.
"""

import html
import json
import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from genjax.data import mixture_modes  # noqa: E402
from genjax.train.writer import read_metrics  # noqa: E402

# column title, metric, format, direction (+1 higher is better, -1 lower, 0 neither)
IMAGE_COLUMNS = [
    ("parameters", "num_params", "{:,.0f}", 0),
    ("train s", "train_seconds", "{:.0f}", 0),
    ("images/s", "examples_per_s", "{:,.0f}", +1),
    ("Frechet dist.", "frechet_distance", "{:.2f}", -1),
    ("precision", "precision", "{:.2f}", +1),
    ("recall", "recall", "{:.2f}", +1),
    ("classes", "classes_covered", "{:.1f}", +1),
    ("NLL bound (nats)", "nll_iwae", "{:.1f}", -1),
    ("recon. MSE", "recon_mse", "{:.4f}", -1),
]
TOY_COLUMNS = [
    ("modes captured", "modes_captured", "{:.1f}", +1),
    ("high quality %", "high_quality_percent", "{:.1f}", +1),
    ("reverse KL", "reverse_kl", "{:.3f}", -1),
    ("NLL bound (nats)", "nll_iwae", "{:.2f}", -1),
    ("train s", "train_seconds", "{:.0f}", 0),
]
STABILITY_METRIC = {"image": "frechet_distance", "toy": "modes_captured"}


def value_of(record: dict, metric: str):
    return record.get(metric, record["metrics"].get(metric))


def aggregate(records: list[dict], metric: str) -> tuple[float, float, int] | None:
    """(mean, standard deviation over seeds, number of seeds) of a metric, or None where it is undefined."""
    values = [v for v in (value_of(r, metric) for r in records) if v is not None and math.isfinite(v)]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)


def group(records: list[dict]) -> dict:
    """{model: [records]} in first-seen order."""
    groups = {}
    for record in records:
        groups.setdefault(record["model"], []).append(record)
    return groups


def table(records: list[dict], columns, kind: str) -> list[list[str]]:
    """Rows of strings: header, then one row per model (mean, with ± seed std for the quality metric)."""
    stability = STABILITY_METRIC[kind]
    header = ["model"] + [title for title, *_ in columns] + [f"seed std of {stability.replace('_', ' ')}"]
    rows = [header]
    for model, runs in group(records).items():
        diverged = sum(1 for r in runs if r.get("diverged"))
        row = [model + (f" ({diverged} of {len(runs)} seeds diverged)" if diverged else "")]
        for _, metric, fmt, _ in columns:
            stats = aggregate(runs, metric)
            row.append("—" if stats is None else fmt.format(stats[0]))
        stats = aggregate(runs, stability)
        row.append("—" if stats is None or stats[2] < 2 else f"{stats[1]:.2f}")
        rows.append(row)
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


def html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def best(records: list[dict], metric: str, direction: int):
    """(model, mean) with the best mean of `metric`, or None."""
    scored = [(model, aggregate(runs, metric)) for model, runs in group(records).items()]
    scored = [(model, stats[0]) for model, stats in scored if stats is not None]
    if not scored:
        return None
    return max(scored, key=lambda item: direction * item[1])


def when_to_use_which(image_records: list[dict], toy_records: list[dict]) -> str:
    """A paragraph of findings, each sentence computed from the measured numbers."""
    sentences = []
    quality = best(image_records, "frechet_distance", -1)
    if quality:
        worst = best(image_records, "frechet_distance", +1)
        sentences.append(
            f"For sample quality, {quality[0]} gives the lowest Frechet distance ({quality[1]:.2f}; "
            f"the worst is {worst[0]} at {worst[1]:.2f})."
        )
    recalls = {model: aggregate(runs, "recall") for model, runs in group(image_records).items()}
    collapsed = [model for model, stats in recalls.items() if stats is not None and stats[0] < 0.1]
    if collapsed:
        sentences.append(
            f"At this budget {', '.join(collapsed)} cover almost none of the data (recall below 0.1): "
            f"mode collapse or unfinished training, whatever their precision."
        )
    diversity = best(image_records, "recall", +1)
    precise = best([r for r in image_records if r["model"] not in collapsed], "precision", +1)
    if diversity and precise:
        if diversity[0] == precise[0]:
            sentences.append(
                f"{diversity[0]} is both the most precise ({precise[1]:.2f}) and the most diverse (recall {diversity[1]:.2f})."
            )
        else:
            sentences.append(
                f"{precise[0]} has the highest precision ({precise[1]:.2f}) and {diversity[0]} the highest recall "
                f"({diversity[1]:.2f}): fidelity and coverage of the data are won by different models."
            )
    likelihood = best(image_records, "nll_iwae", -1)
    if likelihood:
        sentences.append(
            f"When a likelihood is needed (density estimation, compression, anomaly scores), only the models "
            f"with an encoder and a prior report one, and {likelihood[0]} is best at {likelihood[1]:.1f} nats per image."
        )
    reconstruction = best(image_records, "recon_mse", -1)
    if reconstruction:
        sentences.append(
            f"For reconstruction and representation, {reconstruction[0]} reconstructs test images most "
            f"faithfully (MSE {reconstruction[1]:.4f} per pixel)."
        )
    spreads = {model: aggregate(runs, "frechet_distance") for model, runs in group(image_records).items()}
    spreads = {m: s for m, s in spreads.items() if s is not None and s[2] > 1}
    if len(spreads) > 1:
        steady = min(spreads, key=lambda m: spreads[m][1] / max(spreads[m][0], 1e-9))
        shaky = max(spreads, key=lambda m: spreads[m][1] / max(spreads[m][0], 1e-9))
        sentences.append(
            f"Across seeds, {steady} is the most stable (Frechet distance {spreads[steady][0]:.2f} ± "
            f"{spreads[steady][1]:.2f}) and {shaky} the least ({spreads[shaky][0]:.2f} ± {spreads[shaky][1]:.2f})."
        )
    fastest = best(image_records, "examples_per_s", +1)
    if fastest:
        sentences.append(f"{fastest[0]} trains fastest here ({fastest[1]:,.0f} images/s).")
    for dataset in dict.fromkeys(r["dataset"] for r in toy_records):
        runs = [r for r in toy_records if r["dataset"] == dataset]
        coverage = {model: aggregate(rs, "modes_captured") for model, rs in group(runs).items()}
        total = value_of(runs[0], "num_modes")
        complete = [m for m, s in coverage.items() if s and s[0] >= total]
        if complete:
            sentences.append(f"On {dataset}, {', '.join(complete)} captured all {total} modes on every seed.")
        else:
            top = max(coverage, key=lambda m: coverage[m][0] if coverage[m] else -1)
            sentences.append(f"On {dataset} no model captured all {total} modes; {top} came closest ({coverage[top][0]:.1f} on average).")
        sharp = best(runs, "high_quality_percent", +1)
        if sharp:
            sentences.append(f"{sharp[0]} puts the most samples within 3 standard deviations of a mode there ({sharp[1]:.1f}%).")
    return " ".join(sentences)


def _first_seed(records: list[dict]) -> dict:
    """{model: record of its first seed that finished} (models whose every seed diverged are left out)."""
    finished = {model: [r for r in runs if r["metrics"]] for model, runs in group(records).items()}
    return {model: runs[0] for model, runs in finished.items() if runs}


def _final_file(workdir: str, prefix: str) -> str | None:
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
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def loss_figure(path: str, records: list[dict]) -> bool:
    """Each model's training losses over steps (first seed), one panel per model."""
    runs = _first_seed(records)
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
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
    runs = _first_seed([r for r in records if r["dataset"] == dataset])
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
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(
    out_dir: str, image_records: list[dict], toy_records: list[dict], header: dict, interpolation_figure: str | None = None
) -> dict:
    """report.md, report.html, records.json and the figures in `out_dir`; returns {'markdown', 'html'} paths."""
    os.makedirs(out_dir, exist_ok=True)
    figures = []  # (title, file name)
    if figure_of_pngs(
        os.path.join(out_dir, "fig_samples.png"),
        {m: _final_file(r["workdir"], "samples") for m, r in _first_seed(image_records).items()},
        "samples (seed of the first run)",
    ):
        figures.append(("Samples, side by side", "fig_samples.png"))
    if figure_of_pngs(
        os.path.join(out_dir, "fig_reconstructions.png"),
        {m: _final_file(r["workdir"], "reconstructions") for m, r in _first_seed(image_records).items()},
        "test images (odd rows) and reconstructions (even rows)",
    ):
        figures.append(("Reconstructions, side by side", "fig_reconstructions.png"))
    if loss_figure(os.path.join(out_dir, "fig_losses.png"), image_records):
        figures.append(("Training losses", "fig_losses.png"))
    if curve_figure(os.path.join(out_dir, "fig_frechet.png"), image_records, "Frechet distance (lower is better)"):
        figures.append(("Frechet distance over training", "fig_frechet.png"))
    if interpolation_figure:
        figures.append(("Latent interpolations between two test images", os.path.basename(interpolation_figure)))
    toy_datasets = list(dict.fromkeys(r["dataset"] for r in toy_records))
    for dataset in toy_datasets:
        if toy_figure(os.path.join(out_dir, f"fig_{dataset}.png"), toy_records, dataset):
            figures.append((f"{dataset}: samples over the modes", f"fig_{dataset}.png"))

    sections = [("setup", "\n".join(f"- {k}: {v}" for k, v in header.items()))]
    if image_records:
        sections.append(
            (f"{image_records[0]['dataset']}: every model, same data, same budget", table(image_records, IMAGE_COLUMNS, "image"))
        )
    for dataset in toy_datasets:
        sections.append(
            (
                f"{dataset}: mode coverage (VEEGAN/PacGAN protocol, 2,500 samples)",
                table([r for r in toy_records if r["dataset"] == dataset], TOY_COLUMNS, "toy"),
            )
        )
    sections.append(("When to use which (generated from the numbers above)", when_to_use_which(image_records, toy_records)))

    markdown = ["# genjax comparison report", ""]
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>genjax comparison report</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child{text-align:left}</style>",
        "</head><body><h1>genjax comparison report</h1>",
    ]
    for title, content in sections:
        markdown += [f"## {title}", "", markdown_table(content) if isinstance(content, list) else content, ""]
        body = html_table(content) if isinstance(content, list) else "<p>" + html.escape(content).replace("\n", "<br>") + "</p>"
        page.append(f"<h2>{html.escape(title)}</h2>{body}")
    markdown += ["## Figures", ""]
    page.append("<h2>Figures</h2>")
    for title, name in figures:
        markdown += [f"### {title}", "", f"![{title}]({name})", ""]
        page.append(f"<h3>{html.escape(title)}</h3><img src='{name}' style='max-width:100%'>")
    page.append("</body></html>")
    paths = {"markdown": os.path.join(out_dir, "report.md"), "html": os.path.join(out_dir, "report.html")}
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(markdown))
    with open(paths["html"], "w") as f:
        f.write("\n".join(page))
    with open(os.path.join(out_dir, "records.json"), "w") as f:
        json.dump({"image": image_records, "toy": toy_records}, f, indent=1, default=float)
    return paths
