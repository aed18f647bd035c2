"""The study: which model, when. Every family tuned with the same hyperparameter budget (K settings from its
declared search space), measured along its training (the budget axis) on several training-set sizes, the
best settings re-seeded for intervals, and a report of which family wins where (Lucic et al. 2018).

    python -m experiments.study --quick        # the whole pipeline at a tiny size
    python -m experiments.study                # the default study (see experiments/study.py)

genjax.study.plan (protocol, units, checks), .trials (one trial along its budget points), .run (units,
re-seeding, slices and merging), .analysis (intervals, the map, expected best), .report and .figures.
"""

from genjax import data
from genjax.comparison import floor_text, real_data_floor
from genjax.compilation_cache import enable_compilation_cache
from genjax.metrics.classifier import load_classifier
from genjax.study.plan import Protocol, check, check_data_sizes
from genjax.study.report import write_study_report
from genjax.study.run import merged_protocol, read_units, run_study

__all__ = ["Protocol", "merge", "study"]


def reseeding_text(protocol: Protocol) -> str:
    """The setup's clause on re-seeding: its seeds, and what a study with fewer than two can report (no intervals)."""
    if not protocol.reseeds:  # the default is not re-seeded either (run.py trains no re-seeds at all)
        return "the best setting per point not re-trained with more seeds (--reseeds 0): every number is the search seed's, no intervals"
    text = f"the best setting per point re-trained with {protocol.reseeds} more seed{'s' if protocol.reseeds > 1 else ''}"
    text += ", and the default setting at every point" if protocol.reseed_default else ""
    if protocol.reseeds == 1:
        text += " (one seed: its numbers are reported, with no intervals)"
    return text


def header(protocol: Protocol, contenders: dict) -> dict:
    """The report's setup lines, with the real-data floor of the sample metrics at the study's N."""
    train, test = data.load(protocol.dataset, "train"), data.load(protocol.dataset, "test")
    classifier = load_classifier(train, test, protocol.classifier_steps)
    floor = real_data_floor(classifier, train, test, protocol.num_samples)
    budgets = ", ".join(f"{b:g}" for b in protocol.budgets)
    return {
        "dataset": f"{train.name} ({train.source}), training sets of {', '.join(map(str, protocol.data_sizes))} of its "
        f"{train.num_examples} training images; {test.num_examples} test images",
        "families": "; ".join(f"{name}: {contenders[name].description}" for name in protocol.families),
        "protocol": f"K = {protocol.num_settings} settings per family (setting 0: the experiment's defaults) drawn with seed "
        f"{protocol.search_seed}; budget points {budgets} {protocol.unit} along one run; batch {protocol.batch_size}; "
        + reseeding_text(protocol)
        + "; selection by KID on the search seed",
        "sample metrics": f"{protocol.num_samples} samples against the {test.num_examples} test images in genjax's classifier "
        f"features (test accuracy {classifier.test_accuracy:.3f}); floor at this N (real training images): "
        + floor_text(floor, ("frechet_distance", "frechet_distance_infinity", "kid", "recall")),
        "likelihood": f"IWAE K = {protocol.iwae_samples}; exact NLL over the first {protocol.likelihood_examples} test images",
        "protocol id": f"{protocol.fingerprint()} (trials: {protocol.trial_fingerprint()}, shared by every family list)",
    }


def study(protocol: Protocol, contenders: dict, root: str, shard: tuple[int, int] = (0, 1)) -> dict | None:
    """Run the study (or its slice `shard`) in `root`; returns the report's paths, or None for a slice."""
    # before the first program: the classifier's, the groups' and their evaluations' compile into the persistent
    # cache too, not only those compiled after the first fit (genjax.experiment.fit_one) turned it on
    enable_compilation_cache()
    units = run_study(protocol, contenders, root, shard)
    if shard[1] > 1:
        return None
    return write_study_report(root, protocol, units, header(protocol, contenders))


def merge(roots: list[str], out: str, contenders: dict) -> dict:
    """The report of a study run in slices, from their workdirs, written to `out`: every family of every slice."""
    enable_compilation_cache()  # the classifier's and the floor's programs (the header)
    protocol = merged_protocol(roots)
    check(protocol, contenders)
    check_data_sizes(protocol, data.load(protocol.dataset, "train").num_examples)
    units = read_units(protocol, roots)
    return write_study_report(out, protocol, units, header(protocol, contenders))
