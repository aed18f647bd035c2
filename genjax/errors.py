"""The one exception type for bad input from a user.

Anything a person can fix by changing a command line, a config value, a path or a file raises `UserError`
with one sentence that names the problem and the fix. The command-line entry points print that sentence
alone (no traceback) and exit non-zero; library callers get an ordinary `ValueError` subclass.
"""


class UserError(ValueError):
    """Bad input: an unknown name, an invalid value, an unusable path or checkpoint."""
