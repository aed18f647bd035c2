"""XLA:CPU settings genjax trains faster with, added to XLA_FLAGS when genjax is imported.

XLA reads XLA_FLAGS once, when JAX creates its first backend (the first computation, not `import jax`), so
importing genjax before computing anything is enough; in a process that has already computed, they have no
effect. Each one was measured side by side in `benchmarks/throughput.py` (the README's Performance
section has the figures and the commands):

- `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`: JAX 0.10 hands every convolution to
  YNNPACK by default, which runs the small convolutions of these models on about one core; XLA's own
  (Eigen) convolutions use both and made the conv VAE's and DCGAN's train steps faster (the README's table).

A flag the user already sets in XLA_FLAGS wins over genjax's value. GENJAX_XLA_FLAGS=off adds none.
"""

import os

VARIABLE = "GENJAX_XLA_FLAGS"
CPU_FLAGS = {"xla_cpu_experimental_ynn_fusion_type": "-individual_convolution"}


def with_cpu_flags(xla_flags: str) -> str:
    """xla_flags with each of CPU_FLAGS appended that it does not set already."""
    present = {word.lstrip("-").split("=")[0] for word in xla_flags.split()}
    added = [f"--{name}={value}" for name, value in CPU_FLAGS.items() if name not in present]
    return " ".join([xla_flags.strip(), *added]).strip()


def add_cpu_flags() -> None:
    """Put CPU_FLAGS into the environment's XLA_FLAGS, unless GENJAX_XLA_FLAGS is off."""
    if os.environ.get(VARIABLE, "").strip().lower() in ("0", "off", "false", "no"):
        return
    os.environ["XLA_FLAGS"] = with_cpu_flags(os.environ.get("XLA_FLAGS", ""))
