"""Reader for OpenTTD sound catalogues (``opensfx.cat``).

Layout: a table of little-endian ``(offset:u32, size:u32)`` pairs; the number of entries is
``(first offset & 0x7fffffff) / 8`` (the top bit is a flag OpenTTD sets on newer catalogues).
Each entry starts at ``offset`` with a 1-byte length ``n`` and ``n`` bytes of description
(NUL-terminated text naming title, author and licence), followed by a RIFF/WAVE file of exactly
``size`` bytes (``size`` counts the WAV only, as OpenTTD's loader reads it), which we keep
byte-for-byte.
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

_OFFSET_MASK = 0x7FFFFFFF
# Licence tags that OpenTTD's opensfx descriptions carry, most specific first.
# Only the text after "License:" counts; "Original is Public Domain" describes the source, not this file.
_LICENSE_PATTERNS = (
    ("CC-BY-SA-3.0", re.compile(r"Attribution-ShareAlike 3\.0|CC-BY-SA-3", re.I)),
    ("CC-BY-3.0", re.compile(r"Attribution 3\.0|CC-BY-3", re.I)),
    ("CC0-1.0", re.compile(r"Creative Commons Zero|CC0", re.I)),
)


@dataclass(frozen=True)
class SfxEntry:
    """One sound: position in the catalogue, its description text and the RIFF WAV bytes."""

    index: int
    description: str
    wav: bytes

    @property
    def license(self) -> str:
        """SPDX id parsed from the description, or ``""`` when none is stated."""
        return license_from_description(self.description)


def license_from_description(description: str) -> str:
    """Map the licence mention in an opensfx description to an SPDX id (``""`` if none)."""
    _, sep, stated = description.partition("License:")
    if not sep:
        return ""
    for spdx, pattern in _LICENSE_PATTERNS:
        if pattern.search(stated):
            return spdx
    return ""


def read_cat_bytes(blob: bytes, source: str = "<bytes>") -> list[SfxEntry]:
    """Parse an in-memory .cat file; ``source`` names it in error messages.

    Raises ValueError when the table, a description or a RIFF header is malformed.
    """
    if len(blob) < 8:
        raise ValueError(f"{source}: too short for a sound catalogue ({len(blob)} bytes)")
    first_offset = struct.unpack_from("<I", blob, 0)[0] & _OFFSET_MASK
    if first_offset == 0 or first_offset % 8 or first_offset > len(blob):
        raise ValueError(
            f"{source}: first offset {first_offset} is not a positive multiple of 8 inside the file"
        )
    count = first_offset // 8
    entries = []
    for index in range(count):
        offset, size = struct.unpack_from("<II", blob, index * 8)
        offset &= _OFFSET_MASK
        if offset < first_offset or offset >= len(blob):
            raise ValueError(f"{source}: entry {index} offset {offset} lies outside the data area")
        name_len = blob[offset]
        wav_start = offset + 1 + name_len
        if wav_start + size > len(blob) or size < 12:
            raise ValueError(
                f"{source}: entry {index} WAV of {size} bytes at byte {wav_start} overruns the file "
                f"({len(blob)} bytes) or is shorter than a RIFF header"
            )
        description = blob[offset + 1 : wav_start].split(b"\0", 1)[0].decode("latin-1").strip()
        wav = blob[wav_start : wav_start + size]
        if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
            raise ValueError(f"{source}: entry {index} ({description!r}) does not hold RIFF/WAVE data")
        riff_size = struct.unpack_from("<I", wav, 4)[0]
        if riff_size + 8 > len(wav):
            raise ValueError(
                f"{source}: entry {index} ({description!r}) RIFF claims {riff_size + 8} bytes, "
                f"only {len(wav)} present"
            )
        entries.append(SfxEntry(index=index, description=description, wav=wav))
    return entries


def read_cat(path: str | Path) -> list[SfxEntry]:
    """Read an OpenTTD .cat file from disk. Raises FileNotFoundError / ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: sound catalogue not found")
    return read_cat_bytes(path.read_bytes(), str(path))
