"""Raw-asset tooling: Qt rcc and OpenTTD cat readers, archive reading, manifest, class tables.

Everything is built in tmp_path; nothing here needs the network.
"""
from __future__ import annotations

import io
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
import zstandard

from avgn_lib.data import assets
from avgn_lib.data.assets_archives import read_members, read_members_cached
from avgn_lib.data.assets_sources import ITEMS, MODALITIES, PACKAGES, VOCABS, Item, Package
from avgn_lib.data.opensfx import license_from_description, read_cat, read_cat_bytes
from avgn_lib.data.qres import FLAG_ZLIB, FLAG_ZSTD, read_qres, read_qres_bytes


# ---------------------------------------------------------------- rcc builder
def make_rcc(version: int = 2, zlib_payload: bytes = b"inflated text " * 20,
             zstd_payload: bytes = b"zstd bytes " * 30, plain: bytes = b"plain",
             zlib_declared: int | None = None) -> bytes:
    """Root holds dir ``res`` and file ``top.txt``; ``res`` holds ``a.ogg`` (zlib) and ``b.svg`` (zstd)."""
    names, name_off = b"", {}
    for n in ("res", "top.txt", "a.ogg", "b.svg"):
        name_off[n] = len(names)
        units = n.encode("utf-16-be")
        names += struct.pack(">HI", len(units) // 2, 0) + units
    data, data_off = b"", {}
    stored = {
        "top.txt": plain,
        "a.ogg": struct.pack(">I", len(zlib_payload) if zlib_declared is None else zlib_declared)
        + zlib.compress(zlib_payload),
        "b.svg": zstandard.ZstdCompressor().compress(zstd_payload),
    }
    for n, blob in stored.items():
        data_off[n] = len(data)
        data += struct.pack(">I", len(blob)) + blob
    tail = struct.pack(">Q", 0) if version >= 2 else b""

    def directory(name_offset: int, count: int, first: int) -> bytes:
        return struct.pack(">IHII", name_offset, 0x02, count, first) + tail

    def file(name: str, flags: int) -> bytes:
        return struct.pack(">IHHHI", name_off[name], flags, 0, 0, data_off[name]) + tail

    tree = (directory(0, 2, 1) + directory(name_off["res"], 2, 3) + file("top.txt", 0)
            + file("a.ogg", FLAG_ZLIB) + file("b.svg", FLAG_ZSTD))
    header_len = 24 if version >= 3 else 20
    tree_off = header_len
    data_start = tree_off + len(tree)
    names_start = data_start + len(data)
    header = b"qres" + struct.pack(">IIII", version, tree_off, data_start, names_start)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree + data + names


@pytest.mark.parametrize("version", [1, 2, 3])
def test_qres_reads_names_bytes_and_both_compressions(tmp_path: Path, version: int) -> None:
    path = tmp_path / "bundle.rcc"
    path.write_bytes(make_rcc(version))
    entries = read_qres(path)
    assert sorted(entries) == ["res/a.ogg", "res/b.svg", "top.txt"]
    assert entries["top.txt"] == b"plain"
    assert entries["res/a.ogg"] == b"inflated text " * 20
    assert entries["res/b.svg"] == b"zstd bytes " * 30
    flags = {e.path: e.flags for e in read_qres_bytes(path.read_bytes())}
    assert flags == {"top.txt": 0, "res/a.ogg": FLAG_ZLIB, "res/b.svg": FLAG_ZSTD}


def test_qres_errors_name_the_file(tmp_path: Path) -> None:
    good = make_rcc(2)
    cases = {
        "magic.rcc": b"qrez" + good[4:],
        "version.rcc": good[:4] + struct.pack(">I", 9) + good[8:],
        "truncated.rcc": good[:60],
        "lenmismatch.rcc": make_rcc(2, zlib_declared=281),
        "offsets.rcc": good[:8] + struct.pack(">I", 10**6) + good[12:],
    }
    # Corrupt the zlib stream itself: flip bytes inside the a.ogg payload.
    blob = bytearray(good)
    start = blob.find(zlib.compress(b"inflated text " * 20))
    blob[start + 2 : start + 6] = b"\xff\xff\xff\xff"
    cases["zlib.rcc"] = bytes(blob)
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_qres(path)
    with pytest.raises(FileNotFoundError, match="absent.rcc"):
        read_qres(tmp_path / "absent.rcc")


# ---------------------------------------------------------------- cat builder
def make_wav(payload: bytes) -> bytes:
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(payload)) + payload
    return b"RIFF" + struct.pack("<I", len(body)) + body


def make_cat(entries: list[tuple[str, bytes]], high_bit: bool = True) -> bytes:
    table_len = 8 * len(entries)
    table, body = b"", b""
    for description, wav in entries:
        text = description.encode("latin-1") + b"\0"
        offset = table_len + len(body)
        table += struct.pack("<II", offset | (0x80000000 if high_bit and not table else 0), len(wav))
        body += bytes([len(text)]) + text + wav
    return table + body


def test_cat_splits_entries_and_licences(tmp_path: Path) -> None:
    wav_a, wav_b = make_wav(b"\x01\x00" * 50), make_wav(b"\x02\x00" * 7)
    path = tmp_path / "sounds.cat"
    path.write_bytes(make_cat([
        ('"Cow". Original by X. License: Creative Commons Zero 1.0.', wav_a),
        ('"Mill". License: Creative Commons Attribution 3.0 Unported. Original is Public Domain.', wav_b),
    ]))
    entries = read_cat(path)
    assert [e.index for e in entries] == [0, 1]
    assert entries[0].wav == wav_a and entries[1].wav == wav_b
    assert entries[0].description.startswith('"Cow"')
    assert [e.license for e in entries] == ["CC0-1.0", "CC-BY-3.0"]
    assert license_from_description("x. License: Creative Commons Attribution-ShareAlike 3.0 Unported.") == "CC-BY-SA-3.0"
    assert license_from_description("no licence given") == ""
    # The old format without the high bit reads the same.
    assert [e.wav for e in read_cat_bytes(make_cat([("a", wav_a)], high_bit=False))] == [wav_a]


def test_cat_errors_name_the_file(tmp_path: Path) -> None:
    good = make_cat([("ok", make_wav(b"\0\0" * 10))])
    not_riff = make_cat([("bad", b"JUNK" + make_wav(b"\0\0")[4:])])
    cases = {"short.cat": good[:5], "overrun.cat": good[:-4], "notriff.cat": not_riff,
             "badoffset.cat": struct.pack("<II", 5, 10) + good[8:]}
    for name, data in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=name):
            read_cat(path)
    with pytest.raises(FileNotFoundError, match="none.cat"):
        read_cat(tmp_path / "none.cat")


# ---------------------------------------------------------------- archives
def make_deb(path: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo("./" + name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo("./" + name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    out = b"!<arch>\n"
    for name, data in (("debian-binary", b"2.0\n"), ("control.tar.xz", b"x"), ("data.tar.xz", buf.getvalue())):
        out += f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode() + data
        out += b"\n" if len(data) % 2 else b""
    path.write_bytes(out)


def test_read_members_from_deb_wheel_and_tgz(tmp_path: Path) -> None:
    deb = tmp_path / "p.deb"
    make_deb(deb, {"usr/share/a.bin": b"A" * 3, "usr/share/b.bin": b"B"}, {"usr/share/l.bin": "a.bin"})
    assert read_members(deb, {"usr/share/a.bin"}) == {"usr/share/a.bin": b"AAA"}
    with pytest.raises(ValueError, match="link"):
        read_members(deb, {"usr/share/l.bin"})
    with pytest.raises(ValueError, match="not found"):
        read_members(deb, {"usr/share/zzz.bin"})
    whl = tmp_path / "p-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/data/x.png", b"png!")
    assert read_members(whl, {"pkg/data/x.png"}) == {"pkg/data/x.png": b"png!"}
    tgz = tmp_path / "p-1.0.0.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        info = tarfile.TarInfo("package/1f415.svg")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"<svg"))
    assert read_members(tgz, {"package/1f415.svg"}) == {"package/1f415.svg": b"<svg"}


def test_member_cache_is_used_and_rejects_tampering(tmp_path: Path) -> None:
    deb = tmp_path / "p.deb"
    make_deb(deb, {"usr/a": b"first"})
    cache = tmp_path / "cache"
    assert read_members_cached(deb, {"usr/a"}, cache) == {"usr/a": b"first"}
    deb.unlink()  # a valid cache must not need the archive any more
    assert read_members_cached(deb, {"usr/a"}, cache) == {"usr/a": b"first"}
    (cache / "files" / "usr/a").write_bytes(b"tampered")
    with pytest.raises(FileNotFoundError):  # cache rejected, archive re-read, and it is gone
        read_members_cached(deb, {"usr/a"}, cache)


def test_extract_package_uses_rcc_entries_cat_entries_and_licences(tmp_path: Path) -> None:
    wav = make_wav(b"\x05\x00" * 9)
    deb = tmp_path / "fake.deb"
    make_deb(deb, {"g/b.rcc": make_rcc(2), "o/s.cat": make_cat([("x. License: Creative Commons Zero 1.0.", wav)])})
    pkg = Package("fake", "apt", "fake-pkg", "1.0-1", "fake.deb", "0" * 64, "GPL-3.0-or-later")
    items = [Item("fake/a.ogg", "fake", "g/b.rcc", "everyday", "dog", "audio", entry="res/a.ogg"),
             Item("fake/s.wav", "fake", "o/s.cat", "everyday", "cow", "audio", entry="0"),
             Item("fake/b.svg", "fake", "g/b.rcc", "everyday", "dog", "image", "CC-BY-SA-4.0", entry="res/b.svg")]
    out = {ex.item.path: ex for ex in assets.extract_package(pkg, deb, items)}
    assert out["fake/a.ogg"].data == b"inflated text " * 20
    assert out["fake/a.ogg"].license == "GPL-3.0-or-later"
    assert out["fake/a.ogg"].source_path == "g/b.rcc:res/a.ogg"
    assert out["fake/s.wav"].data == wav and out["fake/s.wav"].license == "CC0-1.0"
    assert out["fake/s.wav"].source_path == "o/s.cat#0"
    assert out["fake/b.svg"].license == "CC-BY-SA-4.0"
    bad = [Item("fake/x", "fake", "g/b.rcc", "everyday", "dog", "audio", entry="res/missing.ogg")]
    with pytest.raises(ValueError, match="missing.ogg"):
        assets.extract_package(pkg, deb, bad)


# ---------------------------------------------------------------- manifest and raw folder
def _row(item_id: str, sha: str = "ab") -> dict[str, str]:
    return {"item_id": item_id, "vocab": "everyday", "class": "dog", "modality": "audio",
            "source_package": "apt:x", "source_version": "1", "source_path": "p", "license": "CC0-1.0",
            "style": "x", "path": item_id, "sha256": sha}


def test_manifest_is_sorted_deterministic_and_checked(tmp_path: Path) -> None:
    rows = [_row("b/2.wav"), _row("a/1.wav"), _row("c/3.wav")]
    first, second = tmp_path / "m1.csv", tmp_path / "m2.csv"
    assets.write_manifest(rows, first)
    assets.write_manifest(list(reversed(rows)), second)
    assert first.read_bytes() == second.read_bytes()
    lines = first.read_text().splitlines()
    assert lines[0] == ",".join(assets.MANIFEST_COLUMNS)
    assert [line.split(",")[0] for line in lines[1:]] == ["a/1.wav", "b/2.wav", "c/3.wav"]
    assert b"\r" not in first.read_bytes()
    assert assets.read_manifest(first) == sorted(rows, key=lambda r: r["item_id"])
    with pytest.raises(ValueError, match="duplicate"):
        assets.write_manifest(rows + [_row("a/1.wav")], tmp_path / "dup.csv")
    (tmp_path / "bad.csv").write_text("item_id,path\nx,y\n")
    with pytest.raises(ValueError, match="bad.csv"):
        assets.read_manifest(tmp_path / "bad.csv")


def test_write_if_changed_and_remove_stale(tmp_path: Path) -> None:
    target = tmp_path / "raw" / "x" / "a.bin"
    assert assets.write_if_changed(target, b"1") is True
    assert assets.write_if_changed(target, b"1") is False
    assert assets.write_if_changed(target, b"2") is True and target.read_bytes() == b"2"
    (tmp_path / "raw" / "old" / "deep").mkdir(parents=True)
    (tmp_path / "raw" / "old" / "deep" / "z.bin").write_bytes(b"z")
    removed = assets.remove_stale(tmp_path / "raw", {"x/a.bin"})
    assert removed == ["old/deep/z.bin"]
    assert not (tmp_path / "raw" / "old").exists() and target.exists()


# ---------------------------------------------------------------- class tables
def test_class_vocabularies_cover_the_required_classes() -> None:
    music = {"violin", "cello", "trumpet", "acoustic_guitar", "flute", "saxophone", "piano", "drum",
             "accordion", "banjo"}
    vgg = {"dog", "cat", "cow", "sheep", "pig", "horse", "duck", "chicken", "owl", "frog", "lion", "bird",
           "car", "train", "airplane"}
    # Candidate classes; the build drops those that miss the coverage minimums (see build.py).
    assert len(assets.INSTRUMENT_CLASSES) >= 11 and music <= set(assets.INSTRUMENT_CLASSES)
    assert len(assets.EVERYDAY_CLASSES) >= 20 and vgg <= set(assets.EVERYDAY_CLASSES)
    assert set(assets.GM_PATCHES) == set(assets.INSTRUMENT_CLASSES)
    assert assets.GM_PATCHES["violin"].program == 40 and assets.GM_PATCHES["drum"].percussion


def test_item_table_gives_every_class_depictions_and_recordings() -> None:
    paths = [it.path for it in ITEMS]
    assert len(paths) == len(set(paths))
    for vocab, classes in assets.CLASSES.items():
        for cls in classes:
            images = {it.path for it in ITEMS if it.vocab == vocab and it.cls == cls and it.modality == "image"}
            audio = {it.path for it in ITEMS if it.vocab == vocab and it.cls == cls and it.modality == "audio"}
            assert len(images) >= 2, (vocab, cls, images)
            assert len(audio) >= 1, (vocab, cls)
    for it in ITEMS:
        assert it.package in PACKAGES
        assert it.vocab in VOCABS and it.modality in MODALITIES
        if it.vocab in assets.CLASSES:
            assert it.cls in assets.CLASSES[it.vocab], it
        else:
            assert it.cls == ""
    assert sum(it.modality == "soundfont" for it in ITEMS) == 4  # FluidR3, MuseScore, TimGM6mb, Csound
    assert sum(it.modality == "background" for it in ITEMS) >= 40


def test_every_item_has_a_style_and_near_duplicate_sets_share_one() -> None:
    from avgn_lib.data.assets_sources import style_of

    styles = {it.package: style_of(it) for it in ITEMS if it.package.startswith(("noto", "emojione", "fluent"))}
    assert styles["noto"] == styles["noto-v1"] == "noto"
    assert styles["emojione"] == styles["emojione-v1"] == "emojione"
    assert styles["fluent-emoji"] == styles["fluent-emoji-flat"] == "fluent"
    assert all(style_of(it) for it in ITEMS)
    photos = {style_of(it) for it in ITEMS if it.path.startswith("gcompris/explore_farm_animals/")
              and it.path.endswith(".webp")}
    assert photos == {"gcompris_photo"}
    # The old per-file twemoji/openmoji packages are replaced by their Iconify sets (same artwork):
    # keeping both would count one drawing twice.
    assert not {"@twemoji/svg", "openmoji"} & {p.name for p in PACKAGES.values()}


def test_excluded_sources_never_appear() -> None:
    for pkg in PACKAGES.values():
        assert "tuxpaint" not in pkg.name
    for it in ITEMS:
        assert not it.entry.endswith("drum_kit.ogg"), "GCompris drum_kit.ogg is CC-Sampling-Plus"
        assert "tuxpaint" not in it.member


# ---------------------------------------------------------------- Iconify sets
def test_iconify_wrapper_resolves_aliases_and_flips() -> None:
    from avgn_lib.data.assets_iconify import iconify_svg, resolve_icon

    data = {"width": 32, "height": 32,
            "icons": {"dot": {"body": '<circle cx="8" cy="16" r="6" fill="#f00"/>'},
                      "wide": {"body": '<rect width="64" height="32"/>', "width": 64}},
            "aliases": {"dot-left": {"parent": "dot", "hFlip": True}, "again": {"parent": "dot-left"},
                        "loop": {"parent": "loop"}}}
    assert resolve_icon(data, "again")["hFlip"] is True and resolve_icon(data, "wide")["width"] == 64
    svg = iconify_svg(data, "again").decode()
    assert svg.startswith('<svg xmlns="http://www.w3.org/2000/svg"') and 'viewBox="0 0 32 32"' in svg
    assert 'transform="translate(32 0) scale(-1 1)"' in svg
    assert iconify_svg(data, "dot") == iconify_svg(data, "dot")  # byte-deterministic
    for bad in ("missing", "loop"):
        with pytest.raises(ValueError, match="set.json"):
            iconify_svg(data, bad, "set.json")


def test_iconify_svg_rasterizes_to_visible_rgba(tmp_path: Path) -> None:
    """A wrapped icon (a real one from data/raw when fetched, else a made-up body) rasterizes to
    a non-empty RGBA, and a flipped alias mirrors it."""
    import numpy as np

    from avgn_lib.data.assets_iconify import iconify_svg
    from avgn_lib.data.image import load_rgba

    body = '<path fill="#3a7" d="M2 2h12v28H2z"/>'
    data = {"width": 32, "height": 32, "icons": {"bar": {"body": body}},
            "aliases": {"bar-r": {"parent": "bar", "hFlip": True}}}
    (tmp_path / "bar.svg").write_bytes(iconify_svg(data, "bar"))
    (tmp_path / "bar-r.svg").write_bytes(iconify_svg(data, "bar-r"))
    left, right = load_rgba(tmp_path / "bar.svg", 64), load_rgba(tmp_path / "bar-r.svg", 64)
    assert left.shape == (64, 64, 4) and left[..., 3].any()
    np.testing.assert_array_equal(left[:, ::-1, 3], right[..., 3])
    real = sorted((Path(__file__).parents[1] / "data" / "raw" / "iconify" / "noto").glob("*.svg"))
    if real:
        rgba = load_rgba(real[0], 96)
        assert rgba.dtype == np.uint8 and rgba.shape[2] == 4 and max(rgba.shape[:2]) == 96
        assert (rgba[..., 3] > 127).mean() > 0.05, real[0]


def test_extract_package_reads_iconify_set_and_its_licence(tmp_path: Path) -> None:
    import json

    tgz = tmp_path / "iconify-json-fake-1.0.0.tgz"
    icons = {"width": 16, "height": 16, "icons": {"owl": {"body": '<path d="M0 0h16v16z"/>'}}}
    info = {"license": {"title": "MIT", "spdx": "MIT"}}
    with tarfile.open(tgz, "w:gz") as tar:
        for name, obj in (("package/icons.json", icons), ("package/info.json", info)):
            blob = json.dumps(obj).encode()
            ti = tarfile.TarInfo(name)
            ti.size = len(blob)
            tar.addfile(ti, io.BytesIO(blob))
    pkg = Package("fake", "npm", "@iconify-json/fake", "1.0.0", tgz.name, "0" * 64, "MIT", "fakestyle")
    item = Item("iconify/fake/owl.svg", "fake", "package/icons.json", "everyday", "owl", "image", entry="owl")
    (ex,) = assets.extract_package(pkg, tgz, [item])
    assert ex.license == "MIT" and ex.source_path == "package/icons.json#owl"
    assert ex.data.startswith(b"<svg") and b'viewBox="0 0 16 16"' in ex.data
    wrong = Package("fake", "npm", "@iconify-json/fake", "1.0.0", tgz.name, "0" * 64, "CC0-1.0")
    with pytest.raises(ValueError, match="info.json"):
        assets.extract_package(wrong, tgz, [item])


def test_iconify_table_names_only_known_sets_and_classes() -> None:
    from avgn_lib.data.assets_iconify import ICONIFY_ICONS, ICONIFY_PACKAGES

    keys = {p[0] for p in ICONIFY_PACKAGES}
    assert len(keys) == 10
    for cls, per_set in ICONIFY_ICONS.items():
        assert cls in assets.INSTRUMENT_CLASSES or cls in assets.EVERYDAY_CLASSES, cls
        assert set(per_set) <= keys, cls
    for key, _, _, _, _, lic, _ in ICONIFY_PACKAGES:
        assert lic in {"Apache-2.0", "MIT", "CC-BY-4.0", "CC-BY-SA-4.0"}, key


def test_fetched_manifest_rows_carry_licence_style_and_sha256() -> None:
    """On the fetched data/raw (skipped before `./run.sh data`): every row has a licence, a
    style and the sha256 of its file; Iconify rows name the icon and their npm package."""
    import hashlib

    raw = Path(__file__).parents[1] / "data" / "raw"
    if not (raw / "manifest.csv").is_file():
        pytest.skip("data/raw not fetched")
    rows = assets.read_manifest(raw / "manifest.csv")
    assert {r["item_id"] for r in rows} == {it.path for it in ITEMS}
    for r in rows:
        assert r["license"] and r["style"] and len(r["sha256"]) == 64, r
        assert hashlib.sha256((raw / r["path"]).read_bytes()).hexdigest() == r["sha256"], r["path"]
        if r["item_id"].startswith("iconify/"):
            assert r["source_package"].startswith("npm:@iconify-json/") and r["source_path"].startswith(
                "package/icons.json#")
        if r["item_id"].startswith("ovos/"):
            assert r["license"] == "CC0-1.0" and r["item_id"].endswith(".mp3")


def test_soundfile_decodes_the_ovos_mp3s() -> None:
    import soundfile

    raw = Path(__file__).parents[1] / "data" / "raw" / "ovos"
    files = sorted(raw.glob("*.mp3"))
    if not files:
        pytest.skip("data/raw not fetched")
    assert len(files) == 10
    for f in files:
        data, rate = soundfile.read(str(f), dtype="float32")
        assert rate > 0 and data.shape[0] > rate // 2 and abs(data).max() > 0.01, f
