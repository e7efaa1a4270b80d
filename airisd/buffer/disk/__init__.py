"""The disk buffer: segments.py (files, cursor, recovery; synchronous) and buffer.py (DiskBuffer,
the async side the output runner uses)."""

from airisd.buffer.disk.buffer import DiskBuffer
from airisd.buffer.disk.segments import BufferLocked, Finding, SegmentLog

__all__ = ["BufferLocked", "DiskBuffer", "Finding", "SegmentLog"]
