"""Run any experiment by name: `python -m experiments NAME [--workdir DIR] [--config.FIELD=VALUE ...]`.

`python -m experiments` alone lists the experiments. Each is also runnable as `python -m experiments.NAME`;
every experiment module has `get_config()` and `main(argv=None) -> exit code`.
"""

import importlib
import pkgutil
import sys

import experiments
from genjax.errors import EXIT_BAD_INPUT

DRIVERS = ("compare", "study", "pacgan_table")  # commands that run the experiments, not experiments themselves


def names() -> list[str]:
    """Every experiment module in this package."""
    found = pkgutil.iter_modules(experiments.__path__)
    return sorted(m.name for m in found if not m.name.startswith("_") and m.name not in DRIVERS)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip() + "\n\nexperiments: " + ", ".join(names()))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in names() and name not in DRIVERS:  # the drivers run by name too, as the README says
        print(f"error: unknown experiment '{name}'; choose one of: {', '.join(names() + list(DRIVERS))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return importlib.import_module(f"experiments.{name}").main(rest)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
