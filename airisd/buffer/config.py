"""The ``buffer`` option every forwarding output has: where accepted data waits for delivery.

    [[outputs.file]]
      buffer = { type = "disk", max_size_bytes = 1073741824, when_full = "block" }

``memory`` (the default) is a queue in the process: fast, lost on a crash, bounded by the output's
``max_queue_items`` (and by ``max_size_bytes`` when set). ``disk`` is an append-only, checksummed
segment log under ``directory``: a request is acknowledged only once its data is fsynced there, and
it survives ``kill -9``. ``when_full = "block"`` refuses new data with 503 + Retry-After;
``drop_newest`` accepts it, drops it and counts it (``output_dropped_total``).
"""

from __future__ import annotations

from pathlib import Path

import msgspec

BUFFER_TYPES = ("memory", "disk")
WHEN_FULL = ("block", "drop_newest")
DISK_DEFAULT_MAX_SIZE_BYTES = 1 << 30  # 1 GiB, when a disk buffer leaves max_size_bytes at 0
MIN_SEGMENT_BYTES = 4096


class BufferConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ## "memory" or "disk".
    type: str = "memory"
    ## Most bytes waiting for delivery (0: memory buffers are bounded by max_queue_items only, disk
    ## buffers by DISK_DEFAULT_MAX_SIZE_BYTES). Memory buffers measure a batch by its encoded size.
    max_size_bytes: int = 0
    ## "block": answer 503 + Retry-After while full; "drop_newest": accept, drop and count.
    when_full: str = "block"
    ## Disk buffers: where segments go, as <directory>/<signal>; empty: <data_dir>/buffers/<alias or name>-<signal>.
    directory: str = ""
    ## Disk buffers: a segment file is closed and a new one started beyond this size.
    max_segment_bytes: int = 16 << 20

    def validate(self) -> None:
        if self.type not in BUFFER_TYPES:
            raise ValueError(f"buffer.type must be 'memory' or 'disk', got {self.type!r}")
        if self.when_full not in WHEN_FULL:
            raise ValueError(f"buffer.when_full must be 'block' or 'drop_newest', got {self.when_full!r}")
        if self.max_size_bytes < 0:
            raise ValueError(f"buffer.max_size_bytes must be >= 0, got {self.max_size_bytes!r}")
        if self.max_segment_bytes < MIN_SEGMENT_BYTES:
            raise ValueError(f"buffer.max_segment_bytes must be at least {MIN_SEGMENT_BYTES}, "
                             f"got {self.max_segment_bytes!r}")
        if self.directory and self.type != "disk":
            raise ValueError(f"buffer.directory {self.directory!r} is set but buffer.type is {self.type!r} "
                             "(only disk buffers use a directory)")

    @property
    def limit_bytes(self) -> int:
        """The effective byte bound; 0 means none (a memory buffer without max_size_bytes)."""
        if self.type == "disk" and self.max_size_bytes == 0:
            return DISK_DEFAULT_MAX_SIZE_BYTES
        return self.max_size_bytes

    def path_for(self, data_dir: Path, output_label: str, signal: str) -> Path:
        """The directory of one output's disk buffer for one signal."""
        if self.directory:  # one output may carry several signals: one log each
            return Path(self.directory) / signal
        return Path(data_dir) / "buffers" / f"{output_label}-{signal}"
