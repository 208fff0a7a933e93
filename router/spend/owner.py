"""Who holds a reservation: a host, a process id and that process's start time.

A SQLite ledger lives on one host, so it can tell a hold whose process is still running (a
slow call, or a settle waiting for the ledger to accept writes) from one whose process died:
only the second kind expires after the TTL. The start time (Linux ``/proc/<pid>/stat``) keeps a
recycled process id from passing for the dead owner; where ``/proc`` is missing, the process id
alone decides.

Example:
    >>> owner = current_owner()          # "myhost/4242/981223"
    >>> owner_alive(owner)
    True
    >>> owner_alive("")                  # no owner recorded: only the TTL decides
    False
"""

from __future__ import annotations

import os
import socket
from pathlib import Path


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot; "" where /proc is unavailable;
    None when no such process exists."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return ""  # it exists, under another user
        return ""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ..." — comm may hold spaces or ')': split after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19]  # field 22 of proc(5), starttime


_cached: tuple[int, str] | None = None


def current_owner() -> str:
    """``host/pid/start`` of this process (recomputed after a fork)."""
    global _cached
    pid = os.getpid()
    if _cached is None or _cached[0] != pid:
        _cached = (pid, f"{socket.gethostname()}/{pid}/{_start_time(pid) or ''}")
    return _cached[1]


def owner_alive(owner: str) -> bool:
    """Whether the process that recorded ``owner`` is still running on this host. An empty or
    foreign owner is not known to be alive (its hold expires by TTL alone)."""
    host, _, rest = owner.partition("/")
    pid_text, _, start = rest.partition("/")
    if not owner or host != socket.gethostname() or not pid_text.isdigit():
        return False
    found = _start_time(int(pid_text))
    return found is not None and (found == start or found == "" or start == "")
