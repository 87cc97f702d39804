"""Iconify emoji sets (npm ``@iconify-json/*``): pinned packages, the explicit icon table, and the
wrapper that turns one icon of a set's ``icons.json`` into a standalone, byte-deterministic SVG.

Each package is one ``icons.json`` of the form ``{"icons": {name: {"body", "width"?, "height"?,
"left"?, "top"?, "hFlip"?, "vFlip"?, "rotate"?}}, "aliases": {name: {"parent", ...}}, "width",
"height", ...}`` plus an ``info.json`` whose ``license.spdx`` is the licence recorded in the
manifest (a mismatch with the pinned licence is an error). The icon table below names every icon
we use, per class and set, exactly as the set spells it: no fuzzy matching at run time. It was
derived once from the Unicode code points of the classes (via the sets' own ``chars.json`` where
they have one) and checked by hand for the sets that name icons differently (fxemoji writes
``dogside``, streamline ``bird-1``); a reviewer can audit every class assignment here.

Sets that redraw the same design count as ONE style when splitting (``ICONIFY_STYLE``): noto and
noto-v1, emojione and emojione-v1, fluent-emoji and fluent-emoji-flat (the flat set is a flattened
rendering of the 3D one).
"""
from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["ICONIFY_ICONS", "ICONIFY_PACKAGES", "ICONIFY_STYLE", "iconify_svg", "license_of", "read_icon_set",
           "resolve_icon"]

# (package key, npm name, version, tarball name, sha256, licence SPDX from info.json, style)
ICONIFY_PACKAGES: tuple[tuple[str, str, str, str, str, str, str], ...] = (
    ("noto", "@iconify-json/noto", "1.2.9", "iconify-json-noto-1.2.9.tgz",
     "3e918d88fc945c0bb3d468dbace6f88caef67f01c9f0e7bcae0915a042e8f1ad", "Apache-2.0", "noto"),
    ("noto-v1", "@iconify-json/noto-v1", "1.2.5", "iconify-json-noto-v1-1.2.5.tgz",
     "2bf62c26c2c2884aa99e90aec942cdaee17a5921f05690694f4978ad4b017c37", "Apache-2.0", "noto"),
    ("emojione", "@iconify-json/emojione", "1.2.3", "iconify-json-emojione-1.2.3.tgz",
     "26a14f44284407e8bcde91799388dca2bfd91dbcd55a97f425524a1c5b73610e", "CC-BY-4.0", "emojione"),
    ("emojione-v1", "@iconify-json/emojione-v1", "1.2.3", "iconify-json-emojione-v1-1.2.3.tgz",
     "6641d59d48a42823fdc2b84e7427e9f302944eb98d2c7d94d6e67c139e7b37b3", "CC-BY-SA-4.0", "emojione"),
    ("fluent-emoji", "@iconify-json/fluent-emoji", "1.2.7", "iconify-json-fluent-emoji-1.2.7.tgz",
     "8044210dbf11e016d4de85f15d01a243423bd832457e7e2491df1b751c0e272b", "MIT", "fluent"),
    ("fluent-emoji-flat", "@iconify-json/fluent-emoji-flat", "1.2.6", "iconify-json-fluent-emoji-flat-1.2.6.tgz",
     "7d064769dee690815f823bc5bcc511d957198caf9f5edd8dd9c1aa48a6aeb175", "MIT", "fluent"),
    ("twemoji", "@iconify-json/twemoji", "1.2.5", "iconify-json-twemoji-1.2.5.tgz",
     "19046dff7d8707ce96212ec86468b36ac5f8e60409629dd13f809265c6d0ebb7", "CC-BY-4.0", "twemoji"),
    ("openmoji", "@iconify-json/openmoji", "1.2.29", "iconify-json-openmoji-1.2.29.tgz",
     "03181e2c156cab35cf4a62f1f7886bd971d59212e75ac3f189d5a4cae3930fc5", "CC-BY-SA-4.0", "openmoji"),
    ("fxemoji", "@iconify-json/fxemoji", "1.2.2", "iconify-json-fxemoji-1.2.2.tgz",
     "f3e72b3c59d05e1db03b7e308d55c0d05bd7ba3f625a90da1b79313c12858eef", "Apache-2.0", "fxemoji"),
    ("streamline-emojis", "@iconify-json/streamline-emojis", "1.2.4", "iconify-json-streamline-emojis-1.2.4.tgz",
     "5dac87c876b322500989828c5823143e0100d78881627a2e4081a4b897cbfdbc", "CC-BY-4.0", "streamline"),
)
ICONIFY_STYLE: dict[str, str] = {p[0]: p[6] for p in ICONIFY_PACKAGES}

# class -> set -> space-separated icon names (as spelled in that set's icons.json).
ICONIFY_ICONS: dict[str, dict[str, str]] = {
    "accordion": {
        "noto": "accordion",
        "fluent-emoji": "accordion",
        "fluent-emoji-flat": "accordion",
        "twemoji": "accordion",
        "openmoji": "accordion",
    },
    "acoustic_guitar": {
        "noto": "guitar",
        "noto-v1": "guitar",
        "emojione": "guitar",
        "emojione-v1": "guitar",
        "fluent-emoji": "guitar",
        "fluent-emoji-flat": "guitar",
        "twemoji": "guitar",
        "openmoji": "guitar",
        "fxemoji": "guitar",
        "streamline-emojis": "guitar",
    },
    "banjo": {
        "noto": "banjo",
        "fluent-emoji": "banjo",
        "fluent-emoji-flat": "banjo",
        "twemoji": "banjo",
        "openmoji": "banjo",
    },
    "drum": {
        "noto": "drum long-drum",
        "noto-v1": "drum",
        "emojione": "drum",
        "fluent-emoji": "drum long-drum",
        "fluent-emoji-flat": "drum long-drum",
        "twemoji": "drum long-drum",
        "openmoji": "drum long-drum",
    },
    "flute": {
        "noto": "flute",
        "fluent-emoji": "flute",
        "fluent-emoji-flat": "flute",
        "twemoji": "flute",
        "openmoji": "flute",
    },
    "maracas": {
        "noto": "maracas",
        "fluent-emoji": "maracas",
        "fluent-emoji-flat": "maracas",
        "twemoji": "maracas",
        "openmoji": "maracas",
    },
    "piano": {
        "noto": "musical-keyboard",
        "noto-v1": "musical-keyboard",
        "emojione": "musical-keyboard",
        "emojione-v1": "musical-keyboard",
        "fluent-emoji": "musical-keyboard",
        "fluent-emoji-flat": "musical-keyboard",
        "twemoji": "musical-keyboard",
        "openmoji": "musical-keyboard",
        "fxemoji": "musicalkeyboard",
        "streamline-emojis": "musical-keyboard",
    },
    "saxophone": {
        "noto": "saxophone",
        "noto-v1": "saxophone",
        "emojione": "saxophone",
        "emojione-v1": "saxophone",
        "fluent-emoji": "saxophone",
        "fluent-emoji-flat": "saxophone",
        "twemoji": "saxophone",
        "openmoji": "saxophone",
        "fxemoji": "saxophone",
        "streamline-emojis": "saxophone",
    },
    "trumpet": {
        "noto": "trumpet",
        "noto-v1": "trumpet",
        "emojione": "trumpet",
        "emojione-v1": "trumpet",
        "fluent-emoji": "trumpet",
        "fluent-emoji-flat": "trumpet",
        "twemoji": "trumpet",
        "openmoji": "trumpet",
        "fxemoji": "trumpet",
        "streamline-emojis": "trumpet",
    },
    "violin": {
        "noto": "violin",
        "noto-v1": "violin",
        "emojione": "violin",
        "emojione-v1": "violin",
        "fluent-emoji": "violin",
        "fluent-emoji-flat": "violin",
        "twemoji": "violin",
        "openmoji": "violin",
        "fxemoji": "violin",
        "streamline-emojis": "violin",
    },
    "harp": {
        "noto": "harp",
        "twemoji": "harp",
        "openmoji": "harp",
    },
    "trombone": {
        "noto": "trombone",
        "twemoji": "trombone",
        "openmoji": "trombone",
    },
    "airplane": {
        "noto": "airplane small-airplane",
        "noto-v1": "airplane small-airplane",
        "emojione": "airplane small-airplane",
        "emojione-v1": "airplane small-airplane",
        "fluent-emoji": "airplane small-airplane",
        "fluent-emoji-flat": "airplane small-airplane",
        "twemoji": "airplane small-airplane",
        "openmoji": "airplane small-airplane",
        "fxemoji": "airplane",
        "streamline-emojis": "airplane",
    },
    "bell": {
        "noto": "bell",
        "noto-v1": "bell",
        "emojione": "bell",
        "emojione-v1": "bell",
        "fluent-emoji": "bell",
        "fluent-emoji-flat": "bell",
        "twemoji": "bell",
        "openmoji": "bell",
        "fxemoji": "bell",
        "streamline-emojis": "bell",
    },
    "bird": {
        "noto": "bird dove parrot",
        "noto-v1": "bird dove",
        "emojione": "bird dove",
        "emojione-v1": "bird dove",
        "fluent-emoji": "bird dove parrot",
        "fluent-emoji-flat": "bird dove parrot",
        "twemoji": "bird dove parrot",
        "openmoji": "bird dove parrot",
        "fxemoji": "bird doveofpeace",
        "streamline-emojis": "bird-1 bird-2",
    },
    "bus": {
        "noto": "bus oncoming-bus minibus trolleybus",
        "noto-v1": "bus oncoming-bus minibus trolleybus",
        "emojione": "bus oncoming-bus minibus trolleybus",
        "emojione-v1": "bus oncoming-bus minibus trolleybus",
        "fluent-emoji": "bus oncoming-bus minibus trolleybus",
        "fluent-emoji-flat": "bus oncoming-bus minibus trolleybus",
        "twemoji": "bus oncoming-bus minibus trolleybus",
        "openmoji": "bus oncoming-bus minibus trolleybus",
        "fxemoji": "bus oncomingbus minibus trolleybus",
        "streamline-emojis": "bus minibus",
    },
    "car": {
        "noto": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "noto-v1": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "emojione": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "emojione-v1": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "fluent-emoji": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "fluent-emoji-flat": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "twemoji": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "openmoji": "automobile oncoming-automobile taxi sport-utility-vehicle racing-car",
        "fxemoji": "automobile oncomingautomobile taxi racecar",
        "streamline-emojis": "automobile taxi",
    },
    "cat": {
        "noto": "cat cat-face",
        "noto-v1": "cat cat-face",
        "emojione": "cat cat-face",
        "emojione-v1": "cat cat-face",
        "fluent-emoji": "cat cat-face",
        "fluent-emoji-flat": "cat cat-face",
        "twemoji": "cat cat-face",
        "openmoji": "cat cat-face",
        "fxemoji": "cat catside",
        "streamline-emojis": "cat cat-face",
    },
    "chicken": {
        "noto": "chicken rooster",
        "noto-v1": "chicken rooster",
        "emojione": "chicken rooster",
        "emojione-v1": "chicken rooster",
        "fluent-emoji": "chicken rooster",
        "fluent-emoji-flat": "chicken rooster",
        "twemoji": "chicken rooster",
        "openmoji": "chicken rooster",
        "fxemoji": "chicken rooster",
        "streamline-emojis": "chicken rooster",
    },
    "cow": {
        "noto": "cow cow-face",
        "noto-v1": "cow cow-face",
        "emojione": "cow cow-face",
        "emojione-v1": "cow cow-face",
        "fluent-emoji": "cow cow-face",
        "fluent-emoji-flat": "cow cow-face",
        "twemoji": "cow cow-face",
        "openmoji": "cow cow-face",
        "fxemoji": "cow cowface",
        "streamline-emojis": "cow cow-face",
    },
    "cricket": {
        "noto": "cricket",
        "noto-v1": "cricket",
        "emojione": "cricket",
        "fluent-emoji": "cricket",
        "fluent-emoji-flat": "cricket",
        "twemoji": "cricket",
        "openmoji": "cricket",
    },
    "dog": {
        "noto": "dog dog-face poodle",
        "noto-v1": "dog dog-face poodle",
        "emojione": "dog dog-face poodle",
        "emojione-v1": "dog dog-face poodle",
        "fluent-emoji": "dog dog-face poodle",
        "fluent-emoji-flat": "dog dog-face poodle",
        "twemoji": "dog dog-face poodle",
        "openmoji": "dog dog-face poodle",
        "fxemoji": "dog poodle dogside",
        "streamline-emojis": "dog dog-face poodle",
    },
    "door": {
        "noto": "door",
        "noto-v1": "door",
        "emojione": "door",
        "emojione-v1": "door",
        "fluent-emoji": "door",
        "fluent-emoji-flat": "door",
        "twemoji": "door",
        "openmoji": "door",
        "fxemoji": "door",
        "streamline-emojis": "door",
    },
    "duck": {
        "noto": "duck",
        "noto-v1": "duck",
        "emojione": "duck",
        "fluent-emoji": "duck",
        "fluent-emoji-flat": "duck",
        "twemoji": "duck",
        "openmoji": "duck",
    },
    "frog": {
        "noto": "frog",
        "noto-v1": "frog",
        "emojione": "frog",
        "emojione-v1": "frog",
        "fluent-emoji": "frog",
        "fluent-emoji-flat": "frog",
        "twemoji": "frog",
        "openmoji": "frog",
        "fxemoji": "frog",
        "streamline-emojis": "frog-face",
    },
    "goose": {
        "noto": "goose",
        "fluent-emoji": "goose",
        "fluent-emoji-flat": "goose",
        "twemoji": "goose",
        "openmoji": "goose",
    },
    "helicopter": {
        "noto": "helicopter",
        "noto-v1": "helicopter",
        "emojione": "helicopter",
        "emojione-v1": "helicopter",
        "fluent-emoji": "helicopter",
        "fluent-emoji-flat": "helicopter",
        "twemoji": "helicopter",
        "openmoji": "helicopter",
        "fxemoji": "helicopter",
        "streamline-emojis": "helicopter",
    },
    "horse": {
        "noto": "horse horse-face",
        "noto-v1": "horse horse-face",
        "emojione": "horse horse-face",
        "emojione-v1": "horse horse-face",
        "fluent-emoji": "horse horse-face",
        "fluent-emoji-flat": "horse horse-face",
        "twemoji": "horse horse-face",
        "openmoji": "horse horse-face",
        "fxemoji": "horse horseface",
        "streamline-emojis": "horse horse-face",
    },
    "lion": {
        "noto": "lion",
        "noto-v1": "lion",
        "emojione": "lion",
        "fluent-emoji": "lion",
        "fluent-emoji-flat": "lion",
        "twemoji": "lion",
        "openmoji": "lion",
        "streamline-emojis": "lion-face",
    },
    "monkey": {
        "noto": "monkey monkey-face",
        "noto-v1": "monkey monkey-face",
        "emojione": "monkey monkey-face",
        "emojione-v1": "monkey monkey-face",
        "fluent-emoji": "monkey monkey-face",
        "fluent-emoji-flat": "monkey monkey-face",
        "twemoji": "monkey monkey-face",
        "openmoji": "monkey monkey-face",
        "fxemoji": "monkey monkeyface",
        "streamline-emojis": "monkey monkey-face",
    },
    "motorcycle": {
        "noto": "motorcycle motor-scooter",
        "noto-v1": "motorcycle motor-scooter",
        "emojione": "motorcycle motor-scooter",
        "emojione-v1": "motorcycle",
        "fluent-emoji": "motorcycle motor-scooter",
        "fluent-emoji-flat": "motorcycle motor-scooter",
        "twemoji": "motorcycle motor-scooter",
        "openmoji": "motorcycle motor-scooter",
        "fxemoji": "motorcycle",
    },
    "owl": {
        "noto": "owl",
        "noto-v1": "owl",
        "emojione": "owl",
        "fluent-emoji": "owl",
        "fluent-emoji-flat": "owl",
        "twemoji": "owl",
        "openmoji": "owl",
    },
    "pig": {
        "noto": "pig pig-face",
        "noto-v1": "pig pig-face",
        "emojione": "pig pig-face",
        "emojione-v1": "pig pig-face",
        "fluent-emoji": "pig pig-face",
        "fluent-emoji-flat": "pig pig-face",
        "twemoji": "pig pig-face",
        "openmoji": "pig pig-face",
        "fxemoji": "pig pigside",
        "streamline-emojis": "pig pig-face",
    },
    "sheep": {
        "noto": "ewe ram",
        "noto-v1": "ewe ram",
        "emojione": "ewe ram",
        "emojione-v1": "ewe ram",
        "fluent-emoji": "ewe ram",
        "fluent-emoji-flat": "ewe ram",
        "twemoji": "ewe ram",
        "openmoji": "ewe ram",
        "fxemoji": "ram sheep",
        "streamline-emojis": "ram ewe-1",
    },
    "ship": {
        "noto": "ship passenger-ship ferry",
        "noto-v1": "ship passenger-ship ferry",
        "emojione": "ship passenger-ship ferry",
        "emojione-v1": "ship passenger-ship",
        "fluent-emoji": "ship passenger-ship ferry",
        "fluent-emoji-flat": "ship passenger-ship ferry",
        "twemoji": "ship passenger-ship ferry",
        "openmoji": "ship passenger-ship ferry",
        "fxemoji": "ship",
        "streamline-emojis": "ship",
    },
    "train": {
        "noto": "locomotive train high-speed-train bullet-train",
        "noto-v1": "locomotive train high-speed-train bullet-train",
        "emojione": "locomotive train high-speed-train bullet-train",
        "emojione-v1": "locomotive train high-speed-train bullet-train",
        "fluent-emoji": "locomotive train high-speed-train bullet-train",
        "fluent-emoji-flat": "locomotive train high-speed-train bullet-train",
        "twemoji": "locomotive train high-speed-train bullet-train",
        "openmoji": "locomotive train high-speed-train bullet-train",
        "fxemoji": "train highspeedtrain steamlocomotive",
        "streamline-emojis": "locomotive bullet-train",
    },
    "wolf": {
        "noto": "wolf",
        "noto-v1": "wolf",
        "emojione": "wolf",
        "emojione-v1": "wolf",
        "fluent-emoji": "wolf",
        "fluent-emoji-flat": "wolf",
        "twemoji": "wolf",
        "openmoji": "wolf",
        "fxemoji": "wolfface",
        "streamline-emojis": "wolf-face",
    },
}

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def resolve_icon(data: dict[str, Any], name: str, where: str = "icons.json") -> dict[str, Any]:
    """Full icon record of ``name``: aliases followed to their parent, transformations combined
    (``hFlip``/``vFlip`` toggle, ``rotate`` adds, quarter turns), set defaults filled in."""
    icons, aliases = data.get("icons", {}), data.get("aliases", {})
    props: dict[str, Any] = {"hFlip": False, "vFlip": False, "rotate": 0}
    seen = []
    current = name
    while current not in icons:
        if current not in aliases:
            raise ValueError(f"{where}: no icon or alias named {current!r}"
                             + (f" (reached from {name!r})" if current != name else ""))
        if current in seen or len(seen) > 16:
            raise ValueError(f"{where}: alias loop at {current!r} (from {name!r})")
        seen.append(current)
        alias = aliases[current]
        props["hFlip"] ^= bool(alias.get("hFlip", False))
        props["vFlip"] ^= bool(alias.get("vFlip", False))
        props["rotate"] += int(alias.get("rotate", 0))
        for key in ("width", "height", "left", "top"):
            if key in alias and key not in props:
                props[key] = alias[key]
        current = alias["parent"]
    icon = icons[current]
    body = icon.get("body")
    if not isinstance(body, str) or not body.strip():
        raise ValueError(f"{where}: icon {name!r} has no SVG body")
    props["hFlip"] ^= bool(icon.get("hFlip", False))
    props["vFlip"] ^= bool(icon.get("vFlip", False))
    props["rotate"] = (props["rotate"] + int(icon.get("rotate", 0))) % 4
    out = {"body": body, "hFlip": props["hFlip"], "vFlip": props["vFlip"], "rotate": props["rotate"]}
    for key, default in (("width", data.get("width", 16)), ("height", data.get("height", 16)),
                         ("left", data.get("left", 0)), ("top", data.get("top", 0))):
        out[key] = props.get(key, icon.get(key, default))
    if not all(isinstance(out[k], (int, float)) for k in ("width", "height", "left", "top")) \
            or out["width"] <= 0 or out["height"] <= 0:
        raise ValueError(f"{where}: icon {name!r} has a bad size {out['width']}x{out['height']}")
    return out


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def iconify_svg(data: dict[str, Any], name: str, where: str = "icons.json") -> bytes:
    """Standalone SVG document (UTF-8 bytes) of icon ``name`` of a parsed Iconify ``icons.json``.

    The body is wrapped in ``<svg xmlns=... viewBox="left top width height" width height>``;
    flips and quarter turns become one ``transform`` group. The output depends only on the
    icon's record, so the same package version always yields the same bytes.
    """
    if not _NAME.match(name):
        raise ValueError(f"{where}: bad icon name {name!r}")
    icon = resolve_icon(data, name, where)
    left, top, w, h = icon["left"], icon["top"], icon["width"], icon["height"]
    transforms = []
    if icon["hFlip"]:
        transforms.append(f"translate({_num(w + 2 * left)} 0) scale(-1 1)")
    if icon["vFlip"]:
        transforms.append(f"translate(0 {_num(h + 2 * top)}) scale(1 -1)")
    rot = icon["rotate"]
    if rot:
        cx, cy = left + w / 2, top + h / 2
        transforms.insert(0, f"rotate({rot * 90} {_num(cx)} {_num(cy)})")
        if rot % 2:  # a quarter turn swaps the box
            w, h = h, w
            left, top = cx - w / 2, cy - h / 2
    body = icon["body"]
    if transforms:
        body = f'<g transform="{" ".join(transforms)}">{body}</g>'
    box = " ".join(_num(v) for v in (left, top, w, h))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
           f'viewBox="{box}" width="{_num(w)}" height="{_num(h)}">{body}</svg>\n')
    return svg.encode("utf-8")


def read_icon_set(blob: bytes, where: str) -> dict[str, Any]:
    """Parse an ``icons.json``; ValueError naming ``where`` if it is not an Iconify icon set."""
    try:
        data = json.loads(blob.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{where}: not valid JSON ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("icons"), dict):
        raise ValueError(f"{where}: no 'icons' object (not an Iconify icon set)")
    return data


def license_of(info_blob: bytes, where: str) -> str:
    """SPDX id from an Iconify ``info.json`` (``{"license": {"spdx": ...}}``)."""
    try:
        spdx = json.loads(info_blob.decode("utf-8"))["license"]["spdx"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as err:
        raise ValueError(f"{where}: no license.spdx ({err})") from None
    if not isinstance(spdx, str) or not spdx:
        raise ValueError(f"{where}: empty license.spdx")
    return spdx
