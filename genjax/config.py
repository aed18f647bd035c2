"""Experiment configs: `ml_collections.ConfigDict`s, overridden from the command line and validated.

Every experiment's `get_config()` starts from `base_config()` (the fields the engine reads) and adds its
model's fields. `apply_overrides` takes `--config.field=value` strings; ConfigDict refuses values whose
type does not match the default. `validate_base` checks the engine's fields, each model module checks its
own, and all of it happens before any work starts, each problem reported as one `UserError` sentence.
"""

import ast
import math

import ml_collections

from genjax.errors import UserError

# field -> one-line help, shown by --help
BASE_FIELDS = {
    "model": "model family: a module of genjax.models (genjax.models.names())",
    "dataset": "dataset name (see genjax.data.DATASETS)",
    "source": "data source: auto (tfds if prepared, else embedded), embedded, tfds or toy",
    "data_dir": "tfds data directory ('' for tfds's default)",
    "seed": "root of every random number: init, data order, noise",
    "batch_size": "global batch size, split over all devices",
    "num_steps": "training steps; rerunning with more steps continues from the last checkpoint",
    "train_examples": "train on the first N examples of the training split (0: all of them); for data-size studies",
    "toy_train_points": "points drawn for a 2-D toy dataset's training split (0: 50,000); image datasets ignore it",
    "time_budget": "stop after this many seconds of training (compilation excluded; 0: no limit), within half a step either side where steps run one call each (convolutional families on CPU), else half a call of steps_per_call steps",
    "learning_rate": "optimizer step size",
    "adam_b1": "Adam beta1, the decay of the gradient's moving mean (in two-stage families the first stage's)",
    "adam_b2": "Adam beta2, the decay of the squared gradient's moving mean (the first stage's, as adam_b1)",
    "eval_every": "steps between test-set evaluations (and sample images)",
    "test_metrics": "evaluate on the test split at eval_every steps and at the end (the study turns it off: it measures each budget point itself; the sample images are still drawn)",
    "checkpoint_every": "steps between checkpoints",
    "keep_checkpoints": "how many recent checkpoints to keep",
    "steps_per_call": "training steps compiled into one device call (lax.scan)",
    "num_devices": "devices to shard the batch over (0: all)",
    "data_shards": "split the training set into this many shards over the devices (0: one per process)",
    "distributed": "join a multi-process run (JAX finds the cluster; also on when JAX_COORDINATOR_ADDRESS is set)",
    "num_samples": "samples drawn for images and samples.npz (0: neither; the study draws its own)",
    "figures": "draw curves.png and the family's own figures at the end (the study turns them off: it draws its own)",
    "fresh": "delete this workdir's checkpoints and logs and start over",
    "skip_nonfinite": "discard steps whose loss or new parameters are NaN/inf (counted as skipped_steps) instead of stopping",
    "traced_hyperparameters": "comma-separated float fields the compiled train step takes as arguments, not constants: runs that differ only in them share one program (the study traces each family's continuous search fields)",
    "compute_dtype": "dtype of activations, matmuls and convolutions: float32, or bfloat16 (mixed precision for GPU/TPU; parameters, optimizer state, losses and statistics stay float32)",
}


def base_config() -> ml_collections.ConfigDict:
    """The fields every experiment has, with defaults suited to MNIST on a 2-core CPU."""
    return ml_collections.ConfigDict(
        {
            "model": "",
            "dataset": "mnist",
            "source": "auto",
            "data_dir": "",
            "seed": 0,
            "batch_size": 128,
            "num_steps": 5000,
            "train_examples": 0,
            "toy_train_points": 0,
            "time_budget": 0.0,
            "learning_rate": 1e-3,
            "adam_b1": 0.9,  # Adam's own (Kingma & Ba 2015); the GANs default to 0.5 (Radford et al. 2016)
            "adam_b2": 0.999,
            "eval_every": 1000,
            "test_metrics": True,
            "checkpoint_every": 1000,
            "keep_checkpoints": 3,
            "steps_per_call": 100,
            "num_devices": 0,
            "data_shards": 0,
            "distributed": False,
            "num_samples": 64,
            "figures": True,
            "fresh": False,
            "skip_nonfinite": False,
            "traced_hyperparameters": "",
            "compute_dtype": "float32",
        }
    )


def _parse_value(text: str, default):
    """A command-line string as the type of the field's default."""
    if isinstance(default, bool):
        lowered = text.lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise ValueError("expected true or false")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    if isinstance(default, tuple):
        value = ast.literal_eval(text if text.strip().startswith("(") else f"({text},)")
        return tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return text


def renamed_fields(model: str) -> dict:
    """{old name: new name} of the config fields that model family renamed (its module's RENAMED)."""
    from genjax import models

    try:
        return dict(getattr(models.get(model), "RENAMED", {}))
    except UserError:
        return {}


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict) -> None:
    """Set config[field] = value for each 'field' -> 'value string'; refuses unknown fields and bad types."""
    for field, text in overrides.items():
        if field not in config:
            new = renamed_fields(config.get("model", "")).get(field)
            if new is not None:
                raise UserError(f"config field '{field}' of model {config.model} was renamed to '{new}'; use --config.{new}={text}")
            raise UserError(f"unknown config field '{field}'; --help lists the fields")
        default = config[field]
        try:
            config[field] = _parse_value(text, default)
        except (ValueError, SyntaxError, TypeError):
            raise UserError(f"--config.{field}={text} is not a valid {type(default).__name__} (default: {default!r})") from None


def traced_hyperparameters(config) -> tuple[str, ...]:
    """The fields `traced_hyperparameters` names (older configs have none)."""
    return tuple(field for field in config.get("traced_hyperparameters", "").split(",") if field)


def with_values(config, values: dict):
    """A copy of `config` whose fields `values` may be traced scalars (no type checks): a family built from it
    inside a traced function computes with them as arguments of the program."""
    copy = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    for name, value in values.items():
        copy[name] = value
    return copy


def config_from_dict(values: dict) -> ml_collections.ConfigDict:
    """A config saved as JSON (config.json, checkpoint metadata) back as a ConfigDict: lists become tuples
    again, fields the model family renamed since (its RENAMED) get their new names, and engine fields added
    since (train_examples, toy_train_points) get their defaults."""
    renames = renamed_fields(values.get("model", ""))
    restored = {renames.get(k, k): tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    return ml_collections.ConfigDict({**base_config().to_dict(), **restored})


def check(condition: bool, message: str) -> None:
    """Raise UserError(message) unless condition holds."""
    if not condition:
        raise UserError(message)


def check_positive(config, *fields: str) -> None:
    for field in fields:
        value = config[field]
        check(math.isfinite(value) and value > 0, f"{field} must be a positive number, got {value}")


def check_choice(config, field: str, choices) -> None:
    check(config[field] in choices, f"unknown {field} '{config[field]}'; choose one of: {', '.join(choices)}")


def validate_base(config) -> None:
    """Check the engine's fields (model fields are checked by the model's own `validate`)."""
    from genjax.data import DATASETS, SOURCES
    from genjax.nn.precision import COMPUTE_DTYPES

    check_choice(config, "compute_dtype", COMPUTE_DTYPES)
    check_choice(config, "dataset", DATASETS)
    check_choice(config, "source", SOURCES)
    check_positive(config, "batch_size", "learning_rate", "eval_every", "checkpoint_every")
    check_positive(config, "keep_checkpoints", "steps_per_call")
    check(config.num_samples >= 0, f"num_samples must be >= 0 (0: no sample pictures), got {config.num_samples}")
    for field in ("adam_b1", "adam_b2"):
        check(0 <= config[field] < 1, f"{field} must be in [0, 1), got {config[field]}")
    check(config.num_steps >= 0, f"num_steps must be >= 0, got {config.num_steps}")
    check(
        config.time_budget >= 0 and math.isfinite(config.time_budget),
        f"time_budget must be >= 0 seconds (0: no limit), got {config.time_budget}",
    )
    check(config.seed >= 0, f"seed must be >= 0, got {config.seed}")
    for field in traced_hyperparameters(config):
        check(
            isinstance(config.get(field), float),
            f"traced_hyperparameters names '{field}', which is not a float field of this config; name float fields only",
        )
    check(config.train_examples >= 0, f"train_examples must be >= 0 (0 means the whole split), got {config.train_examples}")
    check(config.toy_train_points >= 0, f"toy_train_points must be >= 0 (0 means 50,000), got {config.toy_train_points}")
    check(config.num_devices >= 0, f"num_devices must be >= 0 (0 means all), got {config.num_devices}")
    check(config.data_shards >= 0, f"data_shards must be >= 0 (0 means one per process), got {config.data_shards}")
