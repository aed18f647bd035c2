"""An experiment is a config plus its stages: validate every stage, load the data, build each family, fit.

Most experiments are one fit. One that trains in stages (the VQ-VAE, then a prior over its codes) declares
them, in its module, as STAGES: each stage names its run directory inside the experiment's and says how
its config follows from the experiment's config and from the stages before it. Nothing detects stages from
config fields; the command line, `experiments.compare` and `genjax.evaluate` all go through `run`.

An experiment module also declares what it enters in the comparison (CONTENDERS); the library takes these
declarations from the experiments and never imports an experiment itself.

    from experiments import vae_mnist
    config = vae_mnist.get_config()
    config.num_steps = 500
    result = genjax.experiment.run(config, workdir="runs/quick_vae", experiment="vae_mnist")
"""

import dataclasses
import json
import os
from collections.abc import Callable

from genjax import data, models
from genjax.compilation_cache import enable_compilation_cache
from genjax.config import validate_base
from genjax.errors import UserError
from genjax.train import FitResult, fit
from genjax.train.parallel import initialize_distributed, is_primary
from genjax.train.rundir import ensure_writable


@dataclasses.dataclass(frozen=True)
class Earlier:
    """What a stage may take from a stage before it: its run directory (absolute) and its summary."""

    workdir: str
    summary: dict


@dataclasses.dataclass(frozen=True)
class Stage:
    """One fit of an experiment.

    name            what the stage is ('vqvae', 'prior')
    subdir          its run directory inside the experiment's ('' is the experiment's directory itself;
                    the last stage, the whole model, lives there)
    configure       configure(config, workdir, earlier) -> the stage's config, from the experiment's config,
                    the stage's own run directory and the list of Earlier stages (None: the config as is).
                    It may read its run directory (to refit a stage whose input changed) but writes nothing.
    budget_share    its training steps as a share of a comparison's per-model budget (the prior: half)
    """

    name: str
    subdir: str = ""
    configure: Callable | None = None
    budget_share: float = 1.0

    def config_for(self, config, workdir: str, earlier: list):
        return self.configure(config, workdir, earlier) if self.configure else config


ONE_STAGE = (Stage("train"),)


def stages_of(module) -> tuple:
    """An experiment module's STAGES (one plain fit when it declares none)."""
    return tuple(getattr(module, "STAGES", ONE_STAGE))


@dataclasses.dataclass(frozen=True)
class Contender:
    """One entry of the comparison, declared by an experiment module in its CONTENDERS.

    name            the entry's name in `--models` and the report ('vae', 'beta_vae')
    description     one line with the paper
    overrides       config fields that make this entry out of the experiment's defaults
    cpu_vectorize   how the study's `--vectorize auto` trains this entry's search settings on CPU: 'off' (one
                    at a time, the default) or 'vmap' (vectorized groups spread over the cores, where they
                    trained faster than the engine's own runs in a study on CPU; `python -m experiments.study
                    --help` lists the entries that declare it); accelerators always vmap
    experiment, get_config, stages
                    the experiment it comes from; filled in by `contenders_of`
    """

    name: str
    description: str
    overrides: dict = dataclasses.field(default_factory=dict)
    cpu_vectorize: str = "off"
    experiment: str = ""
    get_config: Callable | None = None
    stages: tuple = ONE_STAGE

    def config(self):
        """The experiment's config with this entry's overrides."""
        config = self.get_config()
        unknown = [field for field in self.overrides if field not in config]
        if unknown:
            raise UserError(f"contender {self.name} of experiment {self.experiment} overrides no config field {unknown[0]}")
        config.update(self.overrides)
        return config


def contenders_of(module, experiment: str) -> list:
    """The CONTENDERS an experiment module declares, bound to that experiment."""
    return [
        dataclasses.replace(c, experiment=experiment, get_config=module.get_config, stages=stages_of(module))
        for c in getattr(module, "CONTENDERS", ())
    ]


def validate(config):
    """Check every field before any work starts; returns the model module. Raises UserError."""
    validate_base(config)
    model = models.get(config.model)
    model.validate(config)
    return model


def load_data(config) -> tuple[data.Dataset, data.Dataset]:
    """The (train, test) splits the config names; the training split cut to its first config.train_examples."""
    train, test = [
        data.load(config.dataset, split, config.source, config.data_dir or None, config.seed, config.toy_train_points)
        for split in ("train", "test")
    ]
    if config.train_examples:
        if config.train_examples > train.num_examples:
            raise UserError(
                f"train_examples={config.train_examples} is more than the {train.num_examples} training examples of "
                f"{train.name} ({train.source}); use at most {train.num_examples}"
            )
        train = train.first(config.train_examples)
    return train, test


def fit_one(config, workdir: str, experiment: str, points=None) -> FitResult:
    """Validate, load data, build the family and fit it in `workdir` (resuming any run there); `points`
    (genjax.train.BudgetPoints): measure it at these points along the way."""
    model = validate(config)
    initialize_distributed(config.distributed)
    enable_compilation_cache()
    ensure_writable(workdir)
    train, test = load_data(config)
    return fit(model.make_family(config, train), config, train, test, workdir, experiment, model.make_family, points)


def stage_dir(workdir: str, stage: Stage) -> str:
    """The stage's run directory inside the experiment's `workdir`."""
    return os.path.join(workdir, stage.subdir) if stage.subdir else workdir


def stage_configs(config, workdir: str, stages=ONE_STAGE, adjust=None) -> list:
    """Every stage's config, with placeholder earlier stages (no steps trained): to validate them all, and to
    list their fields, before any work. adjust(stage, config) -> config as in `run`."""
    earlier, configs = [], []
    for stage in stages:
        directory = os.path.abspath(stage_dir(workdir, stage))
        stage_config = stage.config_for(config, directory, earlier)
        configs.append(adjust(stage, stage_config) if adjust else stage_config)
        earlier.append(Earlier(directory, {"steps": 0}))
    return configs


def prepare_stages(config, workdir: str, experiment: str, stages=ONE_STAGE, adjust=None) -> None:
    """Validate every stage's config before the first one trains; a multi-stage experiment's run directory gets
    stages.json, the stage layout, so that it describes itself."""
    for stage_config in stage_configs(config, workdir, stages, adjust):
        validate(stage_config)
    if len(stages) > 1 and is_primary():
        ensure_writable(workdir)
        layout = [{"name": s.name, "subdir": s.subdir, "budget_share": s.budget_share} for s in stages]
        with open(os.path.join(workdir, "stages.json"), "w") as f:
            json.dump({"experiment": experiment, "stages": layout}, f, indent=2)


def run_stages(config, workdir: str, experiment: str, stages=ONE_STAGE, adjust=None, fitted: tuple = ()) -> list:
    """Fit each stage in order, in its own run directory (each resumes on its own); returns their FitResults.

    adjust(stage, config) -> config changes a stage's config after `configure` (the comparison sets budgets
    there). Every stage's config is validated before the first one trains (prepare_stages). `fitted`: the
    Earlier of the first stages, fitted by the caller (the study fits the first through its budget points and
    the later ones at each): only the stages after them run, and only their results are returned.
    """
    if not fitted:
        prepare_stages(config, workdir, experiment, stages, adjust)
    earlier, results = list(fitted), []
    for stage in stages[len(fitted) :]:
        directory = stage_dir(workdir, stage)
        stage_config = stage.config_for(config, os.path.abspath(directory), earlier)
        stage_config = adjust(stage, stage_config) if adjust else stage_config
        results.append(fit_one(stage_config, directory, experiment))
        earlier.append(Earlier(os.path.abspath(directory), results[-1].summary))
    return results


def run(config, workdir: str, experiment: str, stages=ONE_STAGE) -> FitResult:
    """Fit every stage of the experiment in `workdir`; returns the last stage's FitResult (the whole model)."""
    return run_stages(config, workdir, experiment, stages)[-1]
