"""Readers for the public test sets, so a params key can point at a real download.

Each reader returns a list of :class:`PublicRecord` (paths, classes, boxes; masks built on demand
at the requested resolution) and fails with ``FileNotFoundError``/``ValueError`` naming the file.
:class:`PublicDataset` turns records into the batch contract of ``docs/ARCHITECTURE.md``.

Layouts and rules follow the reference loaders (stoneMo/AVGN ``datasets.py``, stoneMo/EZ-VSL and
LVS ``datasets.py``), read to learn the formats; deviations are marked:

- VGG-SS ``vggss.json``: ``[{"file", "class", "bbox": [[x1, y1, x2, y2], ...]}]``, normalized.
  Boxes are clipped to [0, 1], scaled by the mask size and truncated to int; mask = union.
- Flickr-SoundNet: one ``<name>.xml`` per clip; every ``bbox`` element is one annotator's box in
  pixels of the 256 x 256 frame, children ``xmin, ymin, xmax, ymax`` (the reference skips the
  first child and reads the next four by position; we read by tag and fall back to that).
  Coordinates become ``int(size * v / 256)``; consensus map = sum of boxes / 2, clipped to 1,
  so one annotator gives 0.5 and two or more agreeing give 1 (LVS / EZ-VSL ``testset_gt``).
- MUSIC ``music_solo.json`` / ``music_duet.json``: boxes are normalized ``[x, y, w, h]``
  (``bbox`` or ``bbox_src1``/``bbox_src2`` with ``class_src1``/``class_src2``); we convert to
  ``[x, y, x + w, y + h]`` (the official code reads them as x1, y1, x2, y2, a bug). A frame
  ``<video>_<clip>_<frame>`` (e.g. ``HnUOaSfTA6c_000_00007``) pairs with ``<video>.wav``.
- VGGSound-Instruments (Mix-and-Localize annotations): csv ``name,class`` (single) or
  ``name,class,name2,class2`` (pairs), masks pickled per sample as ``<mask_dir>/<name>.*``
  holding an (H, W) numpy array, resized to the mask size by nearest neighbour.
- VGGSound-Duet: csv ``file,class,mix_file,mix_class``, boxes from ``vggss.json``.

Pairs (VGGSound-Instruments multi, VGGSound-Duet) are composed as in the AVGN paper: the two
frames side by side (H x 2W), the waveforms summed. Class names are made snake_case so that the
json (``"female speech, woman speaking"``) and csv (``female_speech_woman_speaking``) agree.
"""
from __future__ import annotations

import csv
import json
import pickle
import re
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from avgn_lib.data.audio import SpecConfig, fit_length, load_audio, log_spectrogram
from avgn_lib.data.image import load_image, to_tensor

FLICKR_FRAME = 256


def snake_class(name: str) -> str:
    """``"female speech, woman speaking"`` -> ``"female_speech_woman_speaking"``."""
    return re.sub(r"[^0-9a-z]+", "_", name.strip().lower()).strip("_")


@dataclass(frozen=True, eq=False)
class PublicRecord:
    """One test sample of a public dataset.

    ``boxes[s]`` is a (K, 4) int array of x1, y1, x2, y2 in pixels of the composed mask canvas
    (``size`` x ``size * len(image_paths)``); K > 1 for several objects or annotators, K = 0 when
    the source is annotated by a mask file instead (``mask_files[s]``, placed in frame
    ``slots[s]``).
    """

    name: str
    image_paths: tuple[Path, ...]
    audio_paths: tuple[Path, ...]
    classes: tuple[str, ...]
    boxes: tuple[np.ndarray, ...]
    size: int
    consensus: bool = False
    mask_files: tuple[Path | None, ...] = ()
    slots: tuple[int, ...] = ()

    @property
    def mask_shape(self) -> tuple[int, int]:
        return self.size, self.size * len(self.image_paths)

    def masks(self) -> np.ndarray:
        """Ground truth ``(S, size, size * frames)`` float32 in [0, 1] (Flickr: consensus)."""
        h, w = self.mask_shape
        out = np.zeros((len(self.classes), h, w), np.float32)
        for s in range(len(self.classes)):
            mask_file = self.mask_files[s] if self.mask_files else None
            if mask_file is not None:
                x0 = self.slots[s] * self.size
                out[s, :, x0:x0 + self.size] = load_mask_pickle(mask_file, self.size)
            else:
                out[s] = boxes_to_mask(self.boxes[s], h, w, consensus=self.consensus)
        return out


def boxes_to_mask(boxes: np.ndarray, height: int, width: int, consensus: bool = False
                  ) -> np.ndarray:
    """(K, 4) int pixel boxes -> (height, width) float32 mask.

    Binary union, or with ``consensus`` the Flickr rule: count boxes per pixel, divide by 2, clip
    at 1. A box covers rows ``y1:y2`` and columns ``x1:x2`` (end-exclusive, as the references).
    """
    counts = np.zeros((height, width), np.float32)
    for x1, y1, x2, y2 in np.asarray(boxes, dtype=np.int64).reshape(-1, 4):
        counts[max(y1, 0):max(y2, 0), max(x1, 0):max(x2, 0)] += 1
    if consensus:
        return np.minimum(counts / 2.0, 1.0)
    return (counts > 0).astype(np.float32)


def _normalized_to_pixels(box: Sequence[float], size: int, where: str) -> np.ndarray:
    arr = np.asarray(box, dtype=np.float64)
    if arr.shape != (4,) or not np.isfinite(arr).all():
        raise ValueError(f"{where}: expected 4 finite box coordinates, got {box!r}")
    return (np.clip(arr, 0.0, 1.0) * size).astype(np.int64)


def xywh_to_xyxy(box: Sequence[float]) -> list[float]:
    """Normalized ``[x, y, w, h]`` (MUSIC json) -> ``[x1, y1, x2, y2]``."""
    x, y, w, h = (float(v) for v in box)
    return [x, y, x + w, y + h]


def _media(directory: Path, stem: str, ext: str) -> Path:
    return Path(directory) / f"{stem}{ext}"


def _check_media(records: list[PublicRecord], skip_missing: bool, source: Path
                 ) -> list[PublicRecord]:
    kept = []
    for rec in records:
        missing = [p for p in rec.image_paths + rec.audio_paths if not p.is_file()]
        if not missing:
            kept.append(rec)
        elif not skip_missing:
            raise FileNotFoundError(f"{missing[0]}: listed by {source} (sample {rec.name!r}) "
                                    f"but not found")
    if len(kept) < len(records):
        warnings.warn(f"{source}: skipped {len(records) - len(kept)} of {len(records)} samples "
                      f"whose image or audio file is missing (skip_missing=True)", stacklevel=3)
    if not kept:
        raise ValueError(f"{source}: no usable samples")
    return kept


def _load_json_list(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: annotation json not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(data, list) or not all(isinstance(d, dict) for d in data):
        raise ValueError(f"{path}: expected a JSON list of objects")
    return data


def _read_csv(path: Path, min_cols: int) -> list[list[str]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: csv not found")
    with path.open(newline="", encoding="utf-8") as f:
        rows = [[c.strip() for c in row] for row in csv.reader(f) if row and row[0].strip()]
    for i, row in enumerate(rows):
        if len(row) < min_cols:
            raise ValueError(f"{path}: line {i + 1} has {len(row)} columns, expected {min_cols}")
    return rows


def _vggss_index(json_path: Path) -> dict[str, dict]:
    index = {}
    for i, entry in enumerate(_load_json_list(json_path)):
        if "file" not in entry or "bbox" not in entry:
            raise ValueError(f"{json_path}: entry {i} lacks 'file' or 'bbox'")
        index[str(entry["file"])] = entry
    return index


def _vggss_boxes(entry: dict, size: int, where: str, x_offset: int = 0) -> np.ndarray:
    boxes = entry["bbox"]
    if not isinstance(boxes, list) or not boxes:
        raise ValueError(f"{where}: 'bbox' must be a non-empty list of [x1, y1, x2, y2]")
    px = np.stack([_normalized_to_pixels(b, size, where) for b in boxes])
    px[:, [0, 2]] += x_offset
    return px


def read_vggss(json_path: str | Path, image_dir: str | Path, audio_dir: str | Path,
               size: int = 224, names: Iterable[str] | None = None, image_ext: str = ".jpg",
               audio_ext: str = ".wav", skip_missing: bool = False) -> list[PublicRecord]:
    """VGG-SS / VGGSound-Single test set from ``vggss.json`` (optionally restricted to ``names``)."""
    json_path = Path(json_path)
    index = _vggss_index(json_path)
    wanted = list(index) if names is None else list(names)
    records = []
    for name in wanted:
        if name not in index:
            raise ValueError(f"{json_path}: no annotation for sample {name!r}")
        entry = index[name]
        records.append(PublicRecord(
            name=name, image_paths=(_media(image_dir, name, image_ext),),
            audio_paths=(_media(audio_dir, name, audio_ext),),
            classes=(snake_class(str(entry.get("class", ""))),),
            boxes=(_vggss_boxes(entry, size, f"{json_path} [{name}]"),), size=size))
    return _check_media(records, skip_missing, json_path)


def read_vggsound_duet(csv_path: str | Path, json_path: str | Path, image_dir: str | Path,
                       audio_dir: str | Path, size: int = 224, image_ext: str = ".jpg",
                       audio_ext: str = ".wav", skip_missing: bool = False
                       ) -> list[PublicRecord]:
    """VGGSound-Duet: csv ``file,class,mix_file,mix_class``; boxes of both from ``vggss.json``."""
    csv_path = Path(csv_path)
    index = _vggss_index(Path(json_path))
    records = []
    for name, cls, mix, mix_cls in (r[:4] for r in _read_csv(csv_path, 4)):
        for n in (name, mix):
            if n not in index:
                raise ValueError(f"{csv_path}: sample {n!r} has no box in {json_path}")
        where = f"{json_path} [{name}+{mix}]"
        records.append(PublicRecord(
            name=f"{name}+{mix}",
            image_paths=(_media(image_dir, name, image_ext), _media(image_dir, mix, image_ext)),
            audio_paths=(_media(audio_dir, name, audio_ext), _media(audio_dir, mix, audio_ext)),
            classes=(snake_class(cls), snake_class(mix_cls)),
            boxes=(_vggss_boxes(index[name], size, where),
                   _vggss_boxes(index[mix], size, where, x_offset=size)), size=size))
    return _check_media(records, skip_missing, csv_path)


def _flickr_boxes(xml_path: Path, size: int) -> np.ndarray:
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as err:
        raise ValueError(f"{xml_path}: malformed XML ({err})") from err
    boxes = []
    for bbox in root.iter("bbox"):
        by_tag = {c.tag: c.text for c in bbox}
        if all(k in by_tag for k in ("xmin", "ymin", "xmax", "ymax")):
            texts = [by_tag[k] for k in ("xmin", "ymin", "xmax", "ymax")]
        else:
            texts = [c.text for c in list(bbox)[1:5]]  # the reference's positional reading
        try:
            values = [int(float(t)) for t in texts]
        except (TypeError, ValueError) as err:
            raise ValueError(f"{xml_path}: bbox with non-numeric coordinates {texts}") from err
        if len(values) != 4:
            raise ValueError(f"{xml_path}: bbox needs xmin, ymin, xmax, ymax, got {texts}")
        boxes.append([int(size * v / FLICKR_FRAME) for v in values])
    if not boxes:
        raise ValueError(f"{xml_path}: no <bbox> annotation found")
    return np.asarray(boxes, dtype=np.int64)


def read_flickr(annotation_dir: str | Path, image_dir: str | Path, audio_dir: str | Path,
                size: int = 224, names: Iterable[str] | None = None, image_ext: str = ".jpg",
                audio_ext: str = ".wav", skip_missing: bool = False) -> list[PublicRecord]:
    """Flickr-SoundNet test set: ``<annotation_dir>/<name>.xml`` per clip (all, or ``names``)."""
    annotation_dir = Path(annotation_dir)
    if not annotation_dir.is_dir():
        raise FileNotFoundError(f"{annotation_dir}: annotation directory not found")
    if names is None:
        xmls = sorted(annotation_dir.glob("*.xml"))
    else:
        xmls = [annotation_dir / f"{n}.xml" for n in names]
    records = []
    for xml_path in xmls:
        if not xml_path.is_file():
            raise FileNotFoundError(f"{xml_path}: annotation not found")
        name = xml_path.stem
        records.append(PublicRecord(
            name=name, image_paths=(_media(image_dir, name, image_ext),),
            audio_paths=(_media(audio_dir, name, audio_ext),), classes=("",),
            boxes=(_flickr_boxes(xml_path, size),), size=size, consensus=True))
    if not records:
        raise ValueError(f"{annotation_dir}: no .xml annotations")
    return _check_media(records, skip_missing, annotation_dir)


def music_audio_stem(frame_name: str) -> str:
    """``"HnUOaSfTA6c_000_00007"`` -> ``"HnUOaSfTA6c"`` (drop the clip and frame counters)."""
    if not re.fullmatch(r".+_\d+_\d+", frame_name):
        raise ValueError(f"MUSIC frame name {frame_name!r} is not '<video>_<clip>_<frame>'")
    return frame_name.rsplit("_", 2)[0]


def read_music(json_path: str | Path, image_dir: str | Path, audio_dir: str | Path,
               size: int = 224, names: Iterable[str] | None = None, image_ext: str = ".jpg",
               audio_ext: str = ".wav", skip_missing: bool = False) -> list[PublicRecord]:
    """MUSIC-Solo (``bbox``) or MUSIC-Duet (``bbox_src1``/``bbox_src2``) json, [x, y, w, h] boxes."""
    json_path = Path(json_path)
    entries = {str(e.get("file")): e for e in _load_json_list(json_path)}
    wanted = list(entries) if names is None else list(names)
    records = []
    for name in wanted:
        if name not in entries:
            raise ValueError(f"{json_path}: no annotation for sample {name!r}")
        e, where = entries[name], f"{json_path} [{name}]"
        if "bbox_src1" in e:
            keys = [("class_src1", "bbox_src1"), ("class_src2", "bbox_src2")]
        elif "bbox" in e:
            keys = [("class", "bbox")]
        else:
            raise ValueError(f"{where}: needs 'bbox' (solo) or 'bbox_src1'/'bbox_src2' (duet)")
        if any(k not in e for pair in keys for k in pair):
            raise ValueError(f"{where}: missing one of {[k for pair in keys for k in pair]}")
        boxes = tuple(_normalized_to_pixels(xywh_to_xyxy(e[b]), size, where)[None] for _, b in keys)
        records.append(PublicRecord(
            name=name, image_paths=(_media(image_dir, name, image_ext),),
            audio_paths=(_media(audio_dir, music_audio_stem(name), audio_ext),),
            classes=tuple(snake_class(str(e[c])) for c, _ in keys), boxes=boxes, size=size))
    return _check_media(records, skip_missing, json_path)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler that can rebuild numpy arrays and plain containers, nothing else."""

    _ALLOWED = {
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "list"), ("builtins", "dict"), ("builtins", "tuple"), ("builtins", "int"),
        ("builtins", "float"), ("builtins", "bool"), ("builtins", "bytes"), ("builtins", "str"),
        ("builtins", "bytearray"), ("builtins", "set"), ("builtins", "frozenset"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED or (module == "numpy" and name.endswith("DType")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and "
                                     f"builtin containers are allowed in mask pickles")


def load_mask_pickle(path: str | Path, size: int) -> np.ndarray:
    """Load a pickled (H, W) mask safely and resize it to (size, size) by nearest neighbour.

    Nearest neighbour takes source pixel ``floor(i * H / size)``, as ``cv2.INTER_NEAREST`` in the
    reference. Returns float32 in {0, 1} (nonzero -> 1).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: mask pickle not found")
    try:
        with path.open("rb") as f:
            obj = _ArrayOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as err:
        raise ValueError(f"{path}: not a safe pickled numpy mask ({err})") from err
    if not isinstance(obj, np.ndarray):
        raise ValueError(f"{path}: pickle holds {type(obj).__name__}, expected a numpy array")
    mask = obj[..., 0] if obj.ndim == 3 and obj.shape[-1] == 1 else obj
    if mask.ndim != 2 or min(mask.shape) < 1:
        raise ValueError(f"{path}: expected an (H, W) mask, got shape {obj.shape}")
    rows = np.arange(size) * mask.shape[0] // size
    cols = np.arange(size) * mask.shape[1] // size
    return (mask[np.ix_(rows, cols)] != 0).astype(np.float32)


def _find_mask(mask_dir: Path, name: str) -> Path:
    hits = sorted(p for p in mask_dir.glob(f"{name}.*") if p.is_file())
    if not hits:
        raise FileNotFoundError(f"{mask_dir}/{name}.*: mask pickle for sample {name!r} not found")
    return hits[0]


def read_vgginstruments(csv_path: str | Path, mask_dir: str | Path, image_dir: str | Path,
                        audio_dir: str | Path, size: int = 224, image_ext: str = ".jpg",
                        audio_ext: str = ".wav", skip_missing: bool = False
                        ) -> list[PublicRecord]:
    """VGGSound-Instruments: csv ``name,class`` (single) or ``name,class,name2,class2`` (pairs).

    Every mask pickle is loaded once here so that a bad file fails at read time.
    """
    csv_path, mask_dir = Path(csv_path), Path(mask_dir)
    if not mask_dir.is_dir():
        raise FileNotFoundError(f"{mask_dir}: mask directory not found")
    records = []
    for row in _read_csv(csv_path, 2):
        pair = len(row) >= 4 and row[2] != ""
        names = [row[0], row[2]] if pair else [row[0]]
        classes = [row[1], row[3]] if pair else [row[1]]
        masks = [_find_mask(mask_dir, n) for n in names]
        for m in masks:
            load_mask_pickle(m, size)
        records.append(PublicRecord(
            name="+".join(names),
            image_paths=tuple(_media(image_dir, n, image_ext) for n in names),
            audio_paths=tuple(_media(audio_dir, n, audio_ext) for n in names),
            classes=tuple(snake_class(c) for c in classes),
            boxes=tuple(np.zeros((0, 4), np.int64) for _ in names), size=size,
            mask_files=tuple(masks), slots=tuple(range(len(names)))))
    return _check_media(records, skip_missing, csv_path)


class PublicDataset(torch.utils.data.Dataset):
    """Records -> batch-contract items (``docs/ARCHITECTURE.md``) for evaluation.

    Each frame is resized to ``image_size`` x ``image_size`` (bicubic, like the reference test
    transform) and frames of a pair are placed side by side; each waveform is loaded at
    ``spec_cfg.sample_rate``, centre-cropped or zero-padded to ``spec_cfg.seconds`` and the
    waveforms are summed before the log spectrogram. Item keys: ``image`` (3, H, W·frames),
    ``spec`` (1, F, T), ``labels`` (C,), ``classes`` (S,) padded with -1, ``masks``
    (S, H, W·frames), ``has_source`` (), ``index`` ().

    Deviations from the contract, on purpose: ``masks`` is float32 when any record uses the
    Flickr consensus (values 0.5 cannot be uint8 0/1), uint8 otherwise; a source without a class
    (Flickr) has class -1 but a non-empty mask.
    """

    def __init__(self, records: Sequence[PublicRecord], image_size: int,
                 spec_cfg: SpecConfig, class_names: Sequence[str]):
        if not records:
            raise ValueError("PublicDataset: no records")
        frames = {len(r.image_paths) for r in records}
        if len(frames) != 1:
            raise ValueError(f"PublicDataset: records mix {sorted(frames)} frames per sample")
        for r in records:
            if r.size != image_size:
                raise ValueError(f"PublicDataset: record {r.name!r} was read at mask size "
                                 f"{r.size}, not image_size {image_size}; read with "
                                 f"size={image_size}")
        self.class_index = {snake_class(c): i for i, c in enumerate(class_names)}
        for r in records:
            unknown = [c for c in r.classes if c and c not in self.class_index]
            if unknown:
                raise ValueError(f"PublicDataset: record {r.name!r} has classes {unknown} "
                                 f"outside class_names")
        self.records = list(records)
        self.image_size = image_size
        self.spec_cfg = spec_cfg
        self.num_classes = len(class_names)
        self.max_sources = max(len(r.classes) for r in records)
        self.mask_dtype = torch.float32 if any(r.consensus for r in records) else torch.uint8

    def __len__(self) -> int:
        return len(self.records)

    def _frame(self, path: Path) -> np.ndarray:
        img = Image.fromarray(load_image(path))
        size = (self.image_size, self.image_size)
        return np.asarray(img.resize(size, Image.Resampling.BICUBIC), dtype=np.uint8)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        rec, cfg = self.records[index], self.spec_cfg
        image = to_tensor(np.concatenate([self._frame(p) for p in rec.image_paths], axis=1))
        wave = np.zeros(cfg.num_samples, np.float32)
        for p in rec.audio_paths:
            wave += fit_length(load_audio(p, cfg.sample_rate), cfg.num_samples)
        spec = log_spectrogram(wave, cfg)[None]  # (1, F, T)
        cls = [self.class_index[c] if c else -1 for c in rec.classes]
        labels = torch.zeros(self.num_classes)
        labels[[c for c in cls if c >= 0]] = 1.0
        pad = self.max_sources - len(cls)
        masks = torch.from_numpy(rec.masks())  # (S, H, W * frames)
        masks = torch.cat([masks, masks.new_zeros((pad, *masks.shape[1:]))]).to(self.mask_dtype)
        return {
            "image": image, "spec": spec.float(), "labels": labels,
            "classes": torch.tensor(cls + [-1] * pad, dtype=torch.int64), "masks": masks,
            "has_source": torch.tensor(True), "index": torch.tensor(index, dtype=torch.int64),
        }
