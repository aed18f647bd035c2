"""Run a study (or one slice of it) and collect the records a report is built from.

For each unit (a family on one training-set size): the K settings train with the search seed; the best
setting at each budget point (lowest KID, the study's criterion) then trains with the re-seeding seeds, up to
the last budget point it is best at, and with `reseed_default` the default setting does too, over every point.
The search settings train one at a time through the engine, or as vectorized groups (genjax.study.groups,
the protocol's `vectorize`: by default vmapped groups on accelerators and, on CPU, each experiment's declared
`Contender.cpu_vectorize`: groups spread over the cores for the entries that declare 'vmap', one at a time
for the others); the re-seeds of a chosen setting likewise, as a group of seeds (each trial its own seed's
batches and keys) or one at a time.

Everything lands in the workdir: study_plan.json (the protocol), one run directory and trial.json per trial,
and units/<family>_n<size>.json when a unit is complete. Rerunning resumes; finished trials are reused.
"""

import dataclasses
import json
import logging
import math
import os

from tqdm.auto import tqdm

from genjax import data
from genjax.errors import UserError
from genjax.metrics.classifier import load_classifier
from genjax.study import groups
from genjax.study.plan import Protocol, Unit, check, check_data_sizes, plan_path, protocol_from, read_plan, settings_of, units_of
from genjax.study.trials import Trial, run_trial
from genjax.train.rundir import write_json_atomically

log = logging.getLogger("genjax")
CRITERION = "kid"  # the metric that picks each family's best setting (lower is better)


def score(point: dict | None) -> float:
    """The criterion at a point; a missing or non-finite value (a diverged trial) ranks last."""
    value = (point or {}).get("metrics", {}).get(CRITERION)
    return value if value is not None and math.isfinite(value) else math.inf


def point_at(record: dict, index: int) -> dict | None:
    points = record["points"]
    return points[index] if index < len(points) else None


def best_settings(protocol: Protocol, search: list[dict]) -> list[int]:
    """The best setting index at each budget point, from the K search records (ties: the lower index)."""
    return [min(range(len(search)), key=lambda k: (score(point_at(search[k], i)), k)) for i in range(len(protocol.budgets))]


def reseeded_per_unit(protocol: Protocol) -> int:
    """The progress bar's guess of the settings re-seeded per unit (one best setting, and the default when
    asked), corrected as each unit's search ends."""
    return 1 + int(protocol.reseed_default)


def _unit_path(root: str, unit: Unit) -> str:
    return os.path.join(root, "units", f"{unit.family}_n{unit.data_size}.json")


def write_plan(root: str, protocol: Protocol) -> None:
    """study_plan.json. A workdir whose plan differs in anything but the family list is refused (its records
    would mix); another family list is this study grown or narrowed: the plan records the new list, and keeps
    the fingerprints that older trial records carry (genjax.study.trials.read_record)."""
    plan = {"protocol": dataclasses.asdict(protocol), "fingerprint": protocol.fingerprint()}
    plan |= {"trial_fingerprint": protocol.trial_fingerprint(), "legacy_fingerprints": []}
    if os.path.exists(plan_path(root)):
        old = read_plan(root)
        if old is None:
            raise UserError(
                f"{plan_path(root)} is unreadable (corrupted): delete it and rerun with the same options as before "
                "(the trials whose records match them are kept)"
            )
        if old["trial_fingerprint"] != plan["trial_fingerprint"]:
            raise UserError(
                f"{root} holds another study (protocol {old['fingerprint']}); give a new --workdir or the same options as before "
                "(--families may differ: the study grows by the families it lacks)"
            )
        if old["fingerprint"] == plan["fingerprint"]:
            return
        plan["legacy_fingerprints"] = old["legacy_fingerprints"]
    os.makedirs(root, exist_ok=True)
    write_json_atomically(plan_path(root), plan, indent=1)


def run_unit(protocol: Protocol, contender, unit: Unit, root: str, classifier, test, bar) -> dict:
    """The unit's search and re-seeded trials (resuming any); returns and writes its record."""
    settings = settings_of(protocol, contender)

    def trial(k: int, seed: int, num_points: int | None = None) -> dict:
        record = run_trial(
            protocol, contender, Trial(unit.family, unit.data_size, k, settings[k], seed), root, classifier, test, num_points
        )
        bar.update(1)
        return record

    grouped = groups.run_groups(protocol, contender, unit, settings, root, classifier, test, lambda: bar.update(1))
    search = [grouped[k] if k in grouped else trial(k, protocol.search_seed) for k in range(len(settings))]
    best = best_settings(protocol, search)
    # a re-seeded setting trains up to the last budget point it is best at: the report reads it there only
    until = {k: 1 + max(i for i, b in enumerate(best) if b == k) for k in set(best)}
    if protocol.reseed_default:  # the reference the search is judged against, at every point
        until[0] = len(protocol.budgets)
    until = dict(sorted(until.items()))
    bar.total += (len(until) - reseeded_per_unit(protocol)) * protocol.reseeds  # the estimate's guess, corrected
    bar.refresh()
    grouped = groups.run_reseed_groups(protocol, contender, unit, settings, until, root, classifier, test, lambda: bar.update(1))
    reseeded = {str(k): [grouped.get(k, {}).get(seed) or trial(k, seed, until[k]) for seed in protocol.seeds[1:]] for k in until}
    record = {
        "unit": dataclasses.asdict(unit),
        "root": os.path.abspath(root),
        "settings": settings,
        "search": search,
        "best": best,
        "reseeded": reseeded,
    }
    os.makedirs(os.path.dirname(_unit_path(root, unit)), exist_ok=True)
    write_json_atomically(_unit_path(root, unit), record, indent=None)
    return record


def run_study(protocol: Protocol, contenders: dict, root: str, shard: tuple[int, int] = (0, 1)) -> list[dict]:
    """Run the units of slice `shard` = (i, n) (units i, i + n, ...); returns their records."""
    check(protocol, contenders)
    train = data.load(protocol.dataset, "train")
    check_data_sizes(protocol, train.num_examples)
    write_plan(root, protocol)
    test = data.load(protocol.dataset, "test")
    classifier = load_classifier(train, test, protocol.classifier_steps)
    units = units_of(protocol)[shard[0] :: shard[1]]
    estimate = len(units) * (protocol.num_settings + reseeded_per_unit(protocol) * protocol.reseeds)
    with tqdm(total=estimate, desc="study trials", unit="trial", position=0, dynamic_ncols=True) as bar:
        records = []
        for unit in units:
            bar.set_postfix_str(unit.name)
            records.append(run_unit(protocol, contenders[unit.family], unit, root, classifier, test, bar))
    return records


def read_units(protocol: Protocol, roots: list[str]) -> list[dict]:
    """Every unit's record of the study, from the workdirs of its slices. Raises UserError naming the first
    unit that no slice finished, or a slice whose files are corrupted or belong to another study."""
    found = {}
    for root in roots:
        plan = _read_plan(root)
        if plan["trial_fingerprint"] != protocol.trial_fingerprint():
            raise UserError(f"{root} is a slice of another study (protocol {plan['fingerprint']}, not {protocol.fingerprint()})")
        for unit in units_of(protocol):
            unit_file = _unit_path(root, unit)
            if not os.path.exists(unit_file):
                continue
            try:
                with open(unit_file) as f:
                    found[unit.name] = {**json.load(f), "root": os.path.abspath(root)}
            except ValueError:
                raise UserError(f"{unit_file} is corrupted (not JSON); rerun that slice to rebuild it") from None
    for unit in units_of(protocol):
        if unit.name not in found:
            raise UserError(f"unit {unit.name} is in no slice of {', '.join(roots)}: run its slice (or rerun the study) first")
    return [found[unit.name] for unit in units_of(protocol)]


def _read_plan(root: str) -> dict:
    """A slice's plan (genjax.study.plan.read_plan). Raises UserError when it has none readable."""
    plan = read_plan(root)
    if plan is None:
        raise UserError(f"{root} is not a study slice (no readable study_plan.json); give the --workdir of each slice")
    return plan


def merged_protocol(roots: list[str]) -> Protocol:
    """The protocol of a study run in slices: the first slice's, over the families of every slice (in order of
    first appearance), so that slices which ran different families merge into one report."""
    protocols = [protocol_from(_read_plan(root)["protocol"]) for root in roots]
    families = tuple(dict.fromkeys(name for p in protocols for name in p.families))
    return dataclasses.replace(protocols[0], families=families)
