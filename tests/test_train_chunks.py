"""The engine's two ways to run a chunk of steps (lax.scan, or one jitted call per step) train alike."""

import jax
import numpy as np

from genjax.data import batch_indices, to_model_batch
from genjax.models import vae
from genjax.train import policy
from genjax.train.chunks import TrainChunks
from genjax.train.loop import Keys
from genjax.train.parallel import global_array, make_mesh, put_data_shards, replicated
from tests.conftest import tiny_vae_config


def _train(family, train, scan, chunks, rows=None):
    """Train len(chunks) chunks of the given lengths from the same initial state; (runner, params, metrics)."""
    mesh, keys = make_mesh(), Keys.from_seed(0)
    state = jax.jit(family.init)(keys.init, to_model_batch(train.take(np.arange(8))))
    data, key = put_data_shards(mesh, train.arrays, 1), global_array(keys.train, replicated(mesh))
    runner, step, metrics = TrainChunks(family, mesh, scan=scan), 0, []
    for length in chunks:
        state, chunk_metrics = runner(state, data, batch_indices(0, train.num_examples, 8, step, length), step, key, rows)
        metrics.append(jax.device_get(chunk_metrics)["loss"])
        step += length
    return runner, jax.device_get(state["params"]), np.concatenate(metrics)


def test_step_by_step_equals_scan_and_convolutions_choose_it_on_cpu(mnist):
    train = mnist[0]
    config = tiny_vae_config(architecture="conv", conv_channels=(4, 8), latent_dim=2, batch_size=8)
    family = vae.make_family(config, train)
    _, scanned, scanned_losses = _train(family, train, scan=True, chunks=(6,))
    assert family.convolutional and not policy.scan_chunks("cpu", family.convolutional)  # the policy steps conv families on CPU
    auto, stepped, stepped_losses = _train(family, train, scan=False, chunks=(4, 2), rows=4)
    assert list(auto.compiled) == ["step"]  # both chunk lengths share one compiled step
    np.testing.assert_allclose(stepped_losses, scanned_losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), stepped, scanned)

    mlp = vae.make_family(tiny_vae_config(batch_size=8), train)
    assert not mlp.convolutional and policy.scan_chunks("cpu", mlp.convolutional)  # no convolution: one scan per chunk
    assert policy.scan_chunks("gpu", True) and policy.scan_chunks("tpu", True)  # accelerators always scan


def test_a_time_budget_projects_the_running_chunk_and_stops_nearest_the_budget(monkeypatch):
    """ChunkLog.projected_seconds: the recorded seconds, plus the pending chunk and half a next one at the last
    recorded chunk's rate. The clock is faked: each chunk takes 1.5 s (10 steps of 0.15 s)."""
    import types

    from genjax.train import chunk_log as chunk_log_module

    clock = iter([1.5, 3.0, 4.5])  # the times each recorded chunk is ready at
    monkeypatch.setattr(chunk_log_module.time, "perf_counter", lambda: next(clock))
    writer = types.SimpleNamespace(write=lambda *args: None)
    log = chunk_log_module.ChunkLog(types.SimpleNamespace(progress_metrics=()), 100, 0, None, writer, 8)
    metrics = {"loss": np.zeros(10, np.float32)}
    log.dispatched(0, 10, metrics, 0.0)
    assert log.projected_seconds(10) == 0.0  # nothing recorded yet: no rate to project with
    log.dispatched(10, 10, metrics, 0.1)  # records chunk 1 (0 -> 1.5 s), chunk 2 runs
    assert log.train_seconds == 1.5
    assert log.projected_seconds(10) == 1.5 + 0.15 * (10 + 5)  # chunk 2 ends at 3.0; half of chunk 3 more
    # a 3.5 s budget: the recorded 1.5 s alone would dispatch chunk 3 (ending at 4.5 s, 1.0 s late); the
    # projection (3.75) stops after chunk 2 (at 3.0 s, 0.5 s early): the nearer end
    assert log.projected_seconds(10) >= 3.5 > log.train_seconds
    log.close()


def test_one_steps_flops_are_the_same_before_and_after_training_either_way(mnist):
    """step_flops: step by step, the count of the program that trained (free); else, and before any chunk,
    the one-step program lowered for it. Both are the same program, so the same count."""
    train = mnist[0]
    family = vae.make_family(tiny_vae_config(batch_size=8), train)
    mesh, keys = make_mesh(), Keys.from_seed(0)
    state = jax.jit(family.init)(keys.init, to_model_batch(train.take(np.arange(8))))
    data, key = put_data_shards(mesh, train.arrays, 1), global_array(keys.train, replicated(mesh))
    indices = batch_indices(0, train.num_examples, 8, 0, 3)
    before = TrainChunks(family, mesh, scan=True).step_flops(state, data, indices, key)
    assert before > 0
    for scan in (True, False):
        runner = TrainChunks(family, mesh, scan=scan)
        trained, _ = runner(jax.tree.map(jax.numpy.copy, state), data, indices, 0, key, 4)
        assert ("step" in runner.lowered) == (not scan)  # step by step, the count is read off the trained program
        assert runner.step_flops(trained, data, indices, key) == before


def test_traced_hyperparameters_are_arguments_so_settings_share_one_program(mnist):
    """TrainChunks(hyper=..., family_for=...): the family is built inside the program from the traced fields,
    so two learning rates lower to the same program (one persistent-cache entry serves both) and train as
    the families with those rates as constants do; as constants, the two programs differ."""
    from genjax.config import with_values

    train = mnist[0]
    config = tiny_vae_config(batch_size=8)
    mesh, keys = make_mesh(), Keys.from_seed(0)
    data, key = put_data_shards(mesh, train.arrays, 1), global_array(keys.train, replicated(mesh))
    indices = batch_indices(0, train.num_examples, 8, 0, 4)
    texts, constant_texts = [], []
    for rate in (1e-3, 3e-2):
        rated = with_values(config, {"learning_rate": rate, "beta": 0.5})
        family = vae.make_family(rated, train)
        state = jax.jit(family.init)(keys.init, to_model_batch(train.take(np.arange(8))))
        hyper = {f: global_array(np.float32(rated[f]), replicated(mesh)) for f in ("learning_rate", "beta")}
        traced = TrainChunks(
            family, mesh, scan=True, hyper=hyper, family_for=lambda values: vae.make_family(with_values(config, values), train)
        )
        constant = TrainChunks(family, mesh, scan=True)
        trained, losses = traced(jax.tree.map(jax.numpy.copy, state), data, indices, 0, key)
        expected, expected_losses = constant(state, data, indices, 0, key)
        np.testing.assert_allclose(jax.device_get(losses["loss"]), jax.device_get(expected_losses["loss"]), rtol=1e-5)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), *jax.device_get((trained, expected)))
        texts.append(traced.lowered[4].as_text())
        constant_texts.append(constant.lowered[4].as_text())
    assert texts[0] == texts[1]  # one program for both rates
    assert constant_texts[0] != constant_texts[1]  # as constants, each rate is a program of its own
