"""Where metrics go: `metrics.jsonl` (one JSON object per line) and TensorBoard events under `tb/`.

Every line of metrics.jsonl has `step` (number of completed training steps) and `split` ('train' or
'test'), then the metric values. A resumed run first drops the lines logged after its checkpoint, so the
file reads as one uninterrupted run; the TensorBoard writer purges those steps likewise.
"""

import json
import math
import os

from tensorboardX import SummaryWriter

METRICS_FILE = "metrics.jsonl"


def read_metrics(workdir: str) -> list[dict]:
    """All records of a run's metrics.jsonl, in order."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _json_value(value: float):
    """JSON has no NaN or infinity: write those as strings so the file stays standard JSON."""
    value = float(value)
    return value if math.isfinite(value) else str(value)


class MetricWriter:
    """Appends metric records to metrics.jsonl and TensorBoard, starting after `resume_step`."""

    def __init__(self, workdir: str, resume_step: int):
        self.path = os.path.join(workdir, METRICS_FILE)
        kept = [r for r in read_metrics(workdir) if r["step"] <= resume_step]
        with open(self.path, "w") as f:
            f.writelines(json.dumps(record) + "\n" for record in kept)
        self.file = open(self.path, "a")
        self.tensorboard = SummaryWriter(os.path.join(workdir, "tb"), purge_step=resume_step + 1)

    def write(self, step: int, split: str, metrics: dict) -> None:
        record = {"step": int(step), "split": split, **{k: _json_value(v) for k, v in metrics.items()}}
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        for name, value in metrics.items():
            self.tensorboard.add_scalar(f"{split}/{name}", float(value), int(step))

    def close(self) -> None:
        self.file.close()
        self.tensorboard.close()
