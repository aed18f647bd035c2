"""Orbax checkpoints of a run: `<workdir>/checkpoints/<step>/{state, meta}`.

One CheckpointManager per run directory. `state` is the family's state pytree (params, optimizer states,
batch statistics); `meta` is JSON naming the experiment, the model and the config that wrote it. Saves
are asynchronous (training continues while files are written); Orbax writes each step to a temporary
directory and renames it when complete, so a step that is listed is a finished one.

Restoring checks compatibility first: a checkpoint written by another experiment or for parameters of
other shapes is refused with a `UserError` that names the difference, never silently replaced by a fresh
start. A checkpoint that cannot be read (a truncated or corrupted file) is different: `restore_latest`
warns, moves it aside to `<workdir>/corrupt_checkpoints/<step>` and falls back to the previous step.
Temporary directories of saves that never finished (a kill -9 mid-write) are deleted when the manager
opens the directory.
"""

import logging
import os
import shutil

import jax
import orbax.checkpoint as ocp

from genjax.errors import UserError

log = logging.getLogger("genjax")

FRESH_HINT = "use another --workdir, or --config.fresh=True to delete it and start over"


def _path_shapes(tree) -> dict:
    """{'params/Dense_0/kernel': ((784, 400), 'float32'), ...} for the array leaves of `tree`."""
    shapes = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if hasattr(leaf, "shape"):
            name = "/".join(str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path)
            shapes[name] = (tuple(leaf.shape), str(leaf.dtype))
    return shapes


def describe_mismatch(stored, wanted) -> str | None:
    """The first difference between two pytrees of arrays (structure, shape or dtype), or None.

    Parameters are compared first: their names are the ones a user recognises.
    """
    stored_shapes, wanted_shapes = _path_shapes(stored), _path_shapes(wanted)
    for name in sorted(set(stored_shapes) | set(wanted_shapes), key=lambda n: ("params" not in n.split("/"), n)):
        if name not in stored_shapes:
            return f"'{name}' is missing from the checkpoint"
        if name not in wanted_shapes:
            return f"the checkpoint has '{name}', which this model does not"
        (stored_shape, stored_dtype), (shape, dtype) = stored_shapes[name], wanted_shapes[name]
        if stored_shape != shape or stored_dtype != dtype:
            return f"'{name}' is {stored_dtype}{list(stored_shape)} there and {dtype}{list(shape)} here"
    return None


class Checkpoints:
    """Save, list and restore the checkpoints of one run directory."""

    def __init__(self, directory: str, keep: int = 3):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True, cleanup_tmp_directories=True)
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        """Start saving `state` at `step` (returns once the arrays are copied off the device)."""
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        self.manager.save(step, args=args, force=True)

    def read_meta(self, step: int) -> dict:
        return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]

    def restore(self, step: int, like_state, expected_meta: dict):
        """The state saved at `step`, placed like `like_state`; refuses incompatible checkpoints."""
        return self._restore(step, like_state, expected_meta)[0]

    def _restore(self, step: int, like_state, expected_meta: dict) -> tuple:
        """(state, its meta) at `step`: the meta is read once, to check the checkpoint and for the caller."""
        where = f"checkpoint step {step} in {self.directory}"
        meta = self.read_meta(step)
        for field in ("experiment", "model"):
            if meta.get(field) != expected_meta.get(field):
                raise UserError(f"{where} was written by {field} '{meta.get(field)}', not '{expected_meta.get(field)}'; {FRESH_HINT}")
        stored = self.manager.item_metadata(step)["state"]
        stored_tree = getattr(stored, "tree", stored)
        mismatch = describe_mismatch(stored_tree, like_state)
        if mismatch:
            raise UserError(f"{where} does not fit this model: {mismatch}; {FRESH_HINT}")
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like_state)
        restored = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        return restored["state"], meta

    def restore_latest(self, like_state, expected_meta: dict):
        """(step, state, meta) of the newest readable checkpoint, or (0, None, {}) when there is none.

        Unreadable checkpoints are moved aside with a warning; incompatible ones raise UserError.
        """
        for step in sorted(self.manager.all_steps(), reverse=True):
            try:
                return step, *self._restore(step, like_state, expected_meta)
            except UserError:
                raise
            except Exception as error:  # Orbax/TensorStore raise many types for damaged files
                aside = self._move_aside(step)
                reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
                log.warning("checkpoint step %d is unreadable (%s); moved it to %s and fell back to the previous one", step, reason, aside)
        return 0, None, {}

    def _move_aside(self, step: int) -> str:
        aside = os.path.join(os.path.dirname(self.directory), "corrupt_checkpoints", str(step))
        if os.path.exists(aside):
            shutil.rmtree(aside)
        os.makedirs(os.path.dirname(aside), exist_ok=True)
        shutil.move(os.path.join(self.directory, str(step)), aside)
        self.manager.reload()
        return aside

    def wait(self) -> None:
        """Block until every started save is on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.close()


def restore_earlier_stage(workdir: str, step: int, family, example: dict, model: str, what: str, train_first: str, experiment: str) -> dict:
    """The state of an earlier stage's run in `workdir` at `step` (its latest when 0), restored into the shapes
    of family.init(example): what a later stage (a prior, a second VAE) is fitted to. `what` names the model
    and `train_first` the remedy in the one-line errors when there is no such checkpoint."""
    directory = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(directory):
        raise UserError(f"no {what} checkpoints in {directory}; {train_first} (python -m experiments.{experiment} does both)")
    checkpoints = Checkpoints(directory)
    try:
        found = step or checkpoints.latest_step()
        if found is None or found not in checkpoints.manager.all_steps():
            raise UserError(f"no {what} checkpoint at step {step or 'latest'} in {checkpoints.directory}; {train_first}")
        meta = checkpoints.read_meta(found)
        like = jax.eval_shape(family.init, jax.random.PRNGKey(0), example)
        return checkpoints.restore(found, like, {"experiment": meta.get("experiment"), "model": model})
    finally:
        checkpoints.close()
