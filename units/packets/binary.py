"""Avro's binary encoding, the parts the packet code reads and writes by hand.

Avro writes ``int`` and ``long`` values as zig-zag varints and ``bytes`` and ``string``
values as a long length followed by the bytes (Avro specification, "Binary Encoding").
The container reader (:mod:`units.packets.containers`), the decoder's fast path
(:mod:`units.packets.decode`) and the splicer (:mod:`units.packets.splice`) use these to
walk encoded bytes without a schema.
"""

from __future__ import annotations

__all__ = ["encode_long", "read_bytes", "read_long"]


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Return the zig-zag varint long at ``pos`` and the position after it.

    IndexError if the varint runs past the end of ``data``.
    """
    shift = value = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return (value >> 1) ^ -(value & 1), pos


def encode_long(value: int) -> bytes:
    """Return ``value`` as an Avro zig-zag varint long."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    """Return the length-prefixed bytes at ``pos`` and the position after them.

    IndexError if the length is negative or the bytes run past the end of ``data``.
    """
    size, pos = read_long(data, pos)
    if size < 0 or pos + size > len(data):
        raise IndexError("bytes run past the end")
    return data[pos : pos + size], pos + size
