"""Data parallelism: 8 forced CPU devices give the 1-device loss trajectory to float tolerance, and with
4 data shards each device gathers its part of the batch from the shard it holds."""

import json
import textwrap

import numpy as np

from tests.conftest import run_module

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from genjax import experiment
    from tests.conftest import tiny_vae_config
    assert jax.device_count() == 8, jax.devices()
    losses = {}
    for devices in (1, 8):
        result = experiment.run(tiny_vae_config(num_devices=devices, num_steps=30, batch_size=64, steps_per_call=1,
                                                checkpoint_every=30, eval_every=30), f"{sys.argv[1]}/d{devices}", "vae_mnist")
        records = [json.loads(l) for l in open(f"{sys.argv[1]}/d{devices}/metrics.jsonl")]
        losses[devices] = {"train": [r["loss"] for r in records if r["split"] == "train"],
                           "test": result.summary["test"]["neg_elbo"],
                           "devices": result.summary["devices"],
                           "sharding": str(result.state["params"]["encoder"]["Dense_0"]["kernel"].sharding.spec)}
    # 4 data shards over 8 devices: every device gathers its quarter-batch part from the shard it holds
    import numpy as np
    from genjax.data import batch_indices
    from genjax.train.parallel import gather_batch, make_mesh, put_data_shards
    mesh, arrays = make_mesh(), {"label": np.arange(50, dtype=np.int32) * 10}
    indices = batch_indices(0, 50, 16, 0, 1, num_shards=4)[0]
    gathered = jax.jit(lambda data, i: gather_batch(mesh, data, i))(put_data_shards(mesh, arrays, 4), indices)
    losses["gathered"] = np.asarray(gathered["label"]).tolist()
    losses["expected"] = (arrays["label"][np.arange(4).repeat(4) + 4 * indices]).tolist()
    print("RESULT" + json.dumps(losses))
    """
)


def run_on_eight_devices(script: str, tmp_path) -> dict:
    """Run `script` (argv[1]: a scratch directory) in a process with 8 forced CPU devices; its RESULT json."""
    (tmp_path / "script.py").write_text(script)
    result = run_module(
        "tests.run_script", str(tmp_path / "script.py"), str(tmp_path), env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.split("RESULT")[1])


def test_eight_devices_match_one_device(tmp_path):
    losses = run_on_eight_devices(SCRIPT, tmp_path)
    one, eight = losses["1"], losses["8"]
    assert len(one["train"]) == 30
    np.testing.assert_allclose(eight["train"], one["train"], rtol=1e-4)
    np.testing.assert_allclose(eight["test"], one["test"], rtol=1e-4)
    assert (one["devices"], eight["devices"]) == (1, 8)
    assert eight["sharding"] == one["sharding"] == "P()"  # parameters replicated
    assert losses["gathered"] == losses["expected"]


GAN_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    from genjax import experiment
    from tests.test_gan import tiny_gan_config
    runs = {}
    for devices in (1, 8):
        config = tiny_gan_config("wgan_gp_mnist", num_devices=devices, n_critic=2, num_steps=6, batch_size=16, steps_per_call=1,
                                 eval_every=6, checkpoint_every=6)
        result = experiment.run(config, f"{sys.argv[1]}/d{devices}", "wgan_gp_mnist")
        records = [json.loads(l) for l in open(f"{sys.argv[1]}/d{devices}/metrics.jsonl")]
        runs[devices] = {"train": [r["d_loss"] for r in records if r["split"] == "train"],
                         "penalty": [r["gradient_penalty"] for r in records if r["split"] == "train"],
                         "test": result.summary["test"]["d_loss"]}
    print("RESULT" + json.dumps(runs))
    """
)


def test_a_conv_wgan_gp_on_eight_devices_matches_one_device(tmp_path):
    """The per-example gradient penalty, the generator's BatchNorm over the global batch and the CPU path that
    keeps the generator update one step in n_critic all shard without changing the result."""
    runs = run_on_eight_devices(GAN_SCRIPT, tmp_path)
    one, eight = runs["1"], runs["8"]
    assert len(one["train"]) == 6 and min(one["penalty"]) > 0
    np.testing.assert_allclose(eight["train"], one["train"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(eight["penalty"], one["penalty"], rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(eight["test"], one["test"], rtol=1e-3, atol=1e-5)
