"""The study's vectorized groups: which settings share a group, a grouped search (and a group of re-seeds) equal
to the same trials one at a time, a diverging trial recorded as diverged, kill -9 during a group resumed exactly, and the trial
axis sharded over 8 devices."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from experiments import study as study_cli
from genjax import data
from genjax.checkpoint import Checkpoints
from genjax.metrics.classifier import load_classifier
from genjax.study import groups
from genjax.study.trials import Trial, run_trial
from genjax.train.trials import TrialGroup
from tests.conftest import REPO, tiny_vae_config
from tests.test_sharding import run_on_eight_devices
from tests.test_trials import _alone, _assert_equal_to_alone

pytestmark = pytest.mark.xdist_group("study_groups")  # its module fixture once
# settings 1 and 2 of the MLP GAN (search seed 0) share n_critic 5: one group; setting 0 (n_critic 1) is alone
PROTOCOL = dataclasses.replace(
    study_cli.DEFAULT,
    families=("gan",),
    num_settings=3,
    budgets=(10.0, 300.0),
    unit="steps",
    data_sizes=(200,),
    reseeds=0,
    num_samples=100,
    classifier_steps=100,
    vectorize="vmap",
)
# the study in a process of its own (PROTOCOL: the CLI has no option for the classifier's steps)
STUDY = "import sys; from experiments.study import CONTENDERS; from genjax.study import study; "
STUDY += "from genjax.cli import configure_logging; configure_logging(); "
STUDY += "from tests.test_study_groups import PROTOCOL; study(PROTOCOL, CONTENDERS, sys.argv[1])"


def _search_trials(settings, indices):
    return [Trial("gan", 200, k, settings[k], PROTOCOL.search_seed) for k in indices]


def test_settings_group_by_their_untraced_fields_and_auto_follows_each_entrys_cpu_choice():
    gan, vae, ae = (study_cli.CONTENDERS[name] for name in ("gan", "vae", "ae"))
    assert groups.traced_fields(gan) == ("adam_b1", "learning_rate")
    assert groups.traced_fields(vae) == ("adam_b1", "beta", "learning_rate")
    assert groups.traced_fields(ae) == ("adam_b1", "learning_rate", "noise_std")
    settings = [{"learning_rate": 1e-3, "adam_b1": 0.5, "n_critic": 1}, {"learning_rate": 1e-4, "adam_b1": 0.1, "n_critic": 5}]
    settings.append({"learning_rate": 3e-4, "adam_b1": 0.9, "n_critic": 5})
    assert groups.groups_of(settings, groups.traced_fields(gan)) == [[0], [1, 2]]
    assert [groups.resolve("auto", c) for c in (gan, vae, ae)] == ["off", "off", "vmap"]  # each entry's measured CPU choice
    assert [groups.resolve("auto", study_cli.CONTENDERS[name]) for name in ("dcgan", "sngan", "wgan_gp", "flow")] == [
        "vmap",
        "vmap",
        "off",
        "off",
    ]
    assert groups.resolve("auto", dataclasses.replace(gan, cpu_vectorize="vmap")) == "vmap"  # an entry's declared choice
    assert groups.resolve("vmap", gan) == "vmap"
    assert groups.resolve("vmap", study_cli.CONTENDERS["vqvae"]) == "off"  # its prior fits each trial's own VQ-VAE
    usage = " ".join(study_cli.build_parser().format_help().split())  # the help names what auto does, from the entries
    assert "on CPU each family's declared choice (vmap: ae,dcgan,lsgan,sngan,infogan;" in usage


def test_auto_on_cpu_cuts_a_group_into_groups_that_spread_over_every_core():
    members = list(range(7))
    spread = lambda n, devices: groups.spread_groups(members[:n], "auto", devices, "cpu")  # noqa: E731
    assert spread(7, 2) == [[0, 1, 2, 3], [4, 5]] and spread(5, 2) == [[0, 1, 2, 3]]  # setting 6, 4: alone
    assert spread(3, 2) == [[0, 1]] and spread(2, 2) == [[0, 1]] and spread(1, 2) == []
    assert spread(7, 3) == [[0, 1, 2, 3, 4, 5]] and spread(5, 3) == [[0, 1, 2]]  # two trials a core at most
    assert spread(7, 1) == []  # one device: a group would hold every trial on it, slower than the engine's runs
    conv = lambda n, devices: groups.spread_groups(members[:n], "auto", devices, "cpu", per_device=1)  # noqa: E731
    assert conv(5, 2) == [[0, 1], [2, 3]] and conv(3, 2) == [[0, 1]] and conv(7, 3) == [[0, 1, 2], [3, 4, 5]]
    assert groups.spread_groups(members, "auto", 1, "gpu") == [members]  # accelerators: one group of them all
    assert groups.spread_groups(members[:3], "vmap", 2, "cpu") == [members[:3]]  # asked for by name: as asked
    assert groups.spread_groups(members[:1], "vmap", 1, "gpu") == []  # a group of one is a trial alone


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Settings 1 and 2 searched as one group (with a third, poisoned trial) and one at a time."""
    from genjax.study.plan import settings_of

    root = tmp_path_factory.mktemp("groups")
    contender = study_cli.CONTENDERS["gan"]
    settings = settings_of(PROTOCOL, contender)
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    classifier = load_classifier(train, test, PROTOCOL.classifier_steps)
    poisoned = Trial("gan", 200, 9, {**settings[1], "learning_rate": 1e30}, PROTOCOL.search_seed)
    grouped = groups.run_group(
        PROTOCOL, contender, [*_search_trials(settings, (1, 2)), poisoned], str(root / "grouped"), classifier, test, "vmap"
    )
    alone = [run_trial(PROTOCOL, contender, t, str(root / "alone"), classifier, test) for t in _search_trials(settings, (1, 2))]
    return root, grouped, alone


def test_a_grouped_search_equals_the_same_settings_trained_one_at_a_time(reference):
    root, grouped, alone = reference
    for mine, theirs in zip(grouped[:2], alone, strict=True):
        assert mine["identity"] == theirs["identity"] and mine["diverged"] is None
        assert [p["steps"] for p in mine["points"]] == [p["steps"] for p in theirs["points"]] == [10, 300]
        for got, want in zip(mine["points"], theirs["points"], strict=True):
            assert got["group_size"] == 3 and got["train_seconds"] > 0 and got["eval_seconds"] > 0
            assert got["flops"] == pytest.approx(want["flops"], rel=0.02)  # the group's count / T
            for name in ("kid", "frechet_distance", "recall", "classes_covered"):
                assert got["metrics"][name] == pytest.approx(want["metrics"][name], rel=1e-3, abs=1e-6), name
    trial = root / "grouped" / "runs" / "gan" / "n200" / "setting1" / "seed0"
    assert (trial / "samples_300.png").exists()  # the report's samples figure reads these
    group = root / "grouped" / "runs" / "gan" / "n200" / "seed0" / "group1-2-9" / "checkpoints"
    assert [d for d in os.listdir(group) if d.isdigit()] == ["300"]  # one checkpoint per group, the last kept


def test_the_re_seeds_of_a_setting_trained_as_one_group_equal_them_trained_one_at_a_time(tmp_path):
    from genjax.study.plan import Unit, settings_of

    protocol = dataclasses.replace(PROTOCOL, reseeds=2)
    contender = study_cli.CONTENDERS["gan"]
    settings = settings_of(protocol, contender)
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    classifier = load_classifier(train, test, protocol.classifier_steps)
    done = []
    grouped = groups.run_reseed_groups(
        protocol, contender, Unit("gan", 200), settings, {1: 2}, str(tmp_path / "grouped"), classifier, test, lambda: done.append(1)
    )
    assert list(grouped) == [1] and sorted(grouped[1]) == [1, 2] and len(done) == 2
    alone = [
        run_trial(protocol, contender, Trial("gan", 200, 1, settings[1], seed), str(tmp_path / "alone"), classifier, test)
        for seed in (1, 2)
    ]
    for mine, theirs in zip((grouped[1][1], grouped[1][2]), alone, strict=True):
        assert mine["identity"] == theirs["identity"] and mine["diverged"] is None
        assert [p["steps"] for p in mine["points"]] == [p["steps"] for p in theirs["points"]] == [10, 300]
        for got, want in zip(mine["points"], theirs["points"], strict=True):
            for name in ("kid", "frechet_distance", "recall"):
                assert got["metrics"][name] == pytest.approx(want["metrics"][name], rel=1e-3, abs=1e-6), name
    assert grouped[1][1]["points"][-1]["metrics"]["kid"] != grouped[1][2]["points"][-1]["metrics"]["kid"]  # two seeds
    group = tmp_path / "grouped" / "runs" / "gan" / "n200" / "setting1" / "seeds1-2" / "checkpoints"
    assert [d for d in os.listdir(group) if d.isdigit()] == ["300"]
    off = dataclasses.replace(protocol, vectorize="off")
    assert groups.run_reseed_groups(off, contender, Unit("gan", 200), settings, {1: 2}, str(tmp_path / "off"), classifier, test, list) == {}


def test_a_group_of_vae_settings_sampling_from_the_ex_post_mixture_is_measured_like_them_alone(tmp_path):
    """The mixture of a grouped trial is fitted on its state copied to the host, as the engine fits it on a run's."""
    protocol = dataclasses.replace(PROTOCOL, families=("vae",), budgets=(10.0, 40.0))
    contender = study_cli.CONTENDERS["vae"]
    train, test = data.load("mnist", "train"), data.load("mnist", "test")
    classifier = load_classifier(train, test, protocol.classifier_steps)
    settings = [{"learning_rate": lr, "adam_b1": 0.5, "beta": 1.0, "latent_dim": 8, "sampler": "gmm"} for lr in (1e-3, 3e-3)]
    trials = [Trial("vae", 200, k, setting, protocol.search_seed) for k, setting in enumerate(settings)]
    grouped = groups.run_group(protocol, contender, trials, str(tmp_path / "grouped"), classifier, test, "vmap")
    alone = run_trial(protocol, contender, trials[1], str(tmp_path / "alone"), classifier, test)
    assert [p["steps"] for p in grouped[1]["points"]] == [p["steps"] for p in alone["points"]] == [10, 40]
    for got, want in zip(grouped[1]["points"], alone["points"], strict=True):
        for name in ("kid", "frechet_distance", "nll_iwae"):
            assert got["metrics"][name] == pytest.approx(want["metrics"][name], rel=1e-3), name


def test_a_trial_that_diverges_in_a_group_is_recorded_and_the_others_are_not_disturbed(reference):
    _, grouped, _ = reference
    diverged = grouped[2]["diverged"]
    assert diverged["budget"] == 10.0 and "non-finite at step" in diverged["error"] and grouped[2]["points"] == []


def test_kill_9_during_a_group_resumes_it_exactly(reference, tmp_path):
    """The study killed after a group's first checkpoint, in a process of 3 CPU devices that pads its groups (as
    accelerators do: the group of 2 becomes 3 slots), and run again in a process of one device: the group resumes
    from its checkpoint (the real trials only), and its trials equal the reference's."""
    _, grouped, _ = reference
    workdir = tmp_path / "study"
    command = [sys.executable, "-c", STUDY, str(workdir)]
    padding = "from genjax.train import policy; policy.pad_trial_groups = lambda platform: True; "
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=3"}
    checkpoints = workdir / "runs" / "gan" / "n200" / "seed0" / "group1-2" / "checkpoints"
    padded = [sys.executable, "-c", padding + STUDY, str(workdir)]
    process = subprocess.Popen(padded, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while (
        time.time() < deadline
        and process.poll() is None
        and not (checkpoints.exists() and any(d.isdigit() for d in os.listdir(checkpoints)))
    ):
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[1][-2000:]
    process.send_signal(signal.SIGKILL)  # after the first budget point's checkpoint: measuring it or training on
    assert "2 trials padded to 3 slots over 3 devices" in process.communicate(timeout=60)[1]
    finish = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    assert finish.returncode == 0, finish.stderr[-2000:]
    assert "resuming from checkpoint step 10" in finish.stderr
    for k, want in zip((1, 2), grouped[:2], strict=True):
        got = json.loads((workdir / "runs" / "gan" / "n200" / f"setting{k}" / "seed0" / "trial.json").read_text())
        assert [p["steps"] for p in got["points"]] == [10, 300]
        for a, b in zip(got["points"], want["points"], strict=True):
            for name in ("kid", "frechet_distance"):  # the group of 2 and of 3 (the poisoned trial): the same numbers
                assert a["metrics"][name] == pytest.approx(b["metrics"][name], rel=1e-3), name


def test_the_studys_process_spreads_a_group_over_two_cpu_devices_and_each_trial_equals_it_alone(reference, tmp_path):
    """The study as `python -m experiments.study` runs it on 2 cores: two XLA:CPU devices and vectorize 'auto',
    the MLP GAN declaring groups on CPU. Its settings 1 and 2 (n_critic 5) train as one group spread over the two
    devices, setting 0 alone on one device, and each trial equals the same setting trained alone in a one-device
    process."""
    _, _, alone = reference
    workdir = tmp_path / "study"
    auto = "import dataclasses, jax; assert jax.device_count() == 2; "
    auto += "CONTENDERS = {**CONTENDERS, 'gan': dataclasses.replace(CONTENDERS['gan'], cpu_vectorize='vmap')}; "
    auto += "study(dataclasses.replace(PROTOCOL, vectorize='auto'),"
    script = STUDY.replace("study(PROTOCOL,", auto)
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    finish = subprocess.run([sys.executable, "-c", script, str(workdir)], cwd=REPO, capture_output=True, text=True, env=env)
    assert finish.returncode == 0, finish.stderr[-2000:]
    unit = workdir / "runs" / "gan" / "n200"
    assert (unit / "seed0" / "group1-2" / "checkpoints").is_dir() and not (unit / "seed0" / "group0").exists()
    for k, want in zip((1, 2), alone, strict=True):
        got = json.loads((unit / f"setting{k}" / "seed0" / "trial.json").read_text())
        assert [p["group_size"] for p in got["points"]] == [2, 2] and [p["steps"] for p in got["points"]] == [10, 300]
        for a, b in zip(got["points"], want["points"], strict=True):
            for name in ("kid", "frechet_distance"):
                assert a["metrics"][name] == pytest.approx(b["metrics"][name], rel=1e-3), name
    single = json.loads((unit / "setting0" / "seed0" / "trial.json").read_text())
    assert [p["steps"] for p in single["points"]] == [10, 300] and "group_size" not in single["points"][0]
    assert json.loads((unit / "setting0" / "seed0" / "config.json").read_text())["num_devices"] == 1  # alone: one device


SHARDED_META = {"experiment": "vae_mnist", "model": "vae"}
SHARDED = """
import json, sys
import jax, numpy as np
from genjax import data
from genjax.train.trials import TrialGroup
from tests.conftest import tiny_vae_config
from genjax.checkpoint import Checkpoints
from tests.test_study_groups import SHARDED_META as META
from tests.test_trials import _alone

train = data.load("mnist", "train", "embedded").first(256)
config = tiny_vae_config(batch_size=16)
settings = [{"learning_rate": float(lr)} for lr in np.geomspace(3e-4, 3e-3, 8)]
group = TrialGroup(config, settings, train)
trained, _ = group.train(group.init(), 0, 6)
devices = sorted({d.id for leaf in jax.tree.leaves(trained["state"]) for d in leaf.sharding.device_set})
errors = []
for index in (0, 5):
    got, want = jax.tree.leaves(group.trial_state(trained, index)), jax.tree.leaves(_alone(config, settings[index], train, 6))
    errors.append(max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(got, want)))
seeded = TrialGroup(config, [settings[0]] * 8, train, seeds=list(range(8)))  # a group of seeds, sharded the same way
trained, _ = seeded.train(seeded.init(), 0, 6)
got, want = jax.tree.leaves(seeded.trial_state(trained, 5)), jax.tree.leaves(_alone(config, {**settings[0], "seed": 5}, train, 6))
errors.append(max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(got, want)))
# 3 trials padded to 8 slots, one a device (asked for: CPU groups are not padded by default, unpadded below):
# 3 steps, a checkpoint of the real trials, restored, 3 steps more
unpadded = TrialGroup(config, settings[:3], train)
unpadded_devices = len({d.id for leaf in jax.tree.leaves(unpadded.init()["state"]) for d in leaf.sharding.device_set})
odd = TrialGroup(config, settings[:3], train, pad=True)
half, metrics = odd.train(odd.init(), 0, 3)
odd_devices = sorted({d.id for leaf in jax.tree.leaves(half["state"]) for d in leaf.sharding.device_set})
checkpoints = Checkpoints(sys.argv[1] + "/odd", keep=1)
checkpoints.save(3, odd.checkpointed(half), META)
checkpoints.wait()
restored = odd.from_checkpoint(checkpoints.restore(3, odd.checkpointed(odd.init()), META))
trained, _ = odd.train(restored, 3, 3)
for index in range(3):
    got, want = jax.tree.leaves(odd.trial_state(trained, index)), jax.tree.leaves(_alone(config, settings[index], train, 6))
    errors.append(max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(got, want)))
odd_shapes = {"slots": [odd.slots, unpadded.slots, unpadded_devices], "metrics": list(metrics["loss"].shape)}
odd_shapes["diverged"] = odd.diverged(trained).tolist()
odd_shapes["flops"] = [odd.flops_per_trial_step(trained), unpadded.flops_per_trial_step(unpadded.init())]
# a conv group (DCGAN, BatchNorm, n_critic 5) of 8 over the 8 devices: each device steps its own trial, with no
# collective in the program (left to XLA's partitioner, its batched convolutions gathered every trial's weights)
from genjax.train.parallel import global_array
from tests.test_trials import _assert_equal_to_alone, _gan_config
conv_config, conv_settings = _gan_config(), [{"learning_rate": float(lr), "adam_b1": 0.5} for lr in np.geomspace(1e-4, 1e-3, 8)]
conv = TrialGroup(conv_config, conv_settings, train)
state = conv.init()
step_args = (state, global_array(np.int32(0), conv.replicated), global_array(conv._indices(0, 1)[0], conv.replicated), conv.train_keys)
program = conv._step.lower(*step_args).compile().as_text()
collectives = [kind for kind in ("all-gather", "all-reduce", "collective-permute", "all-to-all", "reduce-scatter") if kind in program]
conv_trained, _ = conv.train(state, 0, 6)
for index in (0, 7):  # raises where a trial differs from it alone
    setting = conv_settings[index]
    _assert_equal_to_alone(conv.trial_state(conv_trained, index), _alone(conv_config, setting, train, 6), setting, 6)
odd_shapes["conv"] = {"scan": conv.scan, "collectives": collectives}
print("RESULT" + json.dumps({"devices": devices, "errors": errors, "odd_devices": odd_devices, **odd_shapes}))
"""


def test_the_trial_axis_is_sharded_over_eight_devices_and_each_trial_equals_it_alone(tmp_path):
    """8 trials (settings, then seeds) one a device; 3 trials on one device by default on CPU, and padded to 8
    slots when asked, spread the same, their padding invisible (metrics, divergence), and their checkpoint (the
    real trials only) restores on 8 devices and, in this one-device process, into a group of 3 on one device:
    each trial equals it trained alone."""
    result = run_on_eight_devices(SHARDED, tmp_path)
    assert result["devices"] == list(range(8)) and result["odd_devices"] == list(range(8)) and result["slots"] == [8, 3, 1]
    assert result["metrics"] == [3, 3] and result["diverged"] == [0, 0, 0]
    assert result["conv"]["scan"] is False and result["conv"]["collectives"] == [], result["conv"]
    assert result["flops"][0] == pytest.approx(result["flops"][1], rel=0.02)  # a trial's FLOPs, the padding apart
    assert len(result["errors"]) == 6 and max(result["errors"]) < 2e-5, result["errors"]
    train = data.load("mnist", "train", "embedded").first(256)
    config = tiny_vae_config(batch_size=16)
    settings = [{"learning_rate": float(lr)} for lr in np.geomspace(3e-4, 3e-3, 8)][:3]
    one_device = TrialGroup(config, settings, train)
    assert jax.device_count() == 1 and one_device.slots == 3
    checkpoints = Checkpoints(str(tmp_path / "odd"), keep=1)
    state = one_device.from_checkpoint(checkpoints.restore(3, one_device.checkpointed(one_device.init()), SHARDED_META))
    for index, setting in enumerate(settings):
        _assert_equal_to_alone(one_device.trial_state(state, index), _alone(config, setting, train, 3), setting, 3)


def test_a_groups_seconds_budget_ends_within_half_a_chunk_of_it(monkeypatch):
    """groups._train_to under a seconds budget, with a faked clock: each 10-step chunk of a 2-trial group takes
    3 s (1.5 s a trial). The budget of 5 s a trial ends after 3 chunks (4.5 s, the 4th would end at 6 s, past it by
    more than half a chunk), not after the 4th that crossing the budget took; a resumed group at that point trains
    nothing; a budget of 5.5 s takes the 4th chunk (6 s: within half a chunk)."""
    clock = {"now": 0.0}

    class Group:
        size, compile_seconds = 2, 0.0

        def train(self, state, step, length):
            clock["now"] += 0.3 * length
            return state + length, None

    class Checkpoints:
        saved = []

        def save(self, step, state, meta):
            self.saved.append(step)

    monkeypatch.setattr(groups.time, "perf_counter", lambda: clock["now"])
    meta = {"step": 0, "train_seconds": 0.0}
    state, meta = groups._train_to(Group(), 0, meta, 5.0, "seconds", 10, 0, Checkpoints())
    assert (state, meta["step"], meta["train_seconds"], meta["step_seconds"]) == (30, 30, pytest.approx(9.0), pytest.approx(0.3))
    assert groups._train_to(Group(), state, meta, 5.0, "seconds", 10, 0, Checkpoints()) == (state, meta)  # resumed: spent
    state, meta = groups._train_to(Group(), state, meta, 5.5, "seconds", 10, 0, Checkpoints())
    assert meta["step"] == 40 and meta["train_seconds"] / Group.size == pytest.approx(6.0)
    state, meta = groups._train_to(Group(), 0, {"step": 0, "train_seconds": 0.0}, 15.0, "steps", 10, 20, Checkpoints())
    assert meta["step"] == 15 and Checkpoints.saved == []  # a steps budget is exact; checkpoints every 20 steps
