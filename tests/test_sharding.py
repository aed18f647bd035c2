"""Data parallelism: 8 forced CPU devices give the 1-device loss trajectory to float tolerance."""

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
    print("RESULT" + json.dumps(losses))
    """
)


def test_eight_devices_match_one_device(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    result = run_module("tests.run_script", str(tmp_path / "script.py"), str(tmp_path),
                        env={"XLA_FLAGS": "--xla_force_host_platform_device_count=8"})
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.split("RESULT")[1])
    one, eight = losses["1"], losses["8"]
    assert len(one["train"]) == 30
    np.testing.assert_allclose(eight["train"], one["train"], rtol=1e-4)
    np.testing.assert_allclose(eight["test"], one["test"], rtol=1e-4)
    assert (one["devices"], eight["devices"]) == (1, 8)
    assert eight["sharding"] == one["sharding"] == "P()"  # parameters replicated
