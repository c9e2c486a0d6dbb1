"""Settings of a training process that make it faster without changing its maths."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's own upper limit for this setting on 64-bit
TRIM_THRESHOLD = 256 << 20

_tuned = False


def tune_allocator() -> bool:
    """Keep torch's per-update temporaries in the heap instead of mapping them afresh each time.

    A batch-32 update allocates and frees several 1.6-6.4 MB blocks (the float batch, conv1's
    output, fc1's weight gradient). Under glibc's default dynamic thresholds the top of the heap
    is returned to the OS after every update and the next one page-faults it back: measured
    566 to 3,178 minor faults per update on the 2-core CPU machine, against 9 to 25 with these
    settings. Memory is not lost, only kept: a process holds at most ``TRIM_THRESHOLD`` of free
    heap. Blocks of 32 MB and more (the replay's arrays) are still mapped on their own.

    Applies once per process; a no-op (returning False) where the C library is not glibc.
    """
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    ok = mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1 and ok
    _tuned = ok
    return ok


def compiled(fn: Callable[P, R], what: str, backend: str | Callable[..., object] = "inductor"
             ) -> Callable[P, R]:  # fmt: skip
    """``fn`` under ``torch.compile``: same maths up to float rounding, compiled at its first
    call (seconds to a minute on a CPU; again after a resume, as the process is new).

    Where compiling fails (no C++ compiler for inductor, an op it cannot lower), a one-line
    warning names ``what`` and ``fn`` runs as it is from then on: a plain fallback, never a
    crash. Only the compiler's failure is caught; an error of ``fn`` itself still raises.
    """
    from torch._dynamo.exc import BackendCompilerFailed

    current: Callable[P, R] = torch.compile(fn, backend=backend)

    @functools.wraps(fn)
    def call(*args: P.args, **kwargs: P.kwargs) -> R:
        nonlocal current
        try:
            return current(*args, **kwargs)
        except BackendCompilerFailed as error:
            text = str(error).strip()
            reason = text.splitlines()[0] if text else type(error).__name__
            warnings.warn(
                f"torch.compile of {what} failed ({reason}); running it uncompiled",
                RuntimeWarning,
                stacklevel=2,
            )
            current = fn
            return fn(*args, **kwargs)

    return call
