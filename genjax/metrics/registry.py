"""Every metric of the evaluation suite, declared once: what `genjax.evaluate` computes, what the comparison
table shows and what the generated "which, when" paragraph talks about all come from this list.

A metric names the capability a family needs for it (genjax.train.family.CAPABILITIES) and the kind of data
it is defined on, so a new family gets every metric its capabilities allow, and a family that declares a
new capability (say an exact likelihood) gets that metric's column, with no edit anywhere else. Metrics are
computed in suites (`suite`), groups that share their inputs (one set of samples gives the Frechet distance,
precision and recall); genjax.evaluate holds one function per suite. Two suites have none: 'run' (read from
the training run's summary) and 'eval_step' (what a family's own eval_step reports, which genjax.evaluate
runs for every family, e.g. InfoGAN's code purity: its computation needs the family's latent codes).

Data kinds: 'image' (pixels in [0, 1]), 'point' (2-D points) and 'mixture' (2-D points from a mixture with
known modes: ring8, grid25); None means any.
"""

import dataclasses


@dataclasses.dataclass(frozen=True)
class Metric:
    """One metric: its key in eval.json and records, how to show it, when it applies and what it answers.

    better: +1 when higher is better, -1 when lower is, 0 when neither (sizes, times).
    question: the phrase the generated paragraph uses for it ("sample quality"); '' keeps it out.
    collapse_below: a value under which the paragraph calls a model collapsed (recall below 0.1).
    stability: the metric whose seed-to-seed spread the report gives, one per data kind.
    column: shown in the comparison table.
    """

    name: str
    title: str
    suite: str
    better: int = 0
    fmt: str = "{:.3g}"
    unit: str = ""
    needs: str | None = None
    data: str | None = None
    reference: str = ""
    question: str = ""
    collapse_below: float | None = None
    stability: bool = False
    column: bool = True

    def format(self, value) -> str:
        return self.fmt.format(value)


METRICS = (
    # what the training run measured (read from its summary, not computed from the state)
    Metric("num_params", "parameters", "run", fmt="{:,.0f}", reference="trainable parameters (genjax.train.count_params)"),
    Metric("train_seconds", "train s", "run", fmt="{:.0f}", unit="s", reference="training time, compilation excluded"),
    Metric(
        "examples_per_s",
        "examples/s",
        "run",
        better=+1,
        fmt="{:,.0f}",
        unit="1/s",
        reference="training throughput of the first stage",
        question="training speed",
    ),
    # sample quality of image generators, in the features of genjax's classifier
    Metric(
        "frechet_distance",
        "Frechet dist.",
        "sample_quality",
        better=-1,
        fmt="{:.2f}",
        needs="sample",
        data="image",
        reference="Heusel et al. 2017 (FID-style, genjax classifier features)",
        question="sample quality",
        stability=True,
    ),
    Metric(
        "frechet_distance_infinity",
        "FD-inf",
        "sample_quality",
        better=-1,
        fmt="{:.2f}",
        needs="sample",
        data="image",
        reference="Chong & Forsyth 2020: the Frechet distance extrapolated to infinitely many samples (intercept of FD_N "
        "against 1/N over 15 subset sizes; genjax classifier features)",
        column=False,
    ),
    Metric(
        "kid",
        "KID",
        "sample_quality",
        better=-1,
        fmt="{:.4g}",
        needs="sample",
        data="image",
        reference="Binkowski et al. 2018, unbiased MMD^2 with a cubic kernel, mean over 100 subsets of up to 1000 (genjax classifier features)",
    ),
    Metric(
        "kid_std",
        "KID std",
        "sample_quality",
        fmt="{:.4g}",
        needs="sample",
        data="image",
        reference="standard deviation of the KID estimate over its subsets",
        column=False,
    ),
    Metric(
        "kid_se",
        "KID s.e.",
        "sample_quality",
        fmt="{:.4g}",
        needs="sample",
        data="image",
        reference="the KID estimate's sampling standard deviation over fresh generated samples, the real ones held fixed, "
        "estimated from one set (its U-statistic variance, the form of Sutherland et al. 2017; an upper bound with subsets)",
        column=False,
    ),
    Metric(
        "precision",
        "precision",
        "sample_quality",
        better=+1,
        fmt="{:.2f}",
        needs="sample",
        data="image",
        reference="Kynkaanniemi et al. 2019, k = 3",
        question="fidelity of the samples",
    ),
    Metric(
        "recall",
        "recall",
        "sample_quality",
        better=+1,
        fmt="{:.2f}",
        needs="sample",
        data="image",
        reference="Kynkaanniemi et al. 2019, k = 3",
        question="coverage of the data",
        collapse_below=0.1,
    ),
    Metric(
        "density",
        "density",
        "sample_quality",
        better=+1,
        fmt="{:.2f}",
        needs="sample",
        data="image",
        reference="Naeem et al. 2020, k = 5",
        column=False,
    ),
    Metric(
        "coverage",
        "coverage",
        "sample_quality",
        better=+1,
        fmt="{:.2f}",
        needs="sample",
        data="image",
        reference="Naeem et al. 2020, k = 5",
        column=False,
    ),
    Metric(
        "class_kl",
        "class KL",
        "sample_quality",
        better=-1,
        fmt="{:.3f}",
        unit="nats",
        needs="sample",
        data="image",
        reference="KL of the predicted-label histogram from uniform",
        column=False,
    ),
    Metric(
        "classes_covered",
        "classes",
        "sample_quality",
        better=+1,
        fmt="{:.1f}",
        needs="sample",
        data="image",
        reference="classes with at least a quarter of their uniform share of the samples",
    ),
    Metric(
        "classifier_accuracy",
        "classifier accuracy",
        "sample_quality",
        fmt="{:.3f}",
        needs="sample",
        data="image",
        reference="test accuracy of the feature classifier",
        column=False,
    ),
    # a family's discrete code against the data's classes (genjax.metrics.codes), from its own eval_step
    Metric(
        "code_purity",
        "code purity",
        "eval_step",
        better=+1,
        fmt="{:.3f}",
        data="image",
        reference="sum over codes of the largest share of one class among the samples of that code, labelled by the "
        "classifier (InfoGAN's categorical code, Chen et al. 2016); 1 also when all codes make one digit, so read it with code NMI",
    ),
    Metric(
        "code_nmi",
        "code NMI",
        "eval_step",
        better=+1,
        fmt="{:.3f}",
        data="image",
        reference="I(code; classifier label of its samples) / mean of their entropies (arithmetic normalized mutual information)",
    ),
    Metric(
        "q_purity",
        "Q purity",
        "eval_step",
        better=+1,
        fmt="{:.3f}",
        data="image",
        reference="purity of the code the model's inference network predicts for real test digits against their labels "
        "(InfoGAN's Q; Chen et al. 2016 report 5% error on MNIST)",
    ),
    Metric(
        "q_nmi",
        "Q NMI",
        "eval_step",
        better=+1,
        fmt="{:.3f}",
        data="image",
        reference="I(predicted code; label) / mean of their entropies over real test digits",
        column=False,
    ),
    # mode coverage on 2-D mixtures (VEEGAN / PacGAN protocol, genjax.metrics.modes)
    Metric(
        "modes_captured",
        "modes captured",
        "modes",
        better=+1,
        fmt="{:.1f}",
        needs="sample",
        data="mixture",
        reference="modes that are the nearest of at least one high-quality sample of 2,500 (Srivastava et al. 2017)",
        question="mode coverage",
        stability=True,
    ),
    Metric("num_modes", "modes", "modes", fmt="{:.0f}", needs="sample", data="mixture", column=False),
    Metric(
        "high_quality_percent",
        "high quality %",
        "modes",
        better=+1,
        fmt="{:.1f}",
        unit="%",
        needs="sample",
        data="mixture",
        reference="samples within 3 standard deviations of their nearest mode",
        question="samples on the modes",
    ),
    Metric(
        "reverse_kl",
        "reverse KL",
        "modes",
        better=-1,
        fmt="{:.3f}",
        unit="nats",
        needs="sample",
        data="mixture",
        reference="KL(generated || uniform) of the modes of the high-quality samples (Lin et al. 2018)",
    ),
    # reconstruction and likelihood
    Metric(
        "recon_mse",
        "recon. MSE",
        "reconstruction",
        better=-1,
        fmt="{:.4f}",
        needs="reconstruct",
        data="image",
        reference="squared error per pixel of test reconstructions",
        question="reconstruction",
    ),
    Metric(
        "nll_iwae",
        "NLL bound (nats)",
        "likelihood_bound",
        better=-1,
        fmt="{:.1f}",
        unit="nats",
        needs="likelihood_bound",
        reference="-L_K, the importance-weighted bound (Burda et al. 2016), of the family's own likelihood: for images "
        "a Bernoulli likelihood of [0, 1] intensities, which is not a density of 8-bit images",
        question="a likelihood bound",
    ),
    Metric(
        "nll_exact",
        "NLL exact (nats)",
        "exact_likelihood",
        better=-1,
        fmt="{:.1f}",
        unit="nats",
        needs="exact_likelihood",
        reference="-log p(x) from the family's log_likelihood; for images, of the 8-bit image under uniform dequantization "
        "(Theis et al. 2016), so not comparable with the Bernoulli bound: a column of its own",
        question="an exact likelihood",
    ),
)
BY_NAME = {metric.name: metric for metric in METRICS}


def data_kinds(data_key: str, dataset_name: str, mixtures=("ring8", "grid25")) -> frozenset:
    """The data kinds a dataset is: {'image'}, {'point'} or {'point', 'mixture'}."""
    if data_key == "image":
        return frozenset({"image"})
    return frozenset({"point", "mixture"} if dataset_name in mixtures else {"point"})


def applies(metric: Metric, capabilities, kinds) -> bool:
    """Whether a family with these capabilities, on data of these kinds, gets `metric`."""
    return (metric.needs is None or metric.needs in capabilities) and (metric.data is None or metric.data in kinds)


def suite_metrics(suite: str) -> tuple[Metric, ...]:
    return tuple(metric for metric in METRICS if metric.suite == suite)


def columns(kinds) -> tuple[Metric, ...]:
    """The table columns for records of these data kinds, in declaration order."""
    return tuple(metric for metric in METRICS if metric.column and (metric.data is None or metric.data in kinds))


def stability_metric(kinds) -> Metric:
    """The metric whose seed spread the table shows for these data kinds (the most specific kind wins)."""
    return [metric for metric in METRICS if metric.stability and metric.data in kinds][-1]
