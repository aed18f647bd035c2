"""The benchmark tools: the per-operation step profile attributes a conv model's time to its operations."""

import json
import os
import re
import subprocess
import sys

from tests.conftest import REPO

sys.path.insert(0, os.path.join(REPO, "benchmarks"))

import profile_step  # noqa: E402


def test_operations_are_classified_by_what_they_compute():
    ynn = '%ynn_fusion.3 = f32[32,4,4,64]{3,2,1,0} fusion(%a, %b), kind=kCustom, calls=%c, backend_config={"fusion_config":{"kind":"__ynn_fusion"}}'
    assert profile_step.kind_of(ynn, "fusion", "ROOT %d = f32[32,4,4,64] convolution(%p0, %p1)") == "library conv/matmul"
    assert profile_step.kind_of("%c = f32[8,7,7,4] convolution(%a, %b)", "convolution", "") == "XLA convolution"
    assert profile_step.kind_of("%f = f32[8,4] fusion(%a), calls=%g", "fusion", "ROOT %d = f32[8,4] dot(%a, %b)") == "XLA dot"
    assert profile_step.kind_of("%f = f32[8,4] fusion(%a), calls=%g", "fusion", "%t = f32[4,8] transpose(%a)") == "transpose/copy"
    assert profile_step.kind_of("%f = f32[8,4] fusion(%a), calls=%g", "fusion", "%m = f32[8,4] maximum(%a, %b)") == "elementwise/other"


def test_sources_name_the_module_and_the_direction():
    forward = "jit(train_step)/jvp(VAE)/VAE.encode/encoder/Conv_1/conv_general_dilated"
    backward = "jit(train_step)/transpose(jvp(VAE))/VAE.decode/decoder/Upsample2x_0/Conv_0/conv_general_dilated"
    assert profile_step.short_source(forward) == "VAE.encode/encoder/Conv_1"
    assert profile_step.short_source(backward) == "backward VAE.decode/decoder/Upsample2x_0/Conv_0"


def test_the_profile_of_the_conv_vae_step_attributes_its_convolutions(tmp_path):
    out = tmp_path / "profile.json"
    script = os.path.join(REPO, "benchmarks", "profile_step.py")
    result = subprocess.run(
        [sys.executable, script, "vae_conv", "--steps", "2", "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    profile = json.loads(out.read_text())
    assert profile["step_wall_ms"] > 0 and profile["ops"]
    assert abs(sum(op["ms_per_step"] for op in profile["ops"]) - sum(profile["by_kind"].values())) < 1e-6
    convolutions = [op for op in profile["ops"] if op["kind"] in ("library conv/matmul", "XLA convolution")]
    # the conv VAE computes two encoder and two decoder convolutions forward, and their gradients backward
    assert any(op["source"].count("encoder/Conv_") for op in convolutions)
    assert any("transpose(jvp" in op["source"] and "decoder" in op["source"] for op in convolutions)
    assert "| kind | ms/step | share |" in result.stdout


def test_the_trials_benchmark_reports_trials_per_hour_and_the_share_of_the_matmul_peak():
    script = os.path.join(REPO, "benchmarks", "trials.py")
    argv = [
        sys.executable,
        script,
        "gan",
        "--trials",
        "2",
        "--steps",
        "20",
        "--chunk",
        "10",
        "--trial_steps",
        "1000",
        "--peak_sizes",
        "256",
    ]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    row = next(line for line in result.stdout.splitlines() if line.startswith("| gan | 2 |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    number = lambda text: float(text.rstrip("x%").replace(",", ""))  # noqa: E731
    vmapped, engine, per_hour_vmapped, per_hour_engine = (number(cells[i]) for i in (2, 5, 8, 9))
    # trials of 1,000 steps at batch 64: images/s x 3600 / 64,000, to the printed precision: both are rounded to
    # integers, so half a trial an hour plus half an image a second's share of it (0.5 x 3600 / 64,000)
    tolerance = 0.5 + 0.5 * 3600 / 64000
    assert abs(per_hour_vmapped - vmapped * 3600 / 64000) <= tolerance
    assert abs(per_hour_engine - engine * 3600 / 64000) <= tolerance
    share_vmapped, share_engine = number(cells[10]), number(cells[11])
    assert share_vmapped > 0 and share_engine > 0
    # the same FLOPs per image on both sides, so the shares stand as the speeds do
    assert abs(share_vmapped / share_engine - vmapped / engine) < 0.1 * vmapped / engine + 0.02
    # the peak is timed before and after the models, and the shares are of the higher
    assert re.search(r"matmul peak .*: [\d,.]+ GFLOP/s before the models, [\d,.]+ after", result.stdout)


def test_the_kid_se_check_measures_the_spread_of_kid_over_fresh_sample_sets(tmp_path):
    from tests.conftest import run_module

    run_dir = str(tmp_path / "run")
    tiny = ["--config.hidden_sizes=(32,)", "--config.latent_dim=2", "--config.batch_size=32", "--config.num_steps=20"]
    trained = run_module("experiments.vae_mnist", f"--workdir={run_dir}", *tiny, "--config.num_samples=16")
    assert trained.returncode == 0, trained.stderr[-2000:]
    script = os.path.join(REPO, "benchmarks", "kid_se.py")
    out = str(tmp_path / "kid_se.json")
    argv = [sys.executable, script, run_dir, "--sets", "4", "--num_samples", "40", "--classifier_steps", "100", "--json", out]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    with open(out) as f:
        (row,) = json.load(f)
    assert row["sets"] == 4 and row["kid_std"] > 0 and 0 <= row["kid_se_zero"] <= 4
    # the root mean square is at least the mean (kid_se >= 0), and each ratio is its kid_se over the KIDs' spread
    assert row["kid_se_rms"] >= row["kid_se_mean"] >= 0
    assert abs(row["mean_ratio"] - row["kid_se_mean"] / row["kid_std"]) < 1e-9
    assert abs(row["rms_ratio"] - row["kid_se_rms"] / row["kid_std"]) < 1e-9
    printed = next(line for line in result.stdout.splitlines() if line.startswith(f"| {run_dir} | 4 |"))
    assert printed.rstrip(" |").endswith(f"{row['rms_ratio']:.2f}")
    # a directory that is not a run: one line naming it, exit 2
    bad = subprocess.run([sys.executable, script, str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "is not a genjax run directory" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_the_one_fusion_update_is_adam_and_the_weight_average():
    import jax
    import jax.numpy as jnp
    import ml_collections
    import numpy as np
    import optax
    import optimizer_passes

    config = ml_collections.ConfigDict(dict(learning_rate=3e-3, adam_b1=0.7, adam_b2=0.99, ema_decay=0.9))
    keys = jax.random.split(jax.random.PRNGKey(0), 6)
    params = {"w": jax.random.normal(keys[0], (5, 3)), "b": jax.random.normal(keys[1], (3,))}
    tx = optax.adam(config.learning_rate, b1=config.adam_b1, b2=config.adam_b2)
    ours, opt_state, average = params, tx.init(params), params
    stacked, count = jax.tree.map(lambda p: jnp.stack([p, jnp.zeros_like(p), jnp.zeros_like(p), p]), params), jnp.int32(0)
    for key in keys[2:]:
        grads = jax.tree.map(lambda p: jax.random.normal(key, p.shape), params)
        updates, opt_state = tx.update(grads, opt_state, ours)
        ours = optax.apply_updates(ours, updates)
        average = optax.incremental_update(ours, average, 1 - config.ema_decay)
        stacked, count = optimizer_passes.one_pass_update(stacked, grads, count, config)
    mu, nu = opt_state[0].mu, opt_state[0].nu
    for row, expected in enumerate((ours, mu, nu, average)):
        for name in params:
            np.testing.assert_allclose(stacked[name][row], expected[name], rtol=1e-5, atol=1e-7)
    assert int(count) == 4


def test_the_optimizer_passes_benchmark_bounds_the_step_with_a_free_update(tmp_path):
    script = os.path.join(REPO, "benchmarks", "optimizer_passes.py")
    out = tmp_path / "passes.json"
    argv = [sys.executable, script, "--trials", "2", "--calls", "2", "--repeats", "1", "--scan", "2", "--peak_sizes", "256"]
    result = subprocess.run([*argv, "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    r = json.loads(out.read_text())
    assert r["trials"] == 2 and r["batch_size"] == 64 and min(r["optax_ms"], r["fused_ms"], r["step_ms"]) > 0
    assert abs(r["step_ms"] - 2 * 64 / r["images_per_s"] * 1e3) < 1e-6 * r["step_ms"]
    assert abs(r["update_share_of_step"] - r["optax_ms"] / r["step_ms"]) < 1e-9
    # the bound scales the step's share by step / (step - update)
    expected = r["step_of_peak"] * r["step_ms"] / (r["step_ms"] - r["optax_ms"])
    assert abs(r["step_of_peak_update_free"] - expected) < 1e-9 * expected
    assert f"{r['step_of_peak']:.0%} of the peak" in result.stdout
    bad = subprocess.run([sys.executable, script, "--trials", "0"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "--trials" in bad.stderr.strip().splitlines()[-1]
