"""This process's resident memory from /proc/self/status, with a peak that can be reset (Linux).

`VmHWM` is the peak RSS since the process started or since `5` was written to /proc/self/clear_refs;
resetting it after the weights are loaded lets one process measure the peak of each pipeline call. glibc
keeps freed heap mapped, so `trim_heap` hands it back first, or the next peak would start from the last.
"""

from __future__ import annotations

from pathlib import Path

GIB = 1024**3


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def current_rss() -> int:
    """Bytes resident now."""
    return _status_kib("VmRSS") * 1024


def peak_rss() -> int:
    """Bytes resident at the peak since start or the last `reset_peak_rss`."""
    return _status_kib("VmHWM") * 1024


def trim_heap() -> None:
    """Return freed malloc memory to the OS (glibc's malloc_trim), so RSS is what is still in use."""
    from synthset.generation.host_memory import release_freed_memory

    release_freed_memory()


def reset_peak_rss() -> bool:
    """Set the peak to the current RSS; False where the kernel does not allow it."""
    trim_heap()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
