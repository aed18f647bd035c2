"""The generic engine: the Family protocol and `fit`, which compiles, shards, loops, checkpoints and logs."""

from genjax.train.chunk_log import TrainingDiverged
from genjax.train.family import Family, count_params
from genjax.train.loop import BudgetPoints, FitResult, fit
from genjax.train.signals import Interrupted

__all__ = ["BudgetPoints", "Family", "FitResult", "Interrupted", "TrainingDiverged", "count_params", "fit"]
