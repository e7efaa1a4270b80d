"""Per-output buffers: where accepted data waits until the output has delivered it.

    config.py    the ``buffer = {...}`` option (BufferConfig)
    base.py      what the output runner asks of any buffer (Offer, Taken, Ack, the Buffer protocol)
    codec.py     a batch <-> one framed, checksummed record (length + CRC32 + msgpack)
    memory.py    MemoryBuffer: today's in-process queue
    disk/        DiskBuffer: append-only segment files, group-committed fsync, a cursor file
    inspect.py   read-only verification and repair of a buffer directory (`airisd buffer ...`)
"""

from airisd.buffer.config import BufferConfig

__all__ = ["BufferConfig"]
