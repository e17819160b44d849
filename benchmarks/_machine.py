"""Load and thread helpers shared by the benchmark scripts (not part of the course module).

On a shared 2-core machine the load changes every timing: the scripts print it, and with
``--threads auto`` use one intra-op thread when the machine is busy (load >= half the cores),
because OpenMP's spinning worker threads are many times slower than one thread when another
process holds the other core.
"""

from __future__ import annotations

import os


def load_report() -> str:
    """The 1/5/15-minute load average and the core count, for the printed figures."""
    a, b, c = os.getloadavg()
    return f"load average {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} cores"


def busy() -> bool:
    """True when the load is at least half the cores."""
    return os.getloadavg()[0] >= (os.cpu_count() or 1) / 2


def threads_for(arg: str) -> int:
    """``--threads`` value: an integer, or 'auto' (1 when busy, else all cores)."""
    if arg != "auto":
        return int(arg)
    return 1 if busy() else (os.cpu_count() or 1)
