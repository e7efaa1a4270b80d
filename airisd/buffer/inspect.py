"""Offline views of disk buffer directories, for ``airisd buffer inspect|repair``.

``inspect`` only reads (safe while the daemon runs: it then says the directory is in use, and a
record being written at that moment may show as a torn tail). ``repair`` does what the daemon's
start-up recovery does — truncate a torn tail, copy a damaged segment to corrupt/ and pad its bad
records out — and refuses
while a daemon holds the directory's lock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from airisd.buffer.disk.segments import (
    CORRUPT_DIR,
    CURSOR_FILE,
    Cursor,
    acquire_lock,
    is_locked,
    list_segments,
    recover,
    segment_name,
)


def buffer_dirs(outputs: dict[str, list[dict[str, Any]]], data_dir: Path, only: str = "") -> list[Path]:
    """Every disk buffer directory a config's outputs use, plus any found under <data_dir>/buffers
    (an output removed from the config may have left records behind)."""
    found: set[Path] = set()
    for name, instances in outputs.items():
        for i, raw in enumerate(instances):
            buffer = raw.get("buffer") or {}
            label = raw.get("alias") or (name if i == 0 else f"{name}.{i}")
            if only and only not in (name, label):
                continue
            if buffer.get("type") == "disk" and buffer.get("directory"):
                base = Path(buffer["directory"])
                found |= {p for p in base.iterdir() if p.is_dir()} if base.is_dir() else set()
            elif buffer.get("type") == "disk":
                found |= set((data_dir / "buffers").glob(f"{label}-*"))
    base = data_dir / "buffers"
    if base.is_dir():
        for p in base.iterdir():
            if p.is_dir() and (not only or p.name.rsplit("-", 1)[0] == only):
                found.add(p)
    return sorted(p for p in found if p.is_dir())


def inspect_dir(directory: Path) -> dict[str, Any]:
    cursor = Cursor(directory / CURSOR_FILE, readonly=True) if (directory / CURSOR_FILE).exists() else None
    position = cursor.position if cursor else (0, 0)
    entries, findings = recover(directory, position, fix=False)
    now = time.time_ns()
    segments = [{"name": segment_name(n), "bytes": (directory / segment_name(n)).stat().st_size}
                for n in list_segments(directory)]
    corrupt_dir = directory / CORRUPT_DIR
    quarantined = sorted(os.listdir(corrupt_dir)) if corrupt_dir.is_dir() else []
    return {
        "directory": str(directory),
        "in_use": is_locked(directory),
        "cursor": {"segment": position[0], "offset": position[1]},
        "segments": segments,
        "events": sum(e.count for e in entries),
        "bytes": sum(e.size for e in entries),
        "oldest_age_seconds": round((now - min(e.appended_ns for e in entries)) / 1e9, 3) if entries else 0.0,
        "findings": [f.as_dict() for f in findings],
        "quarantined": quarantined,
    }


def repair_dir(directory: Path) -> dict[str, Any]:
    """Recover the directory as the daemon would at start; raise BufferLocked while one runs."""
    lock = acquire_lock(directory)
    try:
        cursor = Cursor(directory / CURSOR_FILE, readonly=True)
        entries, findings = recover(directory, cursor.position, fix=True)
    finally:
        os.close(lock)
    return {"directory": str(directory), "events": sum(e.count for e in entries),
            "findings": [f.as_dict() for f in findings]}


__all__ = ["buffer_dirs", "inspect_dir", "repair_dir"]
