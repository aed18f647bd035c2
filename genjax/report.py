"""The comparison report: tables, figures and a "which, when" paragraph from measured runs.

Input is a list of run records (one per model, dataset and seed), each a dict with
    model, dataset, seed, workdir, kinds (the data kinds, genjax.metrics.registry.data_kinds),
    metrics (genjax.evaluate.evaluate_state's dict; empty when the run diverged, and then `diverged` holds
    the reason), train_seconds, examples_per_s, steps, curve ([(training seconds, Frechet distance)])
Output: report.md and report.html (the same content), records.json and PNG figures, in one directory.

Columns and sentences come from the metric registry: a column for every metric declared for the records'
data kinds that some record has, and one sentence for every metric that declares the question it answers,
so a family that brings a new capability (an exact likelihood, say) brings its column and its sentence.
"""

import html
import json
import math
import os

import numpy as np

from genjax.metrics import registry
from genjax.report_figures import curve_figure, figure_of_pngs, final_file, first_seed, group, loss_figure, toy_figure, value_of


def aggregate(records: list[dict], metric: str) -> tuple[float, float, int] | None:
    """(mean, standard deviation over seeds, number of seeds) of a metric, or None where it is undefined."""
    values = [v for v in (value_of(r, metric) for r in records) if v is not None and math.isfinite(v)]
    if not values:
        return None
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, len(values)


def kinds_of(records: list[dict]) -> frozenset:
    return frozenset().union(*(frozenset(r.get("kinds", ("image",))) for r in records)) if records else frozenset()


def present_columns(records: list[dict]) -> list[registry.Metric]:
    """The registry's columns for these records' data kinds that at least one record has a value of."""
    return [m for m in registry.columns(kinds_of(records)) if any(value_of(r, m.name) is not None for r in records)]


def table(records: list[dict], columns: list[registry.Metric] | None = None) -> list[list[str]]:
    """Rows of strings: header, then one row per model (means over seeds, and the seed spread of the
    kind's stability metric)."""
    columns = present_columns(records) if columns is None else columns
    stability = registry.stability_metric(kinds_of(records))
    rows = [["model"] + [m.title for m in columns] + [f"seed std of {stability.title}"]]
    for model, runs in group(records).items():
        diverged = sum(1 for r in runs if r.get("diverged"))
        row = [model + (f" ({diverged} of {len(runs)} seeds diverged)" if diverged else "")]
        for metric in columns:
            stats = aggregate(runs, metric.name)
            row.append("—" if stats is None else metric.format(stats[0]))
        stats = aggregate(runs, stability.name)
        row.append("—" if stats is None or stats[2] < 2 else f"{stats[1]:.2f}")
        rows.append(row)
    return rows


def markdown_table(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows[1:]])


PROSE_CHARACTERS = 40  # a cell longer than this, with spaces, is a sentence: left-aligned, where numbers align right


def html_table(rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])

    def cell(c: str) -> str:
        prose = len(c) > PROSE_CHARACTERS and " " in c
        return f"<td class='prose'>{html.escape(c)}</td>" if prose else f"<td>{html.escape(c)}</td>"

    body = "".join("<tr>" + "".join(cell(c) for c in row) + "</tr>" for row in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def ranking(records: list[dict], metric: registry.Metric) -> list[tuple[str, float]]:
    """[(model, mean)] of the models that have the metric, best first."""
    scored = [(model, aggregate(runs, metric.name)) for model, runs in group(records).items()]
    return sorted(((m, s[0]) for m, s in scored if s is not None), key=lambda item: -metric.better * item[1])


def metric_text(metric: registry.Metric, value: float) -> str:
    """'Frechet dist. 5.00', 'NLL bound 90.0 nats', '48.9% high quality'."""
    title = metric.title.replace(f" ({metric.unit})", "")
    if metric.unit == "%":
        return f"{metric.format(value)}% {title.replace(' %', '')}"
    unit = {"nats": " nats", "s": " s"}.get(metric.unit, "")
    return f"{title} {metric.format(value)}{unit}"


def _names(models: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return models[0] if len(models) == 1 else f"{', '.join(models[:-1])} and {models[-1]}"


def _equals(metric: registry.Metric, ranked: list, value: float) -> tuple[list[str], list]:
    """(the models of `ranked` that print as `value`, the others in their order)."""
    same = [m for m, v in ranked if metric.format(v) == metric.format(value)]
    return same, [(m, v) for m, v in ranked if m not in same]


def findings(records: list[dict]) -> list[str]:
    """One sentence per question the registry's metrics answer, from these records' numbers."""
    if not records:
        return []
    models = list(group(records))
    kinds = kinds_of(records)
    applicable = [m for m in registry.METRICS if m.data is None or m.data in kinds]
    sentences, collapsed = [], set()
    for metric in (m for m in applicable if m.collapse_below is not None):
        low = [model for model, value in ranking(records, metric) if value < metric.collapse_below]
        collapsed.update(low)
        if low:
            sentences.append(
                f"At this budget {_names(low)} fall below {metric.collapse_below:g} in {metric.title}: they cover almost none "
                "of the data (mode collapse or unfinished training), so the rankings below leave them out where others remain."
            )
    # what the models are for first, what they cost (the run's own metrics) last
    for metric in sorted((m for m in applicable if m.question and m.better), key=lambda m: m.suite == "run"):
        # a collapsed model's precision or sample quality says nothing; its coverage metric itself is ranked in full
        reported = ranking(records, metric)
        ranked = [(m, v) for m, v in reported if metric.collapse_below is not None or m not in collapsed]
        ranked = ranked or reported  # every model collapsed: rank them all
        if not ranked:
            continue
        # models equal at the printed precision share a place: no "ahead of" between equals
        first, rest = _equals(metric, ranked, ranked[0][1])
        verb = "is best" if len(first) == 1 else "tie for best"
        sentence = f"For {metric.question}, {_names(first)} {verb} ({metric_text(metric, ranked[0][1])})"
        if rest:
            runner_up = rest[0][1]
            second, rest = _equals(metric, rest, runner_up)
            sentence += f", ahead of {_names(second)} ({metric.format(runner_up)})"
            if rest:
                last, _ = _equals(metric, rest, rest[-1][1])
                sentence += f"; {_names(last)} {'is' if len(last) == 1 else 'are'} last ({metric.format(rest[-1][1])})"
        if len(reported) < len(models):
            sentence += f"; only {', '.join(m for m, _ in reported)} of the {len(models)} models report it"
        sentences.append(sentence + ".")
    stability = registry.stability_metric(kinds)
    spreads = {m: s for m, s in ((m, aggregate(rs, stability.name)) for m, rs in group(records).items()) if s and s[2] > 1}
    if len(spreads) > 1:

        def relative(m):
            return spreads[m][1] / max(abs(spreads[m][0]), 1e-9)

        steady, shaky = min(spreads, key=relative), max(spreads, key=relative)
        if f"{relative(steady):.1%}" == f"{relative(shaky):.1%}":  # e.g. every model found every mode on every seed
            sentences.append(
                f"Across seeds, no model is steadier than another: each one's {stability.title} varies by "
                f"{relative(steady):.1%} of its mean."
            )
        else:
            sentences.append(
                f"Across seeds, {steady} is the most stable ({stability.title} {spreads[steady][0]:.2f} ± {spreads[steady][1]:.2f}) "
                f"and {shaky} the least ({spreads[shaky][0]:.2f} ± {spreads[shaky][1]:.2f})."
            )
    return sentences


def when_to_use_which(image_records: list[dict], toy_records: list[dict]) -> str:
    """The "which, when" paragraph: the findings on the image data, then on each 2-D dataset."""
    sentences = findings(image_records)
    for dataset in dict.fromkeys(r["dataset"] for r in toy_records):
        runs = [r for r in toy_records if r["dataset"] == dataset]
        sentences += [f"On {dataset}: " + s[0].lower() + s[1:] for s in findings(runs)]
    return " ".join(sentences)


def _figures(out_dir: str, image_records: list[dict], toy_records: list[dict], interpolations: str | None) -> list[tuple[str, str]]:
    """Write the figures; returns (title, file name) of those drawn."""
    figures, runs = [], first_seed(image_records)
    samples = {m: final_file(r["workdir"], "samples") for m, r in runs.items()}
    if figure_of_pngs(os.path.join(out_dir, "fig_samples.png"), samples, "samples (seed of the first run)"):
        figures.append(("Samples, side by side", "fig_samples.png"))
    reconstructions = {m: final_file(r["workdir"], "reconstructions") for m, r in runs.items()}
    if figure_of_pngs(
        os.path.join(out_dir, "fig_reconstructions.png"), reconstructions, "test images (odd rows) and reconstructions (even rows)"
    ):
        figures.append(("Reconstructions, side by side", "fig_reconstructions.png"))
    if loss_figure(os.path.join(out_dir, "fig_losses.png"), image_records):
        figures.append(("Training losses", "fig_losses.png"))
    if curve_figure(os.path.join(out_dir, "fig_frechet.png"), image_records, "Frechet distance (lower is better)"):
        figures.append(("Frechet distance over training", "fig_frechet.png"))
    if interpolations:
        figures.append(("Latent interpolations between two test images", os.path.basename(interpolations)))
    for dataset in dict.fromkeys(r["dataset"] for r in toy_records):
        if toy_figure(os.path.join(out_dir, f"fig_{dataset}.png"), toy_records, dataset):
            figures.append((f"{dataset}: samples over the modes", f"fig_{dataset}.png"))
    return figures


def html_text(text: str) -> str:
    """A section's text as HTML, escaped: a list where every line is a markdown item ('- ', as the setup and the
    Metrics sections are), else a paragraph with its line breaks."""
    lines = text.split("\n")
    if all(line.startswith("- ") for line in lines):
        return "<ul>" + "".join(f"<li>{html.escape(line[2:])}</li>" for line in lines) + "</ul>"
    return "<p>" + html.escape(text).replace("\n", "<br>") + "</p>"


def write_pages(out_dir: str, stem: str, title: str, sections: list, figures: list[tuple[str, str]]) -> dict:
    """<stem>.md and <stem>.html: each section (title, a table as rows or a paragraph), then the figures
    (title, file name in out_dir). Returns {'markdown', 'html'} paths."""
    markdown = [f"# {title}", ""]
    page = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,td.prose{text-align:left}</style>",
        f"</head><body><h1>{html.escape(title)}</h1>",
    ]
    for heading, content in sections:
        markdown += [f"## {heading}", "", markdown_table(content) if isinstance(content, list) else content, ""]
        body = html_table(content) if isinstance(content, list) else html_text(content)
        page.append(f"<h2>{html.escape(heading)}</h2>{body}")
    markdown += ["## Figures", ""]
    page.append("<h2>Figures</h2>")
    for heading, name in figures:
        markdown += [f"### {heading}", "", f"![{heading}]({name})", ""]
        page.append(f"<h3>{html.escape(heading)}</h3><img src='{name}' alt='{html.escape(heading)}' style='max-width:100%'>")
    page.append("</body></html>")
    paths = {"markdown": os.path.join(out_dir, f"{stem}.md"), "html": os.path.join(out_dir, f"{stem}.html")}
    with open(paths["markdown"], "w") as f:
        f.write("\n".join(markdown))
    with open(paths["html"], "w") as f:
        f.write("\n".join(page))
    return paths


def write_report(out_dir: str, image_records: list[dict], toy_records: list[dict], header: dict, interpolations: str | None = None) -> dict:
    """report.md, report.html, records.json and the figures in `out_dir`; returns {'markdown', 'html'} paths."""
    os.makedirs(out_dir, exist_ok=True)
    figures = _figures(out_dir, image_records, toy_records, interpolations)
    sections = [("setup", "\n".join(f"- {k}: {v}" for k, v in header.items()))]
    if image_records:
        sections.append((f"{image_records[0]['dataset']}: every model, same data, same budget", table(image_records)))
    for dataset in dict.fromkeys(r["dataset"] for r in toy_records):
        title = f"{dataset}: mode coverage (VEEGAN/PacGAN protocol, 2,500 samples)"
        sections.append((title, table([r for r in toy_records if r["dataset"] == dataset])))
    sections.append(("When to use which (generated from the numbers above)", when_to_use_which(image_records, toy_records)))
    used = {title for _, content in sections if isinstance(content, list) for title in content[0]}
    notes = [f"{m.title}: {m.reference}" for m in registry.METRICS if m.title in used and m.reference]
    sections.append(("Metrics", "\n".join(f"- {note}" for note in notes)))

    paths = write_pages(out_dir, "report", "genjax comparison report", sections, figures)
    with open(os.path.join(out_dir, "records.json"), "w") as f:
        json.dump({"image": image_records, "toy": toy_records}, f, indent=1, default=float)
    return paths
