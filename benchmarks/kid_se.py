"""Does `kid_se` (genjax.metrics.kid) match KID's actual spread over fresh samples of a trained model?

    python benchmarks/kid_se.py runs/study/runs/dcgan/n4500/setting0/seed0 --sets 200
    python benchmarks/kid_se.py RUN_DIR [RUN_DIR ...] --sets 50 --num_samples 500 --json runs/kid_se.json

For each run directory (any genjax run: a study trial's, an experiment's), KID is measured as the study
measures it, `--num_samples` samples against the test images in the classifier's features, `--sets` times
with fresh sampling keys, the test images held fixed. Each measurement also gives `kid_se`, the standard error
estimated from its one set of samples; the question is whether it equals the standard deviation of the KIDs
over the sets. Reported: the KIDs' mean and standard deviation (ddof 1), kid_se's mean and root mean square
over the sets (the root mean square estimates the same standard deviation without Jensen's bias, since the
variance estimate is unbiased; where it fell below 0 kid_se is 0, which the mean counts too), how many were 0,
and the ratios to the standard deviation. With few sets the standard deviation itself is noisy (its
relative error is about 1 / sqrt(2 (sets - 1)), more for KID's skewed spread), so compare at 100 sets or more.
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # this checkout's genjax

import jax  # noqa: E402

from genjax.errors import EXIT_BAD_INPUT, UserError  # noqa: E402
from genjax.evaluate import draw_samples, load_run  # noqa: E402
from genjax.metrics import kid  # noqa: E402
from genjax.metrics.classifier import NUM_STEPS, images_of, load_classifier  # noqa: E402


def spread(run_dir: str, sets: int, num_samples: int, classifier_steps: int, seed: int) -> dict:
    """KID and kid_se of `sets` fresh sample sets of the run's model against its test images."""
    _, family, state, train, test = load_run(run_dir)
    classifier = load_classifier(train, test, classifier_steps)
    real, _ = classifier.embed(images_of(test))
    kids, errors = [], []
    for i in range(sets):
        fake, _ = classifier.embed(draw_samples(family, state, jax.random.fold_in(jax.random.PRNGKey(seed), i), num_samples))
        measured = kid.kernel_inception_distance(real, fake)
        kids.append(measured["kid"])
        errors.append(measured["kid_se"])
    kids, errors = np.array(kids), np.array(errors)
    std = float(kids.std(ddof=1))
    rms = float(np.sqrt(np.mean(errors**2)))
    return {
        "run": run_dir,
        "sets": sets,
        "kid_mean": float(kids.mean()),
        "kid_std": std,
        "kid_se_mean": float(errors.mean()),
        "kid_se_rms": rms,
        "kid_se_zero": int(np.sum(errors == 0)),
        "mean_ratio": float(errors.mean()) / std if std > 0 else float("nan"),
        "rms_ratio": rms / std if std > 0 else float("nan"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--sets", type=int, default=200, help="fresh sample sets per run")
    parser.add_argument("--num_samples", type=int, default=500, help="samples per set (the study's 500)")
    parser.add_argument("--classifier_steps", type=int, default=NUM_STEPS, help="the feature classifier's (the study's 1500)")
    parser.add_argument("--seed", type=int, default=100, help="sampling keys: fold_in(PRNGKey(seed), set)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.sets < 2 or args.num_samples < 4:
        parser.error("--sets must be >= 2 and --num_samples >= 4 (a standard deviation needs two sets, kid_se four samples)")
    try:
        rows = [spread(run_dir, args.sets, args.num_samples, args.classifier_steps, args.seed) for run_dir in args.run_dirs]
    except UserError as error:  # e.g. a directory that is not a run: one line, exit 2
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(
        "| run | sets | KID mean | KID std over sets | kid_se mean | kid_se rms | kid_se 0 | mean / std | rms / std |\n"
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    )
    for r in rows:
        print(
            f"| {r['run']} | {r['sets']} | {r['kid_mean']:.4g} | {r['kid_std']:.4g} | {r['kid_se_mean']:.4g} | {r['kid_se_rms']:.4g} "
            f"| {r['kid_se_zero']} | {r['mean_ratio']:.2f} | {r['rms_ratio']:.2f} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
