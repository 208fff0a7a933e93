"""Opening a file a policy names, without blocking on it: a policy is data, and a path it names
(``routing.estimator``, a recorded model's ``dataset:``, a SQLite ledger) may be a FIFO, a
device, a socket or a directory. Opening a FIFO for reading blocks until a writer comes (every
request, and ``explain()``, would hang); reading ``/dev/zero`` never ends.

:func:`read_regular` opens with ``O_NONBLOCK``, checks the open file is a regular file
(``fstat``, so no swap between the check and the read) and reads at most ``max_bytes``;
:func:`check_regular` checks a path another library will open (SQLite). Both raise
:class:`NotRegularFileError`, an :class:`OSError`, so the callers' handling of unreadable
files applies.

Example:
    >>> read_regular("/dev/zero", max_bytes=10)
    Traceback (most recent call last):
    NotRegularFileError: [Errno 22] not a regular file (character device): '/dev/zero'
"""

from __future__ import annotations

import errno
import os
import stat

#: The most a file named by a policy may hold before it is refused (1 GiB).
MAX_FILE_BYTES = 1 << 30


class NotRegularFileError(OSError):
    """The path is a FIFO, device, socket or directory, or larger than allowed."""


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for test, name in ((stat.S_ISFIFO, "FIFO"), (stat.S_ISCHR, "character device"), (stat.S_ISBLK, "block device"),
                       (stat.S_ISSOCK, "socket"), (stat.S_ISDIR, "directory")):
        if test(mode):
            return name
    return "special file"


def read_regular(path: str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES) -> bytes:
    """The bytes of the regular file at ``path``; :class:`NotRegularFileError` for anything else
    or a file above ``max_bytes``; the usual :class:`OSError` when it cannot be opened."""
    where = os.fspath(path)
    check_regular(where)  # a socket cannot even be opened: say what it is
    fd = os.open(where, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        kind = _kind(info.st_mode)
        if kind is not None:
            raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind})", where)
        if info.st_size > max_bytes:
            raise NotRegularFileError(errno.EFBIG, f"larger than {max_bytes} bytes", where)
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=True) as handle:
            fd = -1
            data = handle.read(max_bytes + 1)
    finally:
        if fd >= 0:
            os.close(fd)
    if len(data) > max_bytes:
        raise NotRegularFileError(errno.EFBIG, f"larger than {max_bytes} bytes", where)
    return data


def check_regular(path: str | os.PathLike[str]) -> None:
    """Raise :class:`NotRegularFileError` when ``path`` exists and is not a regular file (it is
    followed through symlinks; a missing path is fine: the caller may create it)."""
    where = os.fspath(path)
    try:
        info = os.stat(where)
    except FileNotFoundError:
        return
    kind = _kind(info.st_mode)
    if kind is not None:
        raise NotRegularFileError(errno.EINVAL, f"not a regular file ({kind})", where)
