"""onnxruntime sessions: provider choice without onnxruntime's error spam.

Asking onnxruntime-gpu for CUDAExecutionProvider on a machine without a usable
GPU logs a screen of errors and then silently runs on the CPU.  So we decide
ourselves: probe the CUDA driver first, ask for CUDA only when it answers, and
read ``session.get_providers()`` to report what really runs.

A bundle is code: a graph of a few kilobytes can ask for gigabytes (a ConstantOfShape of a huge
shape).  So every session takes its CPU memory from one arena that this process registers with
onnxruntime's environment, capped at :func:`memory_cap` bytes ($AETOOL_MAX_MEMORY, else 4 GB or the
memory available, whichever is less): an allocation past the cap fails at once, as one error line
(:func:`memory_refusal`), instead of the machine swapping or the kernel killing the process.
"""

from __future__ import annotations

import contextlib
import ctypes
import math
import os
import re
import sys
import threading
from pathlib import Path

from .errors import AetoolError
from .memory import available_bytes, gigabytes

DEVICES = ("auto", "cpu", "cuda")
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
MEMORY_ENV = "AETOOL_MAX_MEMORY"
DEFAULT_MAX_MEMORY = 4 * 10**9  # a 12-megapixel photograph reconstructed in tiles needs well under this
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}
_REFUSED = re.compile(r"Available memory of (\d+) is smaller than requested bytes of (\d+)")


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
    if _capped_arena() is not None:  # the CPU arena shared by every session, capped (see memory_cap)
        opts.add_session_config_entry("session.use_env_allocators", "1")
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
    options = session_options(threads)  # outside the try: a bad $AETOOL_MAX_MEMORY is said as itself
    try:
        # no constant folding: it runs while the graph loads, on memory outside the capped arena (up to
        # 1 GB a node), and torch's exporter has folded the constants of aetool's own graphs already
        session = ort.InferenceSession(source, sess_options=options, providers=providers,
                                       disabled_optimizers=["ConstantFolding"])
    except Exception as e:  # onnxruntime raises its own exception types for bad graphs
        name = "model" if isinstance(model, bytes) else Path(model).name
        raise AetoolError(f"{name}: onnxruntime cannot load it ({str(e).splitlines()[0][:200]})") from None
    active = session.get_providers()[0]
    if device == "cuda" and active != CUDA_EP:
        raise AetoolError("--device cuda: onnxruntime could not start its CUDA provider (check the CUDA and cuDNN libraries)")
    return session, active


def provider_label(provider: str) -> str:
    return {CUDA_EP: "cuda", CPU_EP: "cpu"}.get(provider, provider)


def parse_memory(text: str) -> int | None:
    """A memory size as $AETOOL_MAX_MEMORY gives it: bytes, or a number with K, M, G or T (powers of
    1000, as aetool writes GB; Ki, Mi, Gi, Ti: of 1024; a B may follow); None for 0 or "none": no cap."""
    if text.strip().lower() == "none":
        return None
    found = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*(?:([KMGT])(I?))?B?\s*", text, re.IGNORECASE)
    if found:
        size = float(found[1]) * (1024 if found[3] else 1000) ** _POWERS[(found[2] or "").upper()]
    else:
        size = math.inf
    if size >= 1 << 62:
        raise AetoolError(f"{MEMORY_ENV}={text}: not a memory size (give bytes, or a number with K, M, G or T, "
                          "e.g. 8G; 0 or none: no cap)")
    return int(size) or None


def memory_cap() -> int | None:
    """The bytes of CPU memory onnxruntime may hold in this process (None: no cap): $AETOOL_MAX_MEMORY
    where set, else DEFAULT_MAX_MEMORY or the memory available now, whichever is less."""
    text = os.environ.get(MEMORY_ENV)
    if text is not None:
        return parse_memory(text)
    available = available_bytes()
    return DEFAULT_MAX_MEMORY if available is None else min(DEFAULT_MAX_MEMORY, available)


_arena_lock = threading.Lock()
_arena: list[int | None] = []  # the cap registered with onnxruntime's environment, once per process


def _capped_arena() -> int | None:
    """Register the capped CPU arena with onnxruntime's environment (once: the environment lives as
    long as the process, so a later change of $AETOOL_MAX_MEMORY is not seen); the cap, or None."""
    with _arena_lock:
        if not _arena:
            cap = memory_cap()
            if cap is not None:
                ort = _ort()
                info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
                ort.create_and_register_allocator(info, ort.OrtArenaCfg({"max_mem": cap}))
            _arena.append(cap)
        return _arena[0]


def memory_refusal(error: str) -> str | None:
    """Where onnxruntime's error is the capped arena refusing an allocation: one line saying so."""
    found = _REFUSED.search(error)
    if found is None:
        return None
    cap = _arena[0] if _arena and _arena[0] is not None else 0
    return (f"it asked for {gigabytes(int(found.group(2)))} more with {gigabytes(int(found.group(1)))} left of the "
            f"{gigabytes(cap)} onnxruntime may use (set {MEMORY_ENV} to allow more, e.g. {MEMORY_ENV}=8G)")
