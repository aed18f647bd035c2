"""Stop cleanly on SIGINT (Ctrl-C) and SIGTERM (preemption): finish the current chunk, checkpoint, exit.

The first signal only sets a flag that the training loop reads between chunks, so a checkpoint is never
written from inside a signal handler or halfway through a step. A second SIGINT interrupts at once.
"""

import logging
import signal
import threading

HANDLED = (signal.SIGINT, signal.SIGTERM)


class Interrupted(Exception):
    """Training stopped by a signal after saving a checkpoint at `step`."""

    def __init__(self, signum: int, step: int, directory: str):
        self.signum, self.step = signum, step
        self.exit_code = 128 + signum  # the shell's convention: 130 for SIGINT, 143 for SIGTERM
        name = signal.Signals(signum).name
        super().__init__(f"stopped by {name} at step {step}; checkpoint saved in {directory}; run the same command to resume")


class StopRequests:
    """Context manager that records the first SIGINT/SIGTERM instead of dying (main thread only)."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def _handle(self, signum, frame):
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum
        logging.getLogger("genjax").warning(
            "%s received: saving a checkpoint after the current chunk of steps", signal.Signals(signum).name
        )

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in HANDLED}
        return self

    def __exit__(self, *exc):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        return False
