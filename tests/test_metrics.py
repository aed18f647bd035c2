"""Metric correctness on known cases (KID against a brute-force double loop), the IWAE bound, the classifier and
`python -m genjax.evaluate`."""

import json
import math

import jax
import numpy as np
import pytest

from genjax import data, experiment
from genjax.metrics import classes, frechet, kid, manifold, modes, sample_quality
from genjax.metrics.classifier import images_of, load_classifier
from genjax.metrics.likelihood import importance_weighted_bound
from tests.conftest import run_module, tiny_vae_config


def test_frechet_distance_closed_form():
    # N(0, 1) vs N(1, 4) in 1-D: (0 - 1)^2 + 1 + 4 - 2 * sqrt(1 * 4) = 2
    assert frechet.frechet_distance(np.zeros(1), np.eye(1), np.ones(1), 4 * np.eye(1)) == pytest.approx(2.0)
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    cov = a @ a.T + np.eye(5)
    assert frechet.frechet_distance(np.ones(5), cov, np.ones(5), cov) == pytest.approx(0.0, abs=1e-8)


def test_frechet_distance_of_a_set_with_itself_is_zero_and_grows_with_noise():
    features = np.random.default_rng(1).normal(size=(2000, 16))
    assert frechet.frechet_distance_between(features, features) == pytest.approx(0.0, abs=1e-6)
    noise = np.random.default_rng(2).normal(size=features.shape)
    distances = [frechet.frechet_distance_between(features, features + s * noise) for s in (0.1, 0.5, 1.0, 2.0)]
    assert all(a < b for a, b in zip(distances, distances[1:])), distances


@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_fd_infinity_removes_most_of_the_small_sample_bias(shift):
    # N(0, I) against N(shift, I) in 32-D: the true distance is 32 shift^2; over 20 draws of 500 samples FD
    # overshoots it by about 0.5 on average (the 1/N bias of Chong & Forsyth 2020), FD-infinity does not. One
    # draw is noisier than that (its sample mean), so the test is about the means: bias, not variance.
    rng = np.random.default_rng(4)
    real, truth = rng.normal(size=(20000, 32)), 32 * shift**2
    fakes = [rng.normal(size=(500, 32)) + shift for _ in range(20)]
    bias_at_n = np.mean([frechet.frechet_distance_between(real, fake) for fake in fakes]) - truth
    bias_infinity = np.mean([frechet.frechet_distance_infinity(real, fake, seed=i) for i, fake in enumerate(fakes)]) - truth
    assert bias_at_n > 0.3, bias_at_n  # the bias is there to remove
    assert abs(bias_infinity) < bias_at_n / 4, (bias_infinity, bias_at_n)


def test_fd_infinity_is_the_intercept_of_the_least_squares_line_through_its_sizes():
    rng = np.random.default_rng(5)
    real, fake = rng.normal(size=(1000, 8)), rng.normal(size=(300, 8)) * 1.5
    sizes = frechet.fd_infinity_sizes(300, 8)
    assert sizes[0] == 30 and sizes[-1] == 300 and len(sizes) == frechet.FD_INFINITY_SIZES  # N / 10 .. N
    assert frechet.fd_infinity_sizes(500, 128)[0] == 250 and frechet.fd_infinity_sizes(50000, 128)[0] == 5000  # 2 D; the paper's
    picks = np.random.default_rng(0)
    distances = [frechet.frechet_distance_between(real, fake[picks.choice(300, n, replace=False)]) for n in sizes]
    x, y = 1.0 / sizes, np.asarray(distances)  # the normal equations of y = a + b x, by hand
    slope = np.sum((x - x.mean()) * (y - y.mean())) / np.sum((x - x.mean()) ** 2)
    assert frechet.frechet_distance_infinity(real, fake) == pytest.approx(y.mean() - slope * x.mean(), rel=1e-9)
    with pytest.raises(ValueError, match="at least 3 generated samples"):
        frechet.frechet_distance_infinity(real, fake[:2])


def _brute_force_mmd2(x, y):
    """MMD^2_u with the cubic kernel (x.y / d + 1)^3, written as the double sums of its definition, in float64."""
    d = x.shape[1]

    def k(a, b):
        return (sum(float(a[t]) * float(b[t]) for t in range(d)) / d + 1.0) ** 3

    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_kid_equals_a_brute_force_double_loop():
    rng = np.random.default_rng(7)
    real, fake = rng.normal(size=(30, 5)), rng.normal(0.3, 1.2, size=(30, 5))
    expected = _brute_force_mmd2(real, fake)
    # one subset of the full sets is a permutation of them, which the estimate does not see
    result = kid.kernel_inception_distance(real, fake, num_subsets=1)
    assert result["kid"] == pytest.approx(expected, abs=1e-10) and result["kid_std"] == 0.0
    assert kid.unbiased_mmd2(real, fake[:20]) == pytest.approx(_brute_force_mmd2(real, fake[:20]), abs=1e-10)  # m != n
    # subsets: the draws the module documents, reproduced here (per subset the real indices, then the fake)
    fake = rng.normal(size=(25, 5)) + 0.5
    draws = np.random.default_rng(3)
    estimates = []
    for _ in range(4):
        x = real[draws.choice(30, 10, replace=False)]
        estimates.append(_brute_force_mmd2(x, fake[draws.choice(25, 10, replace=False)]))
    np.testing.assert_allclose(kid.subset_estimates(real, fake, num_subsets=4, subset_size=10, seed=3), estimates, rtol=0, atol=1e-10)
    result = kid.kernel_inception_distance(real, fake, num_subsets=4, subset_size=10, seed=3)
    assert result["kid"] == pytest.approx(np.mean(estimates), abs=1e-10) and result["kid_std"] == pytest.approx(
        np.std(estimates), abs=1e-10
    )
    with pytest.raises(ValueError, match="subset_size"):
        kid.kernel_inception_distance(real, fake, subset_size=26)


def test_kid_on_two_whole_sets_is_one_estimate_computed_once(monkeypatch):
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(40, 6)), rng.normal(0.2, 1.1, size=(40, 6))
    expected = _brute_force_mmd2(real, fake)
    calls = []
    monkeypatch.setattr(kid, "mmd2_and_variance", lambda x, y, f=kid.mmd2_and_variance: calls.append(len(x)) or f(x, y))
    result = kid.kernel_inception_distance(real, fake)  # subset_size = min(1000, 40, 40): each subset is a whole set
    assert calls == [40] and result["kid"] == pytest.approx(expected, abs=1e-10) and result["kid_std"] == 0.0
    assert result["kid_se"] == pytest.approx(math.sqrt(kid.mmd2_and_variance(real, fake)[1]))
    calls.clear()
    kid.kernel_inception_distance(real, fake[:39])  # unequal sets: subsets of the larger one differ, 100 draws
    assert calls == [39] * 100


def _brute_force_mmd2_variance(x, y):
    """Var MMD^2_u over fresh y, x fixed, estimated as the module documents, with every moment an explicit
    average over distinct indices of h(y_i, y_j) = k(y_i, y_j) - g(y_i) - g(y_j), g(y) = mean_x k(x, y), in loops."""
    n, d = len(y), x.shape[1]
    k = lambda a, b: (float(np.dot(a, b)) / d + 1.0) ** 3  # noqa: E731
    g = [np.mean([k(a, y[j]) for a in x]) for j in range(n)]
    h = [[k(y[i], y[j]) - g[i] - g[j] for j in range(n)] for i in range(n)]
    idx = range(n)
    pairs = [(i, j) for i in idx for j in idx if i != j]
    triples = [(i, j, p) for i in idx for j in idx for p in idx if len({i, j, p}) == 3]
    quadruples = [(i, j, p, q) for i in idx for j in idx for p in idx for q in idx if len({i, j, p, q}) == 4]
    mean_squared = np.mean([h[i][j] * h[p][q] for i, j, p, q in quadruples])
    zeta_1 = np.mean([h[i][j] * h[i][p] for i, j, p in triples]) - mean_squared
    zeta_2 = np.mean([h[i][j] ** 2 for i, j in pairs]) - mean_squared
    return 4 * (n - 2) / (n * (n - 1)) * zeta_1 + 2 / (n * (n - 1)) * zeta_2


def test_kid_variance_equals_its_moments_written_as_sums_over_distinct_indices():
    rng = np.random.default_rng(12)
    x, y = rng.normal(size=(6, 3)), rng.normal(0.4, 1.3, size=(7, 3))  # 6 real, 7 generated
    estimate, variance = kid.mmd2_and_variance(x, y)
    assert estimate == pytest.approx(_brute_force_mmd2(x, y), abs=1e-10)
    assert variance == pytest.approx(_brute_force_mmd2_variance(x, y), rel=1e-9)
    with pytest.raises(ValueError, match=">= 4 generated examples"):
        kid.mmd2_and_variance(x, y[:3])


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_kid_standard_error_matches_the_spread_of_kid_over_fresh_samples(shift):
    """The point of kid_se: from one set of samples it estimates how much the KID would move over fresh samples
    of the same model against the same real set. On 4-D Gaussians (60 real, 50 generated; shift 0: one
    distribution), its mean over 2,000 sample sets against the variance of the 2,000 KIDs (whose own relative
    noise is a few percent)."""
    rng = np.random.default_rng(13)
    real = rng.normal(size=(60, 4))
    draws = [kid.mmd2_and_variance(real, rng.normal(shift, 1.0, size=(50, 4))) for _ in range(2000)]
    estimates, variances = np.array(draws).T
    ratio = variances.mean() / estimates.var(ddof=1)
    assert abs(ratio - 1) < 0.1, ratio
    # against fresh real sets too the spread is larger: the real set's share, common to models compared on it
    both = np.array([kid.unbiased_mmd2(rng.normal(size=(60, 4)), rng.normal(shift, 1.0, size=(50, 4))) for _ in range(2000)])
    assert both.var(ddof=1) > 1.1 * estimates.var(ddof=1)


def test_kid_of_one_distribution_is_zero_on_average_and_its_estimates_can_be_negative():
    rng = np.random.default_rng(8)
    n, m, subsets = 4000, 100, 100
    real, fake = rng.normal(size=(n, 8)), rng.normal(size=(n, 8))
    estimates = kid.subset_estimates(real, fake, num_subsets=subsets, subset_size=m, seed=0)
    result = kid.kernel_inception_distance(real, fake, num_subsets=subsets, subset_size=m, seed=0)
    assert result["kid"] == pytest.approx(estimates.mean()) and result["kid_std"] == pytest.approx(estimates.std())
    # The mean's error is that of averaging the subset draws (std / sqrt(subsets)) plus that of the estimate on
    # the full sets, which for one distribution (a degenerate U-statistic, spread ~ 1/size) is about std * m / n.
    assert abs(result["kid"]) < 3 * result["kid_std"] * math.sqrt(1 / subsets + (m / n) ** 2), result
    assert (estimates < 0).any() and (estimates > 0).any()  # unbiased: single estimates fall on both sides of 0


def test_kid_is_positive_and_grows_with_a_shift_of_the_fakes():
    rng = np.random.default_rng(9)
    real, fake = rng.normal(size=(500, 16)), rng.normal(size=(500, 16))
    results = [kid.kernel_inception_distance(real, fake + shift, num_subsets=20, subset_size=200) for shift in (0.1, 0.5, 1.0)]
    values = [r["kid"] for r in results]
    # shift 0.1 in 16 dimensions: MMD^2 ~ 0.02 against a subset spread ~ 0.015, clear of the mean's error
    assert values[0] > 3 * results[0]["kid_std"] / math.sqrt(20), results
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_sample_quality_reports_kid_on_the_classifier_features():
    class Features:  # the classifier's embed: (features, logits)
        def embed(self, images):
            flat = images.reshape(len(images), -1)
            return flat, flat[:, :10]

    rng = np.random.default_rng(10)
    real, fake = rng.uniform(size=(200, 4, 4, 1)), rng.uniform(size=(150, 4, 4, 1)) ** 2
    result = sample_quality(Features(), real, fake, num_classes=10)
    assert {"frechet_distance", "frechet_distance_infinity", "kid", "kid_std", "kid_se", "precision", "recall", "classes_covered"} <= set(
        result
    )
    assert result["kid"] == kid.kernel_inception_distance(real.reshape(200, -1), fake.reshape(150, -1))["kid"] > 0


def test_precision_recall_density_coverage_on_identical_and_disjoint_sets():
    real = np.random.default_rng(3).normal(size=(500, 8))
    same = manifold.precision_recall(real, real)
    assert same == {"precision": 1.0, "recall": 1.0}
    assert manifold.density_coverage(real, real)["coverage"] == 1.0
    far = manifold.precision_recall(real, real + 100.0)
    assert far == {"precision": 0.0, "recall": 0.0}
    assert manifold.density_coverage(real, real + 100.0) == {"density": 0.0, "coverage": 0.0}


def test_precision_drops_for_outliers_and_recall_for_a_collapsed_generator():
    real = np.random.default_rng(4).normal(size=(500, 8))
    half_outliers = np.concatenate([real[:250], real[:250] + 50.0])
    assert manifold.precision_recall(real, half_outliers)["precision"] == pytest.approx(0.5, abs=0.02)
    collapsed = real[:1] + 0.01 * np.random.default_rng(5).normal(size=(500, 8))
    assert manifold.precision_recall(real, collapsed)["recall"] < 0.05


def test_exact_ring8_samples_capture_8_modes_at_full_quality():
    points, _ = data.sample_toy("ring8", jax.random.PRNGKey(0), modes.NUM_SAMPLES)
    means, std = data.mixture_modes("ring8")
    result = modes.mode_coverage(np.asarray(points), means, std)
    assert result["modes_captured"] == 8 and result["num_modes"] == 8
    assert result["high_quality_percent"] > 99.0 and result["reverse_kl"] < 0.01


def test_samples_from_one_mode_capture_one():
    means, std = data.mixture_modes("grid25")
    points = means[3] + std * np.random.default_rng(6).normal(size=(2500, 2))
    result = modes.mode_coverage(points, means, std)
    assert result["modes_captured"] == 1 and result["reverse_kl"] == pytest.approx(math.log(25), rel=1e-6)
    nowhere = modes.mode_coverage(np.full((10, 2), 100.0), means, std)
    assert nowhere["modes_captured"] == 0 and nowhere["high_quality_percent"] == 0.0


def test_class_coverage():
    uniform = classes.class_coverage(np.arange(1000) % 10, 10)
    assert uniform == {"class_kl": pytest.approx(0.0, abs=1e-12), "classes_covered": 10}
    single = classes.class_coverage(np.full(1000, 3), 10)
    assert single == {"class_kl": pytest.approx(math.log(10)), "classes_covered": 1}


@pytest.fixture(scope="module")
def trained_vae(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("vae")
    return experiment.run(tiny_vae_config(num_steps=200, eval_every=200, checkpoint_every=200), str(workdir), "vae_mnist"), workdir


def test_iwae_bound_is_at_least_the_elbo(trained_vae, mnist):
    result, _ = trained_vae
    from genjax.models import vae

    family = vae.make_family(tiny_vae_config(), mnist[0])
    images = images_of(mnist[1])[:100]
    key = jax.random.PRNGKey(0)
    elbo = importance_weighted_bound(family.importance_log_weights, result.state, images, key, num_samples=1, chunk=1)
    iwae = importance_weighted_bound(family.importance_log_weights, result.state, images, key, num_samples=200, chunk=50)
    assert iwae.shape == (100,) and np.isfinite(iwae).all()
    assert iwae.mean() > elbo.mean() + 0.5  # a trained 4-d VAE leaves a gap of several nats
    assert -elbo.mean() == pytest.approx(result.summary["test"]["neg_elbo"], rel=0.02)  # L_1 is the ELBO


def test_classifier_is_accurate_cached_and_gives_features(mnist, tmp_path, monkeypatch):
    monkeypatch.setenv("GENJAX_CACHE_DIR", str(tmp_path))  # a fresh cache: this test trains it
    classifier = load_classifier(*mnist, num_steps=300)
    assert classifier.test_accuracy > 0.85
    features, logits = classifier.embed(images_of(mnist[1])[:50])
    assert features.shape == (50, 128) and logits.shape == (50, 10)
    checkpoints_before = sorted((tmp_path / "classifier").rglob("checkpoints/*"))
    again = load_classifier(*mnist, num_steps=300)
    assert again.test_accuracy == classifier.test_accuracy
    assert sorted((tmp_path / "classifier").rglob("checkpoints/*")) == checkpoints_before  # restored, not retrained


def test_evaluate_a_run_directory(trained_vae, tmp_path):
    _, workdir = trained_vae
    result = run_module("genjax.evaluate", str(workdir), "--num_samples=200", "--iwae_samples=50", "--classifier_steps=300")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.load(open(workdir / "eval.json"))
    for name in [
        "neg_elbo",
        "frechet_distance",
        "frechet_distance_infinity",
        "kid",
        "kid_std",
        "kid_se",
        "precision",
        "recall",
        "density",
        "coverage",
        "class_kl",
        "classes_covered",
        "classifier_accuracy",
        "recon_mse",
        "nll_iwae",
        "num_params",
    ]:
        assert name in metrics and np.isfinite(metrics[name]), name
    assert metrics["nll_iwae"] <= metrics["neg_elbo"] + 1.0


def test_evaluate_refuses_a_directory_that_is_not_a_run(tmp_path):
    result = run_module("genjax.evaluate", str(tmp_path))
    assert result.returncode == 2 and "is not a genjax run directory" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "args, corrupt, message",
    [(["--num_samples=0"], False, "--num_samples must be at least 10, got 0"), ([], True, "config.json is not valid JSON")],
)
def test_evaluate_refuses_bad_counts_and_a_corrupt_config_in_one_line(tmp_path, capsys, args, corrupt, message):
    from genjax.evaluate import main

    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text("{bad" if corrupt else "{}")
    assert main([str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
