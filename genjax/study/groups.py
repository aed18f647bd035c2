"""A unit's search settings, and the re-seeds of each chosen setting, trained as vectorized groups
(genjax.train.trials.TrialGroup) instead of one trial at a time.

The continuous fields of a family's search space (Uniform and LogUniform: learning rate, Adam's beta1, loss
weights) are traced; settings equal in every other field (a Choice such as the latent size or n_critic) form
one group, and a group trains its settings in one compiled program; the re-seeds of a chosen setting form one
group of seeds. Each trial of a group sees the initial state, batches and keys of its own seed (the search
seed, or its re-seed), as it would alone, so its record (trial.json in its own run directory, the same
format as a trial trained alone) holds the same numbers to float tolerance under a budget in steps. Under a
budget in seconds a trial is charged its share of the group's training time (the group's seconds / T):
equal compute, so a group that trains T trials faster than T runs gives each trial more steps.

One Orbax checkpoint per group (`group_directory`/checkpoints, the last one kept; its real trials only, where
an accelerator pads the group to spread it over the devices, so it resumes on any number of them), at
every budget point (and every `checkpoint_every` steps where the study's config keeps one), with the step, the
group's training seconds and its budget points done; kill -9 during a group resumes it from there exactly
(a budget in steps), and a group whose trials are finished is never retrained. A trial whose loss turns
non-finite is frozen and recorded as diverged at the first budget point after that step, as a trial
trained alone is at the point its run raised. Multi-stage families (a VQ-VAE and its prior) train one
trial at a time: their later stages fit each trial's own first stage.

`resolve(mode, contender)`: 'auto' is 'vmap' on accelerators and, on CPU, the contender's declared
`cpu_vectorize`: 'vmap' where its experiment measured groups faster there than the engine's own runs, else
'off' (one trial at a time); `python -m experiments.study --help` lists the entries of each, derived from
their declarations. On CPU `auto` also sizes the groups (`spread_groups`): the study's command has
one XLA device per core (genjax.xla_flags.add_host_devices), and a group's trial axis spreads over them, two
trials a core for MLP families and one for convolutional ones (genjax.train.policy.cpu_trials_per_device),
each core training its own trials with no collective between them; trials left over train alone.
"""

import logging
import os
import time

import jax

from genjax import models
from genjax.checkpoint import Checkpoints
from genjax.comparison import UNLIMITED_STEPS
from genjax.data.toy2d import TOY_DATASETS
from genjax.experiment import load_data, stage_configs
from genjax.search import continuous_fields
from genjax.study.plan import Protocol
from genjax.study.trials import SECONDS_STEPS_PER_CALL, Trial, budget_adjust, evaluate_trial, is_finished, read_record, trial_config
from genjax.train import policy
from genjax.train.chunk_log import projected_seconds
from genjax.train.loop import refit_ex_post
from genjax.train.rundir import write_json_atomically
from genjax.train.trials import TrialGroup, group_key

log = logging.getLogger("genjax")


def resolve(mode: str, contender) -> str:
    """The way `contender`'s settings train here: 'off' (one at a time), 'vmap' or 'unroll'."""
    if len(contender.stages) > 1:
        return "off"
    if mode == "auto":
        return contender.cpu_vectorize if jax.default_backend() == "cpu" else "vmap"
    return mode


def traced_fields(contender) -> tuple:
    """The continuous fields of the contender's search space: a group's trials differ only in these."""
    config = contender.config()
    return continuous_fields(models.get(config.model), config)


def groups_of(settings: list[dict], traced: tuple) -> list[list[int]]:
    """Setting indices grouped by their untraced fields, in order of each group's first setting."""
    groups = {}
    for index, setting in enumerate(settings):
        groups.setdefault(group_key(setting, traced), []).append(index)
    return list(groups.values())


def group_directory(root: str, trials: list[Trial]) -> str:
    """Search settings of one seed: runs/<family>/n<size>/seed<s>/group<i>-<j>-...; seeds of one setting (its
    re-seeds): runs/<family>/n<size>/setting<k>/seeds<a>-<b>-..."""
    first = trials[0]
    unit = os.path.join(root, "runs", first.family, f"n{first.data_size}")
    if len({t.seed for t in trials}) > 1:
        return os.path.join(unit, f"setting{first.setting_index}", "seeds" + "-".join(str(t.seed) for t in trials))
    return os.path.join(unit, f"seed{first.seed}", "group" + "-".join(str(t.setting_index) for t in trials))


def spread_groups(members: list, mode: str, num_devices: int, platform: str, per_device: int | None = None) -> list[list]:
    """`members` (of one group) as the groups that train them; the rest train alone. Asked for by name ('vmap',
    'unroll'): one group of them all; 'auto' on accelerators too. 'auto' on CPU: groups of `per_device` trials a
    device (genjax.train.policy.cpu_trials_per_device: 2 for MLP families, 1 for convolutional ones; default an MLP
    family's; one device per core, genjax.xla_flags.add_host_devices), then one of the largest multiple of
    the devices left, so that every group's trial axis spreads over all the cores, each core training its own
    trials; the rest (fewer than the devices) train alone, since a group held by one device trained slower than
    the engine's own runs. A group has two members or more."""
    if mode != "auto" or platform != "cpu":
        return [members] if len(members) > 1 else []
    if num_devices < 2:
        return []
    full = (per_device or policy.cpu_trials_per_device(convolutional=False)) * num_devices
    cut = len(members) // full * full
    groups = [members[i : i + full] for i in range(0, cut, full)]
    rest = members[cut : cut + (len(members) - cut) // num_devices * num_devices]
    return groups + ([rest] if rest else [])


def _spreader(protocol: Protocol, contender, dataset):
    """spread_groups for this contender's groups here: its family built once, for the trials a CPU device takes."""
    config = contender.config()
    per_device = policy.cpu_trials_per_device(models.get(config.model).make_family(config, dataset).convolutional)
    return lambda members: spread_groups(members, protocol.vectorize, jax.device_count(), jax.default_backend(), per_device)


def run_groups(protocol: Protocol, contender, unit, settings: list[dict], root: str, classifier, test, done) -> dict:
    """The search trials of `unit` that train in groups here (`spread_groups`), trained and measured (`done()`
    after each); returns {setting index: record}. The other settings (all of them with mode 'off') are the
    caller's to train one at a time."""
    mode = resolve(protocol.vectorize, contender)
    if mode == "off":
        return {}
    records, spread = {}, _spreader(protocol, contender, test)
    for indices in groups_of(settings, traced_fields(contender)):
        for members in spread(indices):
            trials = [Trial(unit.family, unit.data_size, k, settings[k], protocol.search_seed) for k in members]
            for k, record in zip(members, run_group(protocol, contender, trials, root, classifier, test, mode), strict=True):
                records[k] = record
                done()
    return records


def run_reseed_groups(protocol: Protocol, contender, unit, settings: list[dict], until: dict, root: str, classifier, test, done) -> dict:
    """The re-seeds (protocol.seeds[1:]) of each chosen setting k, trained as a group of seeds up to budget point
    until[k] where this contender trains in groups here (`spread_groups`; `done()` after each trial); returns
    {k: {seed: record}} for the seeds grouped, which may be none or some of them (the caller trains the others
    one at a time)."""
    seeds = protocol.seeds[1:]
    mode = resolve(protocol.vectorize, contender)
    if mode == "off" or protocol.dataset in TOY_DATASETS:  # toys: data per seed
        return {}
    records, seed_groups = {}, _spreader(protocol, contender, test)(list(seeds))
    for k, num_points in until.items():
        for members in seed_groups:
            trials = [Trial(unit.family, unit.data_size, k, settings[k], seed) for seed in members]
            records.setdefault(k, {}).update(
                zip(members, run_group(protocol, contender, trials, root, classifier, test, mode, num_points), strict=True)
            )
            for _ in trials:
                done()
    return records


def run_group(protocol: Protocol, contender, trials: list[Trial], root: str, classifier, test, mode: str, num_points=None) -> list[dict]:
    """Train and measure `trials` (one group: settings with equal untraced fields, or seeds of one setting)
    at each of the first `num_points` budget points (default all) they have not reached; returns their records."""
    num_points = len(protocol.budgets) if num_points is None else num_points
    records = [read_record(root, t, protocol) or {"identity": t.identity(protocol), "points": [], "diverged": None} for t in trials]
    if all(is_finished(r, num_points) for r in records):
        return records
    traced = traced_fields(contender)
    # the config each trial trains with alone, up to the first budget point (the budget itself is counted here)
    config = stage_configs(
        trial_config(protocol, contender, trials[0]),
        trials[0].directory(root),
        contender.stages,
        budget_adjust(protocol, protocol.budgets[0], contender.stages),
    )[0]
    train, _ = load_data(config)
    group = TrialGroup(config, [{f: t.setting[f] for f in traced} for t in trials], train, mode, [t.seed for t in trials])
    directory = group_directory(root, trials)
    if group.slots > group.size:
        log.info("group %s: %d trials padded to %d slots over %d devices", directory, group.size, group.slots, jax.device_count())
    checkpoints = Checkpoints(os.path.join(directory, "checkpoints"), keep=1)
    fresh = {"experiment": contender.experiment, "model": config.model, "step": 0, "train_seconds": 0.0, "points": 0}
    need = min(len(r["points"]) for r in records if not is_finished(r, num_points))  # the first point a trial lacks
    try:
        state, meta = group.init(), fresh
        saved = checkpoints.latest_step()
        if saved is not None:
            meta = checkpoints.read_meta(saved)
            if meta["points"] > need + 1:  # a record older than the group's state: only training again recovers it
                log.warning("group %s is past budget point %d that a trial lacks; training the group again", directory, need + 1)
                meta = fresh
            else:
                state = group.from_checkpoint(checkpoints.restore(saved, group.checkpointed(state), fresh))
                log.info("group %s resuming from checkpoint step %d", directory, saved)
        families = [_concrete_family(config, t, traced, train) for t in trials]
        flops = group.flops_per_trial_step(state)
        chunk = config.steps_per_call if protocol.unit == "steps" else min(config.steps_per_call, SECONDS_STEPS_PER_CALL)
        for point in range(need, num_points):
            budget = protocol.budgets[point]
            # a no-op when the restored state is at this point already (killed while measuring it)
            state, meta = _train_to(group, state, meta, budget, protocol.unit, chunk, config.checkpoint_every, checkpoints)
            meta = {**meta, "points": max(meta["points"], point + 1)}
            if checkpoints.latest_step() != meta["step"]:  # else restored from this very checkpoint
                checkpoints.save(meta["step"], group.checkpointed(state), meta)
            diverged_at = group.diverged(state)
            for index, (trial, record) in enumerate(zip(trials, records, strict=True)):
                if len(record["points"]) > point or record["diverged"] is not None:
                    continue  # measured before an interruption, or diverged
                if diverged_at[index]:
                    record["diverged"] = {"budget": budget, "error": f"the loss became non-finite at step {diverged_at[index]}"}
                else:
                    trial_state = group.trial_state(state, index)
                    _measure(
                        protocol,
                        trial,
                        record,
                        families[index],
                        trial_state,
                        config,
                        train,
                        test,
                        classifier,
                        meta,
                        flops,
                        group.size,
                        root,
                    )
                os.makedirs(trial.directory(root), exist_ok=True)
                write_json_atomically(os.path.join(trial.directory(root), "trial.json"), record)
        checkpoints.wait()
    finally:
        checkpoints.close()
    return records


def _concrete_family(config, trial: Trial, traced: tuple, train):
    concrete = config.copy_and_resolve_references()
    concrete.update({f: trial.setting[f] for f in traced})
    return models.get(concrete.model).make_family(concrete, train)


def _train_to(group: TrialGroup, state, meta: dict, budget: float, unit: str, chunk: int, checkpoint_every: int, checkpoints):
    """Train the group up to `budget` (steps, or each trial's share of the group's seconds), checkpointing
    every `checkpoint_every` steps; returns (state, meta).

    A seconds budget stops by `projected_seconds`, as the engine's loop does (each chunk is waited for here, so
    none is pending), at the last chunk's rate (kept in the meta, so a resumed group decides alike): the run ends
    within half a chunk of the budget either side, instead of up to a whole chunk past it."""
    step, seconds, step_seconds = meta["step"], meta["train_seconds"], meta.get("step_seconds", 0.0)

    def next_length() -> int:
        length = min(chunk, int(budget) - step) if unit == "steps" else chunk
        if checkpoint_every and checkpoint_every < UNLIMITED_STEPS:
            length = min(length, checkpoint_every - step % checkpoint_every)
        return length

    while (step < budget) if unit == "steps" else (projected_seconds(seconds, step_seconds, 0, next_length()) / group.size < budget):
        length = next_length()
        compiled = group.compile_seconds
        started = time.perf_counter()
        state, _ = group.train(state, step, length)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - started - (group.compile_seconds - compiled)  # training time only
        seconds, step_seconds, step = seconds + elapsed, elapsed / length, step + length
        meta = {**meta, "step": step, "train_seconds": seconds, "step_seconds": step_seconds}
        if checkpoint_every and step % checkpoint_every == 0:
            checkpoints.save(step, group.checkpointed(state), meta)
    return state, meta


def _measure(protocol, trial, record, family, state, config, train, test, classifier, meta, flops, group_size, root) -> None:
    """Evaluate one trial of the group at the budget point it is at and append the point to its record."""
    directory, budget = trial.directory(root), protocol.budgets[len(record["points"])]
    os.makedirs(directory, exist_ok=True)
    started = time.perf_counter()
    state = refit_ex_post(family, state, train)  # as the engine does before it evaluates
    try:
        metrics = evaluate_trial(protocol, trial, family, state, config, train, test, classifier, directory, meta["step"])
    except ValueError as error:
        log.warning("%s could not be evaluated at budget %g: %s", trial, budget, error)
        record["diverged"] = {"budget": budget, "error": f"evaluation failed: {error}"}
        return
    record["points"].append(
        {
            "budget": budget,
            "steps": meta["step"],
            "train_seconds": meta["train_seconds"] / group_size,  # its share of the group's time
            "flops": flops * meta["step"],
            "eval_seconds": time.perf_counter() - started,
            "metrics": metrics,
            "group_size": group_size,
        }
    )
