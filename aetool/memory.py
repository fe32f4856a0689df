"""How much memory this machine can give a command: what bounded work is checked against.

Some work states its own bound before it starts (PCA's arrays, a mixture's covariances); where that
bound is larger than the memory the machine has free, the work cannot finish, and refusing it in
one line at once beats a MemoryError (or the kernel's OOM killer) minutes later.
"""

from __future__ import annotations

import os
import resource


def available_bytes() -> int | None:
    """The memory a new allocation can count on: the kernel's MemAvailable (free plus what it can
    reclaim), capped by this process's address-space limit where one is set; None where unknown."""
    available = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        available = soft if available is None else min(available, soft)
    return available


def gigabytes(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def fits(needed: int) -> tuple[bool, int | None]:
    """Whether ``needed`` bytes fit in what is available (True where that is unknown), and what is."""
    available = available_bytes()
    return available is None or needed <= available, available
