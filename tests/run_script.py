"""Run a Python file with the repository importable: `python -m tests.run_script FILE ARGS...`."""

import runpy
import sys

if __name__ == "__main__":
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
