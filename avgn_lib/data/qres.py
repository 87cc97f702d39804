"""Reader for Qt binary resource files (``.rcc``, magic ``qres``), as shipped by GCompris.

Layout (all integers big-endian):

* header: ``b"qres"``, version (u32), tree offset, data offset, names offset (u32 each) and,
  from version 3 on, a u32 of overall flags;
* tree: fixed-size nodes, 14 bytes in v1 and 22 bytes in v2/v3 (a trailing u64 modification
  time). Node 0 is the root directory. A node is ``name_offset:u32, flags:u16`` followed by
  ``child_count:u32, first_child:u32`` for a directory or
  ``country:u16, language:u16, data_offset:u32`` for a file;
* names: ``length:u16, hash:u32`` then ``length`` UTF-16-BE code units;
* data: ``size:u32`` then the payload. Flag 1 marks a zlib payload that starts with a 4-byte
  uncompressed length (Qt's ``qCompress`` format); flag 4 marks a zstd frame.

Entries are returned with their payloads decompressed, byte-for-byte as the upstream files.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard

MAGIC = b"qres"
FLAG_ZLIB = 0x01
FLAG_DIRECTORY = 0x02
FLAG_ZSTD = 0x04
_NODE_SIZE = {1: 14, 2: 22, 3: 22}
# Guards against cycles in corrupt trees; GCompris files are a few levels deep.
_MAX_DEPTH = 64


@dataclass(frozen=True)
class QresEntry:
    """One file inside a resource bundle: its ``/``-joined path and decompressed bytes."""

    path: str
    data: bytes
    flags: int


class _Reader:
    def __init__(self, blob: bytes, source: str) -> None:
        self.blob = blob
        self.source = source
        if len(blob) < 20 or blob[:4] != MAGIC:
            self.fail("not a Qt resource file (missing 'qres' magic or header shorter than 20 bytes)")
        self.version, self.tree_off, self.data_off, self.names_off = struct.unpack_from(">IIII", blob, 4)
        if self.version not in _NODE_SIZE:
            self.fail(f"unsupported rcc format version {self.version} (expected 1, 2 or 3)")
        self.node_size = _NODE_SIZE[self.version]
        for name, off in (("tree", self.tree_off), ("data", self.data_off), ("names", self.names_off)):
            if off >= len(blob):
                self.fail(f"{name} offset {off} lies beyond the end of the file ({len(blob)} bytes)")

    def fail(self, problem: str) -> None:
        raise ValueError(f"{self.source}: {problem}")

    def unpack(self, fmt: str, offset: int) -> tuple:
        if offset < 0 or offset + struct.calcsize(fmt) > len(self.blob):
            self.fail(f"truncated: reading {fmt!r} at byte {offset} overruns the file ({len(self.blob)} bytes)")
        return struct.unpack_from(fmt, self.blob, offset)

    def name(self, name_offset: int) -> str:
        pos = self.names_off + name_offset
        (length,) = self.unpack(">H", pos)
        start = pos + 6  # skip length and the u32 hash
        end = start + 2 * length
        if end > len(self.blob):
            self.fail(f"truncated name at byte {pos}")
        try:
            return self.blob[start:end].decode("utf-16-be")
        except UnicodeDecodeError as err:
            self.fail(f"name at byte {pos} is not valid UTF-16-BE ({err})")
        raise AssertionError("unreachable")

    def payload(self, data_offset: int, flags: int, path: str) -> bytes:
        pos = self.data_off + data_offset
        (size,) = self.unpack(">I", pos)
        if pos + 4 + size > len(self.blob):
            self.fail(f"entry {path!r}: data of {size} bytes at byte {pos} overruns the file")
        raw = self.blob[pos + 4 : pos + 4 + size]
        if flags & FLAG_ZLIB:
            if size < 4:
                self.fail(f"entry {path!r}: zlib payload shorter than its 4-byte length prefix")
            (expected,) = struct.unpack_from(">I", raw, 0)
            try:
                out = zlib.decompress(raw[4:])
            except zlib.error as err:
                self.fail(f"entry {path!r}: corrupt zlib data ({err})")
            if len(out) != expected:
                self.fail(f"entry {path!r}: zlib data inflates to {len(out)} bytes, header says {expected}")
            return out
        if flags & FLAG_ZSTD:
            try:
                # max_output_size covers frames written without a content size.
                return zstandard.ZstdDecompressor().decompress(raw, max_output_size=1 << 30)
            except zstandard.ZstdError as err:
                self.fail(f"entry {path!r}: corrupt zstd data ({err})")
        return raw

    def walk(self, node: int, prefix: str, depth: int, out: list[QresEntry]) -> None:
        if depth > _MAX_DEPTH:
            self.fail(f"directory tree deeper than {_MAX_DEPTH} levels (cycle?) at {prefix!r}")
        base = self.tree_off + node * self.node_size
        name_offset, flags = self.unpack(">IH", base)
        name = "" if node == 0 else self.name(name_offset)
        path = f"{prefix}/{name}" if prefix else name
        if flags & FLAG_DIRECTORY:
            count, first = self.unpack(">II", base + 6)
            for child in range(first, first + count):
                if child == node:
                    self.fail(f"directory {path!r} lists itself as a child")
                self.walk(child, path, depth + 1, out)
        else:
            _country, _language, data_offset = self.unpack(">HHI", base + 6)
            out.append(QresEntry(path=path, data=self.payload(data_offset, flags, path), flags=flags))


def read_qres_bytes(blob: bytes, source: str = "<bytes>") -> list[QresEntry]:
    """Parse an in-memory rcc file; ``source`` names it in error messages.

    Returns every file entry (paths without a leading slash), in tree order.
    Raises ValueError on any malformed structure.
    """
    reader = _Reader(blob, source)
    entries: list[QresEntry] = []
    reader.walk(0, "", 0, entries)
    return entries


def read_qres(path: str | Path) -> dict[str, bytes]:
    """Read an rcc file from disk into ``{entry path: decompressed bytes}``.

    Raises FileNotFoundError if missing, ValueError (naming the file) if malformed or if an
    entry path occurs twice.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: Qt resource file not found")
    result: dict[str, bytes] = {}
    for entry in read_qres_bytes(path.read_bytes(), str(path)):
        if entry.path in result:
            raise ValueError(f"{path}: entry {entry.path!r} occurs twice")
        result[entry.path] = entry.data
    return result
