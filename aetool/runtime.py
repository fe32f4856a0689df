"""onnxruntime sessions: provider choice without onnxruntime's error spam.

Asking onnxruntime-gpu for CUDAExecutionProvider on a machine without a usable
GPU logs a screen of errors and then silently runs on the CPU.  So we decide
ourselves: probe the CUDA driver first, ask for CUDA only when it answers, and
read ``session.get_providers()`` to report what really runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
from pathlib import Path

from .errors import AetoolError

DEVICES = ("auto", "cpu", "cuda")
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"


@contextlib.contextmanager
def _stderr_to_devnull():
    """Hide what native code writes on file descriptor 2 (Python's own errors are raised, not printed)."""
    try:
        saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    except OSError:  # no stderr to redirect
        yield
        return
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def _ort():
    # onnxruntime logs at import, before any setting can reach it (a coloured telemetry warning where
    # HOME is read-only): its own lines stay off the user's terminal; aetool reports problems itself
    with contextlib.nullcontext() if "onnxruntime" in sys.modules else _stderr_to_devnull():
        import onnxruntime

    onnxruntime.set_default_logger_severity(4)  # fatal only: a failing graph is raised and reported by aetool as one line
    return onnxruntime


def cuda_driver_gpus() -> int:
    """Number of GPUs the CUDA driver reports (0 if no driver): cheap and silent."""
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    for name in names:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        count = ctypes.c_int(0)
        if lib.cuInit(0) != 0 or lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return count.value
    return 0


def cuda_unusable_reason() -> str | None:
    """Why CUDA can't be used here, or None when it can be tried."""
    if CUDA_EP not in _ort().get_available_providers():
        return "this onnxruntime build has no CUDA provider (install onnxruntime-gpu)"
    if cuda_driver_gpus() == 0:
        return "no CUDA GPU or driver found"
    return None


def usable_cores() -> int:
    """The cores this process may run on: its affinity mask (taskset, a container's cpuset), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def session_options(threads: int | None = None):
    ort = _ort()
    opts = ort.SessionOptions()
    opts.log_severity_level = 4
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # the CPU memory arena stays on: it pools memory but caps nothing, and no onnxruntime option bounds
    # what a hostile graph may allocate (docs/bundle-format.md: bundles are code, from trusted sources)
    # encoder and decoder each own a thread pool; spinning pools fight over the cores in a round trip
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    return opts


def make_session(model: str | os.PathLike | bytes, device: str = "auto", threads: int | None = None):
    """An InferenceSession on ``device`` (auto | cpu | cuda) and the provider that really runs it."""
    if device not in DEVICES:
        raise AetoolError(f"unknown device {device!r} (use auto, cpu or cuda)")
    ort = _ort()
    providers = [CPU_EP]
    if device in ("auto", "cuda"):
        reason = cuda_unusable_reason()
        if reason is None:
            # no exhaustive conv search: it stalls the first call for seconds on a model this small
            providers = [(CUDA_EP, {"cudnn_conv_algo_search": "HEURISTIC"}), CPU_EP]
        elif device == "cuda":
            raise AetoolError(f"--device cuda: {reason} (use --device cpu or auto)")
    source = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(source, sess_options=session_options(threads), providers=providers)
    except Exception as e:  # onnxruntime raises its own exception types for bad graphs
        name = "model" if isinstance(model, bytes) else Path(model).name
        raise AetoolError(f"{name}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
    active = session.get_providers()[0]
    if device == "cuda" and active != CUDA_EP:
        raise AetoolError("--device cuda: onnxruntime could not start its CUDA provider (check the CUDA and cuDNN libraries)")
    return session, active


def provider_label(provider: str) -> str:
    return {CUDA_EP: "cuda", CPU_EP: "cpu"}.get(provider, provider)
