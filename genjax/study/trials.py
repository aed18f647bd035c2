"""One study trial: a family with one setting, one training-set size and one seed, trained through the
engine up to each budget point in turn and measured there with the metrics its capabilities allow
(genjax.evaluate, through the registry). A one-stage family trains through every point in one fit that stops
to be measured at each (genjax.train.BudgetPoints); a multi-stage family (a VQ-VAE and its prior) fits its
stages again for each point, each stage resuming its last fit (the engine's resume is exact).

A trial's record (trial.json in its run directory) grows one point at a time, so an interrupted study
resumes at the point it stopped in, from that run's last checkpoint; a finished trial is never retrained.
Training time and evaluation time are recorded apart: the budget counts training only.
"""

import dataclasses
import json
import logging
import os
import time

import jax

from genjax import experiment, models
from genjax.comparison import UNLIMITED_STEPS, contender_config, split_budget
from genjax.evaluate import evaluate_state
from genjax.search import continuous_fields
from genjax.study.plan import Protocol, read_plan
from genjax.train import BudgetPoints, TrainingDiverged, artifacts
from genjax.train.parallel import small_run_devices
from genjax.train.rundir import write_json_atomically

log = logging.getLogger("genjax")
# steps per device call under a time budget: a run ends within half a call of the budget either side, or half a
# step where its steps run one call each (genjax.train.loop); either way it decides only between calls, and a
# slow-step family's default 100-step call (the flow's U-Net on CPU) is longer than the smallest budget point itself
SECONDS_STEPS_PER_CALL = 10
PICTURE_SAMPLES = 16  # in each budget point's samples picture


@dataclasses.dataclass(frozen=True)
class Trial:
    family: str
    data_size: int
    setting_index: int
    setting: dict
    seed: int

    def directory(self, root: str) -> str:
        return os.path.join(root, "runs", self.family, f"n{self.data_size}", f"setting{self.setting_index}", f"seed{self.seed}")

    def identity(self, protocol: Protocol) -> dict:
        """What decides this trial's numbers: a record with another identity is never reused."""
        return {
            "family": self.family,
            "data_size": self.data_size,
            "setting_index": self.setting_index,
            "setting": self.setting,
            "seed": self.seed,
            "protocol": protocol.trial_fingerprint(),
        }


def budget_adjust(protocol: Protocol, budget: float, stages: tuple):
    """adjust(stage, config) for genjax.experiment.run_stages: train up to `budget`, split over the stages
    by their budget shares (the VQ-VAE's prior: a third of the seconds, or half as many steps)."""

    def adjust(stage, config):
        split_budget(config, stage, stages, *((budget, 0.0) if protocol.unit == "steps" else (0, budget)))
        # evaluate and checkpoint at the budget point only (the engine always does both at the end)
        config.eval_every = config.checkpoint_every = UNLIMITED_STEPS
        if protocol.unit == "seconds":  # the engine checks the clock between calls: short calls end nearer the budget
            config.steps_per_call = min(config.steps_per_call, SECONDS_STEPS_PER_CALL)
        # no pictures of the run's own: the study draws the point's samples picture from its evaluation, and its figures
        config.num_samples, config.figures = 0, False
        config.test_metrics = False  # the study measures each point itself: the engine's test-set pass went unread
        config.keep_checkpoints = 1  # resuming needs the last one only: a third of the disk
        # the settings of a family then lower to one train program: a new setting loads it from the persistent
        # compilation cache instead of compiling it again. Not in a later stage: its family loads the earlier
        # stage's checkpoint when it is built, which it cannot do inside a traced function
        traced = continuous_fields(models.get(config.model), config) if stage is stages[0] else ()
        config.traced_hyperparameters = ",".join(traced)
        return config

    return adjust


def trial_config(protocol: Protocol, contender, trial: Trial):
    config = contender_config(contender, protocol.dataset, trial.seed, protocol.batch_size)
    config.update(trial.setting)
    config.train_examples = trial.data_size
    config.num_devices = small_run_devices()  # a trial alone: one device, not the cores the groups spread over
    return config


def _read(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def read_record(root: str, trial: Trial, protocol: Protocol) -> dict | None:
    """The trial's record when it belongs to this protocol (None: not started or another study's). A record
    written before trials were identified without the family list carries the whole protocol's fingerprint,
    which the workdir's plan keeps among its legacy fingerprints."""
    record = _read(os.path.join(trial.directory(root), "trial.json"))
    if not record or not isinstance(record.get("identity"), dict):
        return None
    identity, expected = record["identity"], trial.identity(protocol)
    if identity == expected:
        return record
    legacy = (read_plan(root) or {}).get("legacy_fingerprints", [])
    return record if identity.get("protocol") in legacy and {**identity, "protocol": expected["protocol"]} == expected else None


def is_finished(record: dict | None, num_points: int) -> bool:
    return bool(record) and (record.get("diverged") is not None or len(record["points"]) >= num_points)


def evaluate_trial(protocol: Protocol, trial: Trial, family, state, config, train, test, classifier, directory: str, step: int) -> dict:
    """The metrics of a trial's state at a budget point; every point and every family: the same evaluation keys.
    `directory`/samples_<step>.png shows the first PICTURE_SAMPLES of the samples they were computed on (the
    report's samples figure reads the best trial's last): drawn once, where the run's own picture drew more
    with a sampling program of its own size, traced, lowered and compiled apart (its runs draw none)."""
    p = protocol
    key = jax.random.PRNGKey(trial.seed)

    def picture(samples):
        artifacts.save_samples(family, test, samples[:PICTURE_SAMPLES], step, directory)

    return evaluate_state(
        family,
        state,
        config,
        train,
        test,
        key,
        p.num_samples,
        p.iwae_samples,
        classifier=classifier,
        likelihood_examples=p.likelihood_examples,
        on_samples=picture,
    )


def run_trial(protocol: Protocol, contender, trial: Trial, root: str, classifier, test, num_points: int | None = None) -> dict:
    """Train and measure `trial` at each of the first `num_points` budget points (default all) it has not
    reached yet; returns its record.

    The first stage trains through all of them in one fit (genjax.train.BudgetPoints); at each point the later
    stages of a multi-stage family (the VQ-VAE's prior) are fitted to its checkpoint there, and the whole model is
    measured."""
    directory = trial.directory(root)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "trial.json")
    record = read_record(root, trial, protocol) or {"identity": trial.identity(protocol), "points": [], "diverged": None}
    num_points = len(protocol.budgets) if num_points is None else num_points
    if is_finished(record, num_points):
        return record
    config = trial_config(protocol, contender, trial)
    train, _ = experiment.load_data(config)
    budgets = protocol.budgets[len(record["points"]) : num_points]

    def measure(family, state, fit_config, steps, train_seconds, flops):
        """Append the point the trial is at (`flops`: XLA's count of all its steps) to its record, or record it as
        diverged when it cannot be evaluated."""
        budget = protocol.budgets[len(record["points"])]
        started = time.perf_counter()
        try:
            metrics = evaluate_trial(protocol, trial, family, state, fit_config, train, test, classifier, directory, steps)
        except ValueError as error:  # e.g. non-finite samples from finite parameters: scikit-learn refuses NaN
            log.warning("%s could not be evaluated at budget %g: %s", trial, budget, error)
            record["diverged"] = {"budget": budget, "error": f"evaluation failed: {error}"}
            raise _Unmeasurable from error
        point = {"budget": budget, "steps": steps, "train_seconds": train_seconds, "flops": flops}
        record["points"].append({**point, "eval_seconds": time.perf_counter() - started, "metrics": metrics})
        write_json_atomically(path, record)

    stages = contender.stages
    first = stages[0]
    first_dir = experiment.stage_dir(directory, first)
    # each point's end as a fit of the first stage to it would have it (its time budget, or its steps); the last is
    # the fit's own. The later stages (a prior) are fitted at each point to the first stage's checkpoint there
    ends = [
        experiment.stage_configs(config.copy_and_resolve_references(), directory, stages, budget_adjust(protocol, b, stages))[0]
        for b in budgets
    ]
    if len(stages) > 1:
        last = budget_adjust(protocol, budgets[-1], stages)
        experiment.prepare_stages(config.copy_and_resolve_references(), directory, contender.experiment, stages, last)

    def at_point(family, state, steps, seconds, flops_per_step):
        """The first stage at a point: fit the later stages to it and measure the whole model."""
        fit_config, flops = ends[-1], flops_per_step * steps
        if len(stages) > 1:
            budget = protocol.budgets[len(record["points"])]
            adjust = budget_adjust(protocol, budget, stages)
            fitted = (experiment.Earlier(os.path.abspath(first_dir), {"steps": steps}),)
            later = experiment.run_stages(config.copy_and_resolve_references(), directory, contender.experiment, stages, adjust, fitted)
            family, state, fit_config = later[-1].family, later[-1].state, later[-1].config
            seconds += sum(r.summary["total_train_seconds"] for r in later)  # a refitted prior: only its last fit's
            flops += sum(r.summary["flops_per_step"] * r.summary["steps"] for r in later)  # XLA's count per step times steps
        measure(family, state, fit_config, steps, seconds, flops)

    try:
        points = BudgetPoints(tuple(c.time_budget or c.num_steps for c in ends), at_point)
        experiment.fit_one(ends[-1], first_dir, contender.experiment, points)
    except TrainingDiverged as error:
        budget = protocol.budgets[len(record["points"])]
        log.warning("%s diverged before budget %g: %s", trial, budget, error)
        record["diverged"] = {"budget": budget, "error": str(error)}
    except _Unmeasurable:
        pass
    write_json_atomically(path, record)  # a diverged trial's last word
    return record


class _Unmeasurable(Exception):
    """A budget point's state could not be evaluated: the trial is recorded as diverged there and stops."""
