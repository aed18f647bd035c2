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


FIRST_PROGRAM = """
import sys, jax
import genjax.comparison, genjax.evaluate, genjax.study

class Reached(Exception):
    pass

def first_program(*args, **kwargs):  # stands for the command's first compiled program (the classifier's)
    print(jax.config.jax_compilation_cache_dir, jax.config.jax_persistent_cache_min_compile_time_secs)
    raise Reached

genjax.study.run_study = genjax.study.merged_protocol = genjax.comparison.load_classifier = first_program
genjax.evaluate.load_run = first_program
try:
    if sys.argv[1] == "study":
        genjax.study.study(None, {}, "unused")
    elif sys.argv[1] == "merge":
        genjax.study.merge(["unused"], "unused", {})
    elif sys.argv[1] == "evaluate":
        genjax.evaluate.main(["unused"])
    else:
        genjax.comparison.compare(genjax.comparison.Settings(contenders={"vae": None}, workdir=sys.argv[2], toy_models=()))
except Reached:
    pass
"""


def test_the_study_merge_comparison_and_evaluation_turn_the_cache_on_before_their_first_program(tmp_path):
    """Not at their first fit (`python -m genjax.evaluate` has none): the classifier's programs, and a study's
    vectorized groups and their evaluations, compiled before it outside the cache (neither read nor written:
    every process compiled them again)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT", "GENJAX_"))}
    env = {**clean, "JAX_PLATFORMS": "cpu", "GENJAX_COMPILATION_CACHE": str(tmp_path / "cache")}
    for command in ("study", "merge", "compare", "evaluate"):
        result = subprocess.run(
            [sys.executable, "-c", FIRST_PROGRAM, command, str(tmp_path / "compare")],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.split() == [str(tmp_path / "cache"), "0.0"], command  # and every program's entry is kept
