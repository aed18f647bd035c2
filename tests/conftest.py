"""Shared test setup: CPU only, no progress bars, tiny configs."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TQDM_DISABLE", "1")
# Many tests compile the same tiny models: a persistent XLA cache (shared with the CLI subprocesses the
# tests start) compiles each once per session. It changes no result, only the time to get one.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), f"genjax-test-xla-cache-{os.getuid()}"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
# A fresh CI machine compiles every program once (the cache above starts empty), and most tests' tiny models
# spend more time compiling than running: LLVM's -O0 for the machine code XLA:CPU emits. The programs (HLO,
# fusions, float semantics) are the same; only their machine code is less optimized, so every comparison a
# test makes holds as at -O2. Measured from cold caches on 2 AMD EPYC cores, the whole suite: 1,336 s at -O2,
# 1,061 s at -O0 (the README's Tests section). A value already in XLA_FLAGS wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()
# Each test run has a directory of its own in the temp dir, removed when the run ends (pytest_unconfigure): the
# metric classifier, trained once per run (shared by the xdist workers, which wait for each other on its lock; never
# the user's cache), and the temporary files of the processes the tests start, which a process killed on purpose
# (kill -9) cannot remove itself. The first process (xdist's controller) names it; the workers it starts inherit it.
RUN_DIR = os.environ.setdefault(
    "GENJAX_TEST_RUN_DIR", os.path.join(tempfile.gettempdir(), f"genjax-test-run-{os.getuid()}-{uuid.uuid4().hex}")
)
os.makedirs(RUN_DIR, exist_ok=True)
os.environ["GENJAX_CACHE_DIR"] = os.path.join(RUN_DIR, "cache")
os.environ["TMPDIR"] = RUN_DIR  # for the processes the tests start; this one's temp dir is already fixed

import pytest  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def node_ids_take_group_suffixes() -> bool:
    """Whether this pytest reads a test's node id from the field pytest-xdist's `--dist loadgroup` writes its
    '@group' suffix to (`item._nodeid`): pytest 9.2 does not, and xdist 3.8 then splits every xdist_group."""

    class Probe(pytest.Item):
        def runtest(self):
            pass

    probe = object.__new__(Probe)  # no session needed: only the node id is read
    probe._nodeid = "probe@group"
    try:
        return probe.nodeid == "probe@group"
    except AttributeError:
        return False


def pytest_configure(config):
    """The tests marked xdist_group share one worker so that their module fixtures (minutes of training) are built
    once; where this pytest and xdist cannot group they would run once per worker, passing, only slower: refuse."""
    distributed = config.getoption("dist", "no") == "loadgroup" and config.getoption("numprocesses", None)
    if distributed and not hasattr(config, "workerinput") and not node_ids_take_group_suffixes():
        raise pytest.UsageError(
            "this pytest and pytest-xdist cannot keep an xdist_group on one worker (pytest 9.2 with xdist 3.8 cannot); "
            "install the versions pyproject.toml pins: pip install -e '.[dev]'"
        )


def pytest_unconfigure(config):
    """The run's directory goes when the run ends, removed by the process that made it (not an xdist worker)."""
    if not hasattr(config, "workerinput"):
        shutil.rmtree(RUN_DIR, ignore_errors=True)


def tiny_vae_config(**overrides):
    """The vae_mnist config shrunk to compile and run in about a second."""
    from experiments import vae_mnist

    config = vae_mnist.get_config()
    config.update(
        dict(
            hidden_sizes=(32,),
            latent_dim=4,
            batch_size=32,
            num_steps=20,
            steps_per_call=5,
            eval_every=10,
            checkpoint_every=10,
            num_samples=16,
            source="embedded",
        )
    )
    config.update(overrides)
    return config


def train_steps(workdir) -> list:
    """The steps of a run directory's training records in metrics.jsonl."""
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["step"] for r in map(json.loads, f) if r["split"] == "train"]


def run_module(module: str, *args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python -m module args...` in the repository root, capturing output."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def mnist():
    """The embedded MNIST (train, test) splits."""
    from genjax import data

    return data.load("mnist", "train", source="embedded"), data.load("mnist", "test", source="embedded")
