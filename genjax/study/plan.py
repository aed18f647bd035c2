"""What a study trains: its protocol, and the units and trials that follow from it.

After Lucic et al. (2018, "Are GANs Created Equal?"): every family gets the same number K of hyperparameter
settings drawn from its own declared search space (genjax.search; setting 0 is the experiment's defaults),
the same data, batch size and budget. A *unit* is one family on one training-set size: its K settings train
with the search seed, then the best setting at each budget point trains again with `reseeds` more seeds so
that every claim carries a seed interval (and, with `reseed_default`, the default setting over every point, the
reference that tells whether the search beat the defaults). Budget points lie along one training run (one fit
measured at each point; a multi-stage family's first stage too, its later stages fitted at each point to the
first stage's checkpoint there), so the budget axis needs no retraining.

Units are the study's slices (`--shard i/n`): a unit's re-seeded trials depend on its own search only, so a
unit runs anywhere without the others, and slices merge into one report.
"""

import dataclasses
import hashlib
import json
import math
import os

from genjax import experiment, models
from genjax.errors import UserError
from genjax.evaluate import EVALUATION_MINIMUMS, check_minimums
from genjax.search import draw_settings, space_of

UNITS = ("seconds", "steps")
VECTORIZE = ("auto", "off", "vmap", "unroll")  # genjax.study.groups
# fields added to Protocol after studies were run, with the value that behaves as before they existed
ADDED_FIELDS = {"reseed_default": False}


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Everything that decides a study's numbers (the workdir, the slice and the progress bar do not).

    families        contender names (genjax.experiment.Contender), one per experiment
    num_settings    K: settings per family (setting 0 is the experiment's defaults)
    budgets         budget points, ascending, in `unit`: each family trains up to the last and is measured at each
    data_sizes      training-set sizes (the first N images of the training split)
    reseeds         seeds, after the search seed, that the best setting of each budget point retrains with
    reseed_default  re-seed the default (setting 0) over every budget point too, so that "the search beats the
                    default" is judged on the same re-seeding seeds as the map (off in the default study: it adds up
                    to `reseeds` trials a unit)
    vectorize       how the search settings train: auto, off (one at a time), vmap or unroll (genjax.study.groups)
    """

    families: tuple
    dataset: str = "mnist"
    num_settings: int = 6
    budgets: tuple = (3.0, 6.0, 12.0)
    unit: str = "seconds"
    data_sizes: tuple = (500, 4500)
    reseeds: int = 3
    reseed_default: bool = False
    search_seed: int = 0
    batch_size: int = 64
    num_samples: int = 500
    iwae_samples: int = 100
    likelihood_examples: int = 20
    classifier_steps: int = 1500
    vectorize: str = "auto"

    @property
    def seeds(self) -> tuple:
        """The search seed, then the re-seeding seeds."""
        return tuple(range(self.search_seed, self.search_seed + 1 + self.reseeds))

    def fingerprint(self) -> str:
        """A short hash of the whole protocol, its families included (the report's protocol id). A field added
        after studies were run is hashed only away from its old behaviour, so those studies keep their id."""
        return _hash({k: v for k, v in dataclasses.asdict(self).items() if ADDED_FIELDS.get(k, ...) != v})

    def trial_fingerprint(self) -> str:
        """A short hash of what decides a trial's numbers: every field but the family list, since a unit's trials
        never depend on the other families. Trials and slices of one study share it, whatever families each
        run named, so a study grows by a family without training the others again, and slices of different
        families merge into one report."""
        return _hash({k: v for k, v in dataclasses.asdict(self).items() if k != "families" and ADDED_FIELDS.get(k, ...) != v})


def _hash(values: dict) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclasses.dataclass(frozen=True)
class Unit:
    family: str
    data_size: int

    @property
    def name(self) -> str:
        return f"{self.family}/n{self.data_size}"


def protocol_from(values: dict) -> Protocol:
    """The Protocol a study_plan.json records (JSON lists back to tuples; a field it predates keeps its default)."""
    return Protocol(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


def plan_path(root: str) -> str:
    return os.path.join(root, "study_plan.json")


def read_plan(root: str) -> dict | None:
    """A workdir's study_plan.json, or None when it has none readable:
    {"protocol", "fingerprint", "trial_fingerprint", "legacy_fingerprints"}. A plan written before trials were
    identified without the family list lacks the last two: its trials carry its whole-protocol fingerprint."""
    try:
        with open(plan_path(root)) as f:
            plan = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(plan, dict) or not {"protocol", "fingerprint"} <= set(plan):
        return None
    if "trial_fingerprint" not in plan:
        plan = {
            **plan,
            "trial_fingerprint": protocol_from(plan["protocol"]).trial_fingerprint(),
            "legacy_fingerprints": [plan["fingerprint"]],
        }
    return plan


def units_of(protocol: Protocol) -> list[Unit]:
    return [Unit(family, size) for size in protocol.data_sizes for family in protocol.families]


def settings_of(protocol: Protocol, contender) -> list[dict]:
    """The K settings of one family, the same on every machine (drawn from the search seed and its name)."""
    config = contender.config()
    space = space_of(models.get(config.model), config)
    return draw_settings(space, config, protocol.num_settings, protocol.search_seed, contender.name)


def check(protocol: Protocol, contenders: dict) -> None:
    """Raise UserError for anything the study cannot run, before any training and before its data is loaded (the
    data sizes against the dataset: check_data_sizes)."""
    if not protocol.families:
        raise UserError("no families to study; give at least one with --families")
    for name in protocol.families:
        if name not in contenders:
            raise UserError(f"unknown family '{name}'; choose from {', '.join(contenders)}")
    if len(set(protocol.families)) != len(protocol.families):
        raise UserError(f"a family is named twice in {','.join(protocol.families)}")
    if protocol.num_settings < 1:
        raise UserError(f"the number of settings K must be >= 1, got {protocol.num_settings}")
    if protocol.vectorize not in VECTORIZE:
        raise UserError(f"unknown vectorize '{protocol.vectorize}'; choose {', '.join(VECTORIZE)}")
    if protocol.unit not in UNITS:
        raise UserError(f"unknown budget unit '{protocol.unit}'; choose seconds or steps")
    budgets = list(protocol.budgets)
    if not budgets:
        raise UserError("the budget list is empty; give at least one budget point, e.g. --budgets 10,20,40")
    # inf and nan parse as floats (1e309 too): refuse them here, before int() below or a training run meets them
    if not all(math.isfinite(b) and b > 0 for b in budgets):
        raise UserError(f"budgets must be finite positive numbers, got {budgets}; give e.g. --budgets 10,20,40")
    if budgets != sorted(set(budgets)):
        raise UserError(f"budgets must be strictly increasing, got {budgets}; give e.g. --budgets 10,20,40")
    if protocol.unit == "steps" and any(b != int(b) for b in budgets):
        raise UserError(f"budgets in steps must be whole numbers, got {budgets}")
    if not protocol.data_sizes:
        raise UserError("the data size list is empty; give at least one training-set size, e.g. --data_sizes 500,4500")
    if len(set(protocol.data_sizes)) != len(protocol.data_sizes):
        raise UserError(f"data sizes must be distinct, got {list(protocol.data_sizes)}; give each size once with --data_sizes")
    # one check per field, so the error names the value that is wrong
    if protocol.reseeds < 0:
        raise UserError(f"--reseeds must be >= 0, got {protocol.reseeds}")
    if protocol.search_seed < 0:
        raise UserError(f"--search_seed must be >= 0, got {protocol.search_seed}")
    check_minimums(protocol, EVALUATION_MINIMUMS, flags=("num_samples",))  # the others are Protocol fields without a flag
    for name in protocol.families:  # every setting must be a valid config: one-line errors now, not mid-study
        contender = contenders[name]
        for setting in settings_of(protocol, contender):
            config = contender.config()
            config.update(setting)
            for stage_config in experiment.stage_configs(config, "/nonexistent", contender.stages):
                experiment.validate(stage_config)


def check_data_sizes(protocol: Protocol, train_examples: int) -> None:
    """Raise UserError unless every data size lies between the batch size and the dataset's `train_examples`. Apart
    from `check`, which needs no data: the fields are checked before the dataset is loaded (and before its warnings)."""
    for size in protocol.data_sizes:
        if size < protocol.batch_size or size > train_examples:
            raise UserError(
                f"data size {size} is outside {protocol.batch_size}..{train_examples} "
                f"(the batch size .. the {train_examples} training images of {protocol.dataset}); choose sizes in that range"
            )
