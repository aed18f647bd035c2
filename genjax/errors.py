"""Errors a person can act on, and how the command line reports them.

Anything a person can fix by changing a command line, a config value, a path or a file raises `UserError`
with one sentence that names the problem and the fix. The command-line entry points print that sentence
alone (no traceback) and exit non-zero; library callers get an ordinary `ValueError` subclass.

Exit codes of every genjax command:
    0    finished
    2    bad input: unknown name, invalid value, unusable workdir, incompatible checkpoint, workdir in use
    3    training diverged (a NaN or infinite metric or parameter); the last good checkpoint is kept
    74   an I/O error while the run wrote its files (disk full, file too large, read-only, permission);
         every complete checkpoint is kept: free space and rerun the same command to resume
    130  stopped by SIGINT after saving a checkpoint (143 for SIGTERM); rerun to resume
"""

import errno
import os
import re

EXIT_BAD_INPUT = 2
EXIT_DIVERGED = 3
EXIT_IO = 74

# errno values that mean "the run could not write its files" rather than a bug
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO}


class UserError(ValueError):
    """Bad input: an unknown name, an invalid value, an unusable path or checkpoint."""


def disk_error_reason(error: BaseException) -> str | None:
    """The OS reason ("No space left on device", ...) if `error` or its causes is a failed write, else None.

    TensorStore (under Orbax) reports failed writes as ValueError text carrying `os_error_code='N'`, so the
    message is read as well as the exception type.
    """
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in DISK_ERRNOS:
            return os.strerror(error.errno)
        match = re.search(r"os_error_code='(\d+)'", str(error))
        if match and int(match.group(1)) in DISK_ERRNOS:
            return os.strerror(int(match.group(1)))
        error = error.__cause__ or error.__context__
    return None
