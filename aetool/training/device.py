"""Torch device, CPU kind, precision and memory-format choice, kept apart so train and bench agree.

Why per CPU kind: the same step runs several times faster or slower depending on what the CPU's
vector units can do natively.  With AVX-512 BF16 (or AMX) bf16 dot products are native and oneDNN's
bf16 convolutions want channels_last; on an AVX2-only CPU bf16 is emulated (slower than fp32), and
channels_last costs reorders that plain NCHW fp32 does not (benchmarks/train_speed.py measures both).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from ..errors import AetoolError


def torch_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AetoolError("--device cuda: PyTorch sees no CUDA GPU here (use --device cpu or auto)")
    if name not in ("cpu", "cuda"):
        raise AetoolError(f"unknown device {name!r} (use auto, cpu or cuda)")
    return torch.device(name)


def cpu_has_bf16() -> bool:
    """bfloat16 autocast only pays off where the CPU has native BF16 dot products."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


# CPU kinds, fastest first, as metrics.json and ``aetool info`` name them
AMX, AVX512_BF16, AVX512, AVX2, OTHER = "AMX", "AVX-512 BF16", "AVX-512", "AVX2", "other"
NATIVE_BF16 = (AMX, AVX512_BF16)
# oneDNN's ISA cap (ONEDNN_MAX_CPU_ISA) below AVX-512: its kernels then run as on an AVX2-only CPU
_AVX2_CAPS = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2")


def cpu_flags() -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where /proc/cpuinfo is not there)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_kind(flags: set[str] | None = None, capability: str | None = None, env: dict[str, str] | None = None) -> str:
    """What kind of CPU the training step runs on: AMX, AVX-512 BF16, AVX-512, AVX2 or other.

    From the flags, capped by what PyTorch's own kernels use (``torch.backends.cpu.get_cpu_capability``,
    which ``ATEN_CPU_CAPABILITY`` lowers) and by oneDNN's ISA cap (``ONEDNN_MAX_CPU_ISA``), so a run
    told to behave like an AVX2 machine is planned like one.  Arguments default to this machine's.
    """
    flags = cpu_flags() if flags is None else flags
    capability = torch.backends.cpu.get_cpu_capability() if capability is None else capability
    env = os.environ if env is None else env
    cap = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("DNNL_MAX_CPU_ISA") or "").upper()
    if capability.upper().startswith("AVX512") and "avx512f" in flags and cap not in _AVX2_CAPS:
        if "amx_bf16" in flags and cap in ("", "ALL", "AVX512_CORE_AMX", "AVX10_1_512_AMX"):
            return AMX
        return AVX512_BF16 if "avx512_bf16" in flags else AVX512
    if capability.upper().startswith("AVX") or (cap in _AVX2_CAPS and "avx2" in flags):
        return AVX2 if "avx2" in flags or capability.upper() == "AVX2" else OTHER
    return OTHER


def channels_last_for(device: torch.device, precision: str, kind: str | None = None) -> bool:
    """Whether the step runs in channels_last: where oneDNN's bf16 kernels are native (bf16 on a
    CPU with AVX-512 BF16 or AMX) and on a GPU in bf16 (tensor cores); elsewhere plain NCHW, whose
    fp32 kernels need no reorders.  The same rule for every family."""
    if precision != "bf16":
        return False
    return device.type == "cuda" or (kind or cpu_kind()) in NATIVE_BF16


def resolve_precision(precision: str, device: torch.device, graphed: bool = False) -> str:
    """``auto`` picks what measured faster on that device and path.

    On a GPU: bf16 autocast (with channels_last) for a step replayed as a CUDA graph, exact fp32 for
    eager steps, whose time goes into launching kernels, which bf16's casts only add to (as measured on
    an H200; ``benchmarks/gpu_train.py`` checks the pick on the GPU it runs on).  On a CPU: bf16 where
    it has native BF16 dot products.
    """
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if graphed and torch.cuda.is_bf16_supported() else "fp32"
        return "bf16" if cpu_has_bf16() and cpu_kind() in NATIVE_BF16 else "fp32"
    if precision not in ("fp32", "bf16"):
        raise AetoolError(f"unknown precision {precision!r} (use auto, fp32 or bf16)")
    return precision
