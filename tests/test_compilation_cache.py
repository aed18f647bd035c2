"""The persistent compilation cache: on by default in a directory of its own, off on request, JAX's setting wins."""

import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
import jax, jax.numpy as jnp
from genjax.compilation_cache import enable_compilation_cache
print(enable_compilation_cache())
jax.jit(lambda x: jnp.sin(x) * 2)(jnp.ones(3)).block_until_ready()
"""


def _run(**env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT", "GENJAX_"))}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120, env={**clean, "JAX_PLATFORMS": "cpu", **env}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip().splitlines()[-1]


def test_cache_directory_default_override_and_opt_out(tmp_path):
    assert _run(XDG_CACHE_HOME=str(tmp_path / "xdg")) == str(tmp_path / "xdg" / "genjax" / "xla")
    assert os.listdir(tmp_path / "xdg" / "genjax" / "xla")  # the compiled program was written
    assert _run(GENJAX_COMPILATION_CACHE=str(tmp_path / "mine")) == str(tmp_path / "mine")
    assert _run(GENJAX_COMPILATION_CACHE="off", XDG_CACHE_HOME=str(tmp_path / "off")) == "None"
    assert not (tmp_path / "off").exists()
    assert _run(JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax"), GENJAX_COMPILATION_CACHE=str(tmp_path / "x")) == str(tmp_path / "jax")
