"""Memory guard: work that would not fit is chunked or refused *before* it starts.

A forward pass on a huge batch or a huge image fails late and badly: a CUDA out-of-memory error
in the middle of a widget handler, or, on the CPU, the kernel killed by the operating system.
The sizes of every layer's output are known in advance (``Inspector.shapes``, traced on the
``meta`` device, so free), so the guard estimates the bytes a pass needs and compares them with
what the device has free now: the free device memory on CUDA, the available RAM on the CPU.

Example:
    >>> need = forward_bytes([torch.Size([1, 64, 14, 14])], batch=10)
    >>> need == 10 * 64 * 14 * 14 * 4
    True
    >>> check_fits(need, torch.device("cpu"), "a test")  # raises NotEnoughMemoryError if not
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

__all__ = [
    "HEADROOM",
    "NotEnoughMemoryError",
    "available_bytes",
    "budget_bytes",
    "check_fits",
    "chunk_size",
    "forward_bytes",
    "human_bytes",
    "release_unused_memory",
]

# Share of the free memory a single pass may plan to use: the rest is left for the allocator's
# rounding, temporaries of individual ops and whatever else the process does meanwhile.
HEADROOM = 0.5
FLOAT_BYTES = 4  # the engine computes in float32


class NotEnoughMemoryError(MemoryError, ValueError):
    """Raised before work starts when it would need more memory than the device has free.

    A ``ValueError`` too, so the widgets show its message in their status line like any
    other input that cannot be used.
    """


def human_bytes(count: float) -> str:
    """``1536`` -> ``'1.5 KiB'``: sizes in messages people read."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def _available_ram() -> int:
    """Available RAM in bytes (``MemAvailable`` on Linux; free pages elsewhere)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 2**63 - 1  # unknown: do not refuse work on a platform we cannot measure


def available_bytes(device: torch.device) -> int:
    """Bytes free now on ``device``: free CUDA memory, or the available RAM for the CPU.

    On CUDA the memory PyTorch's caching allocator holds but does not use counts as free.
    """
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        reserved = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(free + reserved)
    if device.type == "meta":
        return 2**63 - 1
    return _available_ram()


def budget_bytes(device: torch.device) -> int:
    """What one pass may plan to use on ``device``: :data:`HEADROOM` of :func:`available_bytes`."""
    return int(available_bytes(device) * HEADROOM)


def forward_bytes(
    shapes: Sequence[torch.Size],
    batch: int = 1,
    keep: Sequence[int] = (),
    input_numel: int = 0,
    live: Sequence[Sequence[int]] | None = None,
) -> int:
    """Bytes a plain forward pass of ``batch`` images needs at its peak.

    Args:
        shapes: every step's output shape for one image (``Inspector.shapes``).
        batch: images per pass.
        keep: indices of steps whose outputs are held until the end of the pass.
        input_numel: elements of one input image (it is alive while the first step runs).
        live: for a graph, per step the steps (-1: the input) whose outputs are alive while it
            runs (``Graph.live_sets``); without it, a chain is assumed.

    The peak is the largest set of tensors alive at once plus everything kept.
    """
    sizes = [input_numel] + [_numel(s) for s in shapes]
    if live is None:
        pair = max(a + b for a, b in zip(sizes, sizes[1:], strict=False)) if len(sizes) > 1 else 0
    else:
        pair = max((sum(sizes[i + 1] for i in alive) for alive in live), default=0)
    kept = sum(sizes[i + 1] for i in set(keep))
    return (pair + kept) * batch * FLOAT_BYTES


def _numel(shape) -> int:
    """Elements of a shape, or of every shape of a tuple output."""
    if isinstance(shape, list):
        return sum(_numel(s) for s in shape)
    return int(torch.Size(shape).numel()) if shape is not None else 0


def check_fits(need: int, device: torch.device, what: str, advice: str = "") -> None:
    """Raises :class:`NotEnoughMemoryError` when ``need`` bytes exceed the budget on ``device``.

    ``what`` names the work (``"an image of shape (1, 9000, 9000)"``), ``advice`` what to do.
    """
    budget = budget_bytes(device)
    if need > budget:
        raise NotEnoughMemoryError(
            f"{what} needs about {human_bytes(need)} but only {human_bytes(budget)} of "
            f"{device} memory can be used now (half of what is free); nothing was run"
            + (f". {advice}" if advice else "")
        )


def chunk_size(per_item: int, fixed: int, count: int, device: torch.device) -> int:
    """How many of ``count`` items fit in one pass: ``fixed + n * per_item`` within budget.

    Returns ``count`` when everything fits and at least 1 when ``fixed + per_item`` fits;
    returns 0 when not even one item fits (the caller refuses).
    """
    budget = budget_bytes(device) - fixed
    if per_item <= 0:
        return count
    return max(0, min(count, budget // per_item))


def _libc():
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None


def release_unused_memory() -> bool:
    """Gives the pages that freed tensors left inside the C heap back to the operating system.

    A forward pass frees its temporary activations, but glibc keeps the freed pages mapped
    between the blocks still in use, so a kernel that browses many images grows by a few
    hundred MB it no longer uses (measured on AlexNet: about 100 MB after 50 maps). The widgets
    call this after each redraw, at human pace; the engine's own loops do not, since fresh
    pages cost page faults on the next pass. Returns False where there is no glibc (macOS,
    Windows, musl): there it does nothing.

    Example:
        >>> release_unused_memory() in (True, False)
        True
    """
    global _LIBC
    if _LIBC is None:
        _LIBC = _libc() or False
    if _LIBC is False:
        return False
    _LIBC.malloc_trim(0)
    return True


_LIBC = None
