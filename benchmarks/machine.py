"""The machine a benchmark ran on, named the same way in every results file."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says."""
    for line in _cpuinfo().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def cpu_name() -> str:
    """Model, cores, and the instruction sets that decide bf16 and int8 speed."""
    flags = _cpuinfo()
    extras = [f for f in ("avx512_bf16", "avx512_vnni", "amx_bf16") if f in flags]
    return f"{cpu_model()}, {os.cpu_count()} cores" + (f" ({', '.join(extras)})" if extras else " (AVX2 only)")
