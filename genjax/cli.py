"""The command line of every experiment: `python -m experiments.NAME [--workdir DIR] [--config.FIELD=VALUE ...]`.

Bad input (unknown field, dataset or model, invalid value, unusable workdir or checkpoint) ends with one
line `error: ...` on stderr and exit code 2, before any training. Divergence, a failed write and
SIGINT/SIGTERM each have their own exit code (genjax.errors); rerunning the same command resumes.
"""

import logging
import os
import sys

from genjax import models
from genjax.config import BASE_FIELDS, apply_overrides
from genjax.errors import EXIT_BAD_INPUT, EXIT_DIVERGED, EXIT_IO, UserError, disk_error_reason


def parse_args(argv: list[str]) -> tuple[str | None, dict, bool]:
    """(workdir or None, {field: value string}, help requested) from command-line arguments."""
    workdir, overrides, wants_help = None, {}, False
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            wants_help = True
            continue
        name, has_value, value = arg.partition("=")
        if name in ("--workdir",) or name.startswith("--config."):
            if not has_value:
                if not args:
                    raise UserError(f"{name} needs a value: {name}=VALUE")
                value = args.pop(0)
            if name == "--workdir":
                workdir = value
            else:
                overrides[name[len("--config.") :]] = value
            continue
        raise UserError(f"unknown argument '{arg}'; use --workdir=DIR and --config.FIELD=VALUE (see --help)")
    return workdir, overrides, wants_help


def parse_shard(text: str, num_jobs: int, what: str) -> tuple[int, int]:
    """'i/n' -> (i, n): this process runs jobs i, i + n, i + 2n, ... (0 <= i < n <= num_jobs). `what` names the
    jobs in the error (the study's units, the table's runs)."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard must be i/n (e.g. 0/4), got '{text}'") from None
    if not 0 <= index < count or count > num_jobs:
        raise UserError(f"--shard {text} is out of range: need 0 <= i < n <= {num_jobs} ({what})")
    return index, count


def help_text(experiment: str, description: str, config, field_help: dict) -> str:
    lines = [
        f"usage: python -m experiments.{experiment} [--workdir DIR] [--config.FIELD=VALUE ...]",
        "",
        description.strip(),
        "",
        f"  --workdir DIR   run directory (default: runs/{experiment}); an existing run there is resumed",
        "",
        "config fields (--config.FIELD=VALUE):",
    ]
    # Columns as wide as their longest entry, so every field's help starts in one column.
    name_width = max((len(field) for field in config), default=0)
    value_width = max((len(repr(config[field])) for field in config), default=0)
    for field in config:
        lines.append(f"  {field:<{name_width}}  {config[field]!r:<{value_width}}  {field_help.get(field, '')}".rstrip())
    return "\n".join(lines)


def configure_logging() -> None:
    """genjax's own messages at INFO as plain lines on the current stderr; other libraries from WARNING.

    absl (Orbax logs through it) is silenced: every Orbax failure reaches genjax as an exception, which
    the command line turns into one line, and Orbax would add its own tracebacks from background threads.
    """
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.FATAL)
    logger = logging.getLogger("genjax")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    # A failed Orbax write leaves sibling TensorStore write tasks whose exceptions nobody awaits; asyncio logs
    # each as "Task exception was never retrieved" with a traceback when it is garbage collected. The failure
    # itself reaches `main` as an exception and is reported there in one line.
    asyncio_logger = logging.getLogger("asyncio")
    if not any(isinstance(f, _UnretrievedTaskFilter) for f in asyncio_logger.filters):
        asyncio_logger.addFilter(_UnretrievedTaskFilter())


class _UnretrievedTaskFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "exception was never retrieved" not in record.getMessage()


def _drop_closed_loop_noise(unraisable) -> None:
    """sys.unraisablehook without one harmless message.

    After an Orbax save fails (a full disk, say), TensorStore callbacks still fire into the asyncio loop
    Orbax already closed; Python can only print them as "Event loop is closed" tracebacks. The failure
    itself reaches `main` as an exception and is reported there in one line.
    """
    if isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value):
        return
    sys.__unraisablehook__(unraisable)


def exit_code_for(error: BaseException) -> int:
    """Print the one line a run ends with for `error` and return the exit code; re-raise unexpected errors."""
    from genjax.train import Interrupted, TrainingDiverged

    if isinstance(error, (TrainingDiverged, UserError)):
        print(f"error: {error}", file=sys.stderr)
        return EXIT_DIVERGED if isinstance(error, TrainingDiverged) else EXIT_BAD_INPUT
    if isinstance(error, Interrupted):
        print(f"{error}", file=sys.stderr)
        return error.exit_code
    if isinstance(error, KeyboardInterrupt):
        print("interrupted; rerun the same command to resume from the last checkpoint", file=sys.stderr)
        return 130
    reason = disk_error_reason(error)
    if reason is None:
        raise error
    print(
        f"error: the run could not write its files ({reason}); every complete checkpoint is kept: "
        "free space or fix permissions, then rerun the same command to resume",
        file=sys.stderr,
    )
    return EXIT_IO


def field_help(config, stages, workdir: str) -> dict:
    """One-line help of every field: the engine's and those of every stage's model family."""
    from genjax import experiment as experiments_lib

    helps = dict(BASE_FIELDS)
    for stage_config in experiments_lib.stage_configs(config, workdir, stages):
        helps.update(getattr(models.get(stage_config.model), "FIELDS", {}))
    return helps


def main(experiment: str, get_config, argv: list[str] | None = None, stages=None, description: str = "") -> int:
    """Run an experiment from the command line; returns the process exit code.

    `stages` are the experiment's STAGES (default: one fit); `description` is shown by --help, with every
    field the stages' model families read.
    """
    from genjax import experiment as experiments_lib

    stages = stages or experiments_lib.ONE_STAGE
    configure_logging()
    sys.unraisablehook = _drop_closed_loop_noise
    try:
        workdir, overrides, wants_help = parse_args(sys.argv[1:] if argv is None else argv)
        config = get_config()
        workdir = workdir or os.path.join("runs", experiment)
        if wants_help:
            print(help_text(experiment, description, config, field_help(config, stages, workdir)))
            return 0
        apply_overrides(config, overrides)
        summary = experiments_lib.run(config, workdir, experiment, stages).summary
    except (Exception, KeyboardInterrupt) as error:
        return exit_code_for(error)
    test_text = ", ".join(f"{k} {v:.4g}" for k, v in summary["test"].items())
    print(f"done: {summary['steps']} steps in {summary['wall_seconds']:.0f} s; test {test_text}; run directory {workdir}")
    return 0
