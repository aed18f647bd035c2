"""genjax's XLA:CPU flags: added to XLA_FLAGS at import, the user's own settings kept, GENJAX_XLA_FLAGS=off
adding none, and in effect in a fresh process (its convolutions are XLA's own, not YNNPACK's)."""

import os
import subprocess
import sys

from genjax import xla_flags
from tests.conftest import REPO

YNN = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"


def test_the_cpu_flags_are_appended_to_what_is_set_and_a_users_own_value_wins():
    assert xla_flags.with_cpu_flags("") == YNN
    assert xla_flags.with_cpu_flags("--xla_force_host_platform_device_count=8") == f"--xla_force_host_platform_device_count=8 {YNN}"
    mine = "--xla_cpu_experimental_ynn_fusion_type=+individual_dot"
    assert xla_flags.with_cpu_flags(mine) == mine
    assert xla_flags.with_cpu_flags(xla_flags.with_cpu_flags("")) == YNN  # importing twice adds nothing


def test_the_study_asks_for_one_cpu_device_per_core_unless_the_user_set_a_count(monkeypatch):
    monkeypatch.delenv(xla_flags.VARIABLE, raising=False)
    monkeypatch.setenv("XLA_FLAGS", YNN)
    xla_flags.add_host_devices()
    assert os.environ["XLA_FLAGS"] == f"{YNN} --xla_force_host_platform_device_count={len(os.sched_getaffinity(0))}"
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
    xla_flags.add_host_devices(3)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=8"  # the user's count wins
    monkeypatch.setenv("XLA_FLAGS", "")
    xla_flags.add_host_devices(3)
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=3"
    monkeypatch.setenv(xla_flags.VARIABLE, "off")
    monkeypatch.setenv("XLA_FLAGS", "")
    xla_flags.add_host_devices()
    assert os.environ["XLA_FLAGS"] == ""


def program_of_a_convolution(env: dict) -> str:
    """The optimized HLO of a jitted convolution, compiled in a fresh process that imports genjax first (one
    as large as a conv VAE layer: JAX gives YNNPACK only convolutions above some size)."""
    script = (
        "import genjax, jax, jax.numpy as jnp\n"
        "conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))\n"
        "print(jax.jit(conv).lower(jnp.ones((8, 14, 14, 16)), jnp.ones((3, 3, 16, 32))).compile().as_text())\n"
    )
    environment = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", xla_flags.VARIABLE)} | env
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_importing_genjax_gives_convolutions_to_xla_unless_turned_off():
    with_genjax_flags = program_of_a_convolution({})
    assert " convolution(" in with_genjax_flags and "__ynn_fusion" not in with_genjax_flags
    assert "__ynn_fusion" in program_of_a_convolution({xla_flags.VARIABLE: "off"})  # JAX's default: YNNPACK
