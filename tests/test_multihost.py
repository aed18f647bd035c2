"""Two processes on 127.0.0.1 (gloo collectives on CPU) train like one process with the same data layout, and
share a group of trials."""

import json
import os
import socket
import subprocess
import sys
import textwrap

import numpy as np

from tests.conftest import REPO

# Each process trains twice in one workdir per layout: data_shards=0 (one shard per process, the default)
# and data_shards=1 (every device holds the whole training set, the single-process batches).
SCRIPT = textwrap.dedent(
    """
    import sys
    import jax, numpy as np
    from genjax import experiment
    from tests.conftest import tiny_vae_config
    out, layouts = sys.argv[1], [eval(layout) for layout in sys.argv[2:]]
    for name, overrides in layouts:
        config = tiny_vae_config(num_steps=10, steps_per_call=5, eval_every=10, checkpoint_every=10, **overrides)
        result = experiment.run(config, f"{out}/{name}", "vae_mnist")
        leaves = jax.tree.leaves(jax.device_get(result.state["params"]))
        np.savez(f"{out}/{name}.params{jax.process_index()}.npz", *leaves)
    """
)
DISTRIBUTED = ['("sharded", {})', '("whole", {"data_shards": 1})']
SINGLE = ['("sharded", {"data_shards": 2})', '("whole", {"num_devices": 1})']


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(script, out, layouts, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.run_script", str(script), str(out), *layouts],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
    )


def _finish(processes, timeout=240) -> list:
    """Wait for all processes; kill every one of them if any fails or hangs (a lone process would wait forever).
    Returns their (stdout, stderr)."""
    try:
        outputs = [process.communicate(timeout=timeout) for process in processes]
    except subprocess.TimeoutExpired:
        for process in processes:
            process.kill()
        raise AssertionError("multi-process run timed out: " + processes[0].communicate()[1][-2000:]) from None
    for process, (_, stderr) in zip(processes, outputs):
        assert process.returncode == 0, stderr[-3000:]
    return outputs


def _params(path):
    with np.load(path) as f:
        return [f[name] for name in f.files]


def test_two_processes_agree_and_match_one_process(tmp_path):
    (tmp_path / "script.py").write_text(SCRIPT)
    address = f"127.0.0.1:{_free_port()}"
    distributed = [
        _start(
            tmp_path / "script.py",
            tmp_path / "two",
            DISTRIBUTED,
            JAX_COORDINATOR_ADDRESS=address,
            JAX_NUM_PROCESSES="2",
            JAX_PROCESS_ID=str(rank),
        )
        for rank in range(2)
    ]
    single = _start(tmp_path / "script.py", tmp_path / "one", SINGLE, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    _finish(distributed + [single])

    for name in ("sharded", "whole"):
        first, second = _params(tmp_path / "two" / f"{name}.params0.npz"), _params(tmp_path / "two" / f"{name}.params1.npz")
        reference = _params(tmp_path / "one" / f"{name}.params0.npz")
        for a, b, c in zip(first, second, reference, strict=True):
            np.testing.assert_array_equal(a, b)  # both processes hold the same replicated parameters
            np.testing.assert_allclose(a, c, rtol=1e-5, atol=1e-6)  # same batches as one process

    run = tmp_path / "two" / "sharded"
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["processes"], summary["devices"], summary["data_shards"]) == (2, 2, 2)
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["split"]) for r in records] == [(5, "train"), (10, "train"), (10, "test")]  # process 0 only
    assert sorted(os.listdir(run / "checkpoints")) == ["10"]
    assert (run / "samples_10.png").is_file()


TRIALS = textwrap.dedent(
    """
    import json, sys
    from genjax.train.parallel import initialize_distributed
    initialize_distributed(False)  # joins: JAX_COORDINATOR_ADDRESS is set
    import jax, numpy as np
    from genjax import data
    from genjax.errors import UserError
    from genjax.train.parallel import least_over_processes
    from genjax.train.trials import TrialGroup
    from tests.conftest import tiny_vae_config
    from tests.test_trials import _alone
    train = data.load("mnist", "train", "embedded").first(256)
    config = tiny_vae_config(batch_size=16)
    settings = [{"learning_rate": float(lr)} for lr in np.geomspace(3e-4, 3e-3, 4)]
    group = TrialGroup(config, settings, train)
    trained, _ = group.train(group.init(), 0, 6)
    leaf = jax.tree.leaves(trained["state"]["params"])[0]
    odd = TrialGroup(config, settings[:3], train)  # 3 trials padded to 4 slots: 2 on each process's device
    odd_trained, odd_metrics = odd.train(odd.init(), 0, 6)
    odd_leaf = jax.tree.leaves(odd_trained["state"]["params"])[0]
    errors, leaves = [], []
    for index, setting in enumerate(settings):
        want = jax.tree.leaves(_alone(config, setting, train, 6))
        for trials, state in ((group, trained), (odd, odd_trained))[: 2 if index < 3 else 1]:
            got = jax.tree.leaves(trials.trial_state(state, index))
            errors.append(max(float(np.max(np.abs(a - np.asarray(b)))) for a, b in zip(got, want)))
        leaves += jax.tree.leaves(group.trial_state(trained, index))
    try:
        TrialGroup(config, settings[:3], train, "unroll")
        refused = ""
    except UserError as error:
        refused = str(error)
    np.savez(f"{sys.argv[1]}/trials{jax.process_index()}.npz", *leaves)
    result = {
        "devices": len(leaf.sharding.device_set),
        "local_rows": [shard.data.shape[0] for shard in leaf.addressable_shards],
        "errors": errors,
        "diverged": group.diverged(trained).tolist(),
        "odd": [odd.slots, [shard.data.shape[0] for shard in odd_leaf.addressable_shards], odd.diverged(odd_trained).tolist()],
        "odd_metrics": list(np.asarray(odd_metrics["loss"]).shape),  # the real trials', readable on each process
        "refused": refused,
        "least": least_over_processes(7 - jax.process_index()),  # a time budget's last call: process 1's length
    }
    print("RESULT" + json.dumps(result))
    """
)


def test_a_trial_group_spans_two_processes_and_each_trial_equals_it_alone(tmp_path):
    """A group's trial axis spans the two processes, each trial equal to it alone, and so does a group of 3 padded
    to 4 (2 slots a process, the padding invisible); unroll is refused; and least_over_processes, by
    which the processes of a run under a time budget cut its last call alike, agrees on both."""
    (tmp_path / "trials.py").write_text(TRIALS)
    address = f"127.0.0.1:{_free_port()}"
    processes = [
        _start(tmp_path / "trials.py", tmp_path, [], JAX_COORDINATOR_ADDRESS=address, JAX_NUM_PROCESSES="2", JAX_PROCESS_ID=str(rank))
        for rank in range(2)
    ]
    results = [json.loads(stdout.split("RESULT")[1]) for stdout, _ in _finish(processes)]
    for result in results:
        assert result["devices"] == 2 and result["local_rows"] == [2]  # 4 trials: 2 on each process's device
        # every trial (of 4, and of 3 padded to 4), gathered to each process, equals it alone
        assert len(result["errors"]) == 7 and max(result["errors"]) < 2e-5, result["errors"]
        assert result["diverged"] == [0, 0, 0, 0] and result["odd"] == [4, [2], [0, 0, 0]] and result["odd_metrics"] == [6, 3]
        assert "use vectorize 'vmap', not 'unroll'" in result["refused"]
        assert result["least"] == 6  # every process cuts its last call alike
    for a, b in zip(_params(tmp_path / "trials0.npz"), _params(tmp_path / "trials1.npz"), strict=True):
        np.testing.assert_array_equal(a, b)  # both processes hold the same gathered states
