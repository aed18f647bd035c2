"""XLA:CPU settings genjax trains faster with, added to XLA_FLAGS when genjax is imported.

XLA reads XLA_FLAGS once, when JAX creates its first backend (the first computation, not `import jax`), so
importing genjax before computing anything is enough; in a process that has already computed, they have no
effect. Each one was measured side by side in `benchmarks/throughput.py` (the README's Performance
section has the figures and the commands):

- `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`: JAX 0.10 hands every convolution to
  YNNPACK by default, which runs the small convolutions of these models on about one core; XLA's own
  (Eigen) convolutions use both and made the conv VAE's and DCGAN's train steps faster (the README's table).

The study (and benchmarks/trials.py) also asks for one XLA:CPU device per core (`add_host_devices`, not
at import: an experiment's data-parallel mesh would split its batch over them): a group of vectorized trials
spreads its trial axis over them, each core training its own trials with no collective between them, while a
single trial keeps both cores on one device (the README's vectorized-trials section has the figures).

A flag the user already sets in XLA_FLAGS wins over genjax's value. GENJAX_XLA_FLAGS=off adds none.
"""

import os

VARIABLE = "GENJAX_XLA_FLAGS"
CPU_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}
HOST_DEVICES = "xla_force_host_platform_device_count"


def with_cpu_flags(xla_flags: str, flags: dict = CPU_FLAGS) -> str:
    """xla_flags with each of `flags` appended that it does not set already."""
    present = {word.lstrip("-").split("=")[0] for word in xla_flags.split()}
    added = [f"--{name}={value}" for name, value in flags.items() if name not in present]
    return " ".join([xla_flags.strip(), *added]).strip()


def _enabled() -> bool:
    return os.environ.get(VARIABLE, "").strip().lower() not in ("0", "off", "false", "no")


def add_cpu_flags() -> None:
    """Put CPU_FLAGS into the environment's XLA_FLAGS, unless GENJAX_XLA_FLAGS is off."""
    if _enabled():
        os.environ["XLA_FLAGS"] = with_cpu_flags(os.environ.get("XLA_FLAGS", ""))


def usable_cores() -> int:
    """The cores this process may run on (its affinity, which a container or `taskset` narrows)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def add_host_devices(count: int = 0) -> None:
    """Ask for `count` XLA:CPU devices (0: one per usable core) unless XLA_FLAGS sets a count or GENJAX_XLA_FLAGS
    is off. Only the CPU backend has host devices, so on an accelerator this changes nothing; in a process that
    has computed already it has no effect (XLA has read its flags)."""
    if _enabled():
        os.environ["XLA_FLAGS"] = with_cpu_flags(os.environ.get("XLA_FLAGS", ""), {HOST_DEVICES: count or usable_cores()})
