"""The run directory: created, checked writable, optionally wiped, and given its config.json once the run starts.

A run directory holds config.json, metrics.jsonl, checkpoints/, tb/, samples_<step>.png,
reconstructions_<step>.png, curves.png, samples.npz, the family's figures and, written last, summary.json:
a directory without summary.json is an unfinished run (a run that trains further first removes it).
While a run trains, it holds an exclusive lock on `<workdir>/.lock`, so a second run on the same
directory is refused instead of mixing its checkpoints and logs with the first. The lock is a kernel
`flock`: it disappears with the process, even after kill -9, so it never goes stale.
"""

import fcntl
import glob
import json
import logging
import os
import shutil
import tempfile

from genjax.errors import UserError

RUN_FILES = ("metrics.jsonl", "summary.json", "summary.json.tmp", "samples.npz", "curves.png")
RUN_DIRS = ("checkpoints", "tb")
RUN_PATTERNS = ("*.png",)


def ensure_writable(workdir: str) -> None:
    """Create `workdir` if needed; raise UserError if files cannot be written there."""
    try:
        os.makedirs(workdir, exist_ok=True)
        tempfile.TemporaryFile(dir=workdir).close()
    except OSError as error:
        raise UserError(f"cannot write to workdir {workdir} ({error.strerror}); choose another with --workdir") from None


def prepare_workdir(workdir: str, fresh: bool) -> None:
    """Create `workdir` (refusing an unwritable one) and wipe a previous run if `fresh`. config.json is written
    once the run has passed its checks (write_config): a refused command leaves the run it was pointed at as it was."""
    ensure_writable(workdir)
    if fresh:
        for name in RUN_DIRS:
            shutil.rmtree(os.path.join(workdir, name), ignore_errors=True)
        for path in [os.path.join(workdir, n) for n in RUN_FILES] + [
            p for pat in RUN_PATTERNS for p in glob.glob(os.path.join(workdir, pat))
        ]:
            if os.path.exists(path):
                os.remove(path)


def write_config(workdir: str, config, resumed: bool) -> None:
    """Write config.json. On resume, a config that differs from the saved one is allowed (say, more num_steps)
    and each changed field is logged."""
    config_path = os.path.join(workdir, "config.json")
    values = json.loads(config.to_json())
    if resumed and os.path.exists(config_path):
        with open(config_path) as f:
            previous = json.load(f)
        changed = {k: (previous.get(k), v) for k, v in values.items() if k != "fresh" and previous.get(k) != v}
        for field, (old, new) in changed.items():
            logging.getLogger("genjax").info("config.%s changed from %r to %r since the last run", field, old, new)
    with open(config_path, "w") as f:
        json.dump(values, f, indent=2)


class WorkdirLock:
    """Context manager: an exclusive, non-blocking flock on <workdir>/.lock, or a UserError naming the holder."""

    def __init__(self, workdir: str):
        self.path = os.path.join(workdir, ".lock")
        self.file = None

    def __enter__(self):
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.file.seek(0)
            holder = self.file.read().strip() or "unknown"
            self.file.close()
            raise UserError(
                f"workdir {os.path.dirname(self.path)} is in use by another genjax run (pid {holder}); "
                "wait for it to finish or choose another --workdir"
            ) from None
        self.file.truncate(0)
        self.file.write(str(os.getpid()))
        self.file.flush()
        return self

    def __exit__(self, *exc):
        fcntl.flock(self.file, fcntl.LOCK_UN)
        self.file.close()
        return False


def refit_if_stale(later_config, workdir: str, step_field: str, earlier: str) -> None:
    """Set later_config.fresh when the later stage's run in `workdir` was fitted to another step of the stage
    before it: later_config[step_field] is that step now, the run's config.json the step it was fitted to
    (step 0, "latest", is the placeholder of an earlier stage not trained yet: nothing to compare)."""
    path = os.path.join(workdir, "config.json")
    if later_config.fresh or not os.path.exists(path):
        return
    with open(path) as f:
        fitted_to = json.load(f).get(step_field)
    now = later_config[step_field]
    if now and fitted_to is not None and fitted_to != now:
        logging.getLogger("genjax").info("%s was fitted to %s step %d, now at step %d: fitting it again", workdir, earlier, fitted_to, now)
        later_config.fresh = True


def write_json_atomically(path: str, value: dict, indent: int | None = 1) -> None:
    """Write JSON to `path` via a temporary file and a rename: readers never see half a file (numpy scalars
    are written as floats)."""
    with open(path + ".tmp", "w") as f:
        json.dump(value, f, indent=indent, default=float)
    os.replace(path + ".tmp", path)
