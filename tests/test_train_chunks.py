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
