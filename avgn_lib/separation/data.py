"""Mix-and-separate on the fly from a built solo split (``data/built/<solo set>/<split>``).

A solo scene holds one sounding object: its frame (``images.npy``), its K-frame clip in which
the object moves with its own loudness (``clips.npy``) and its 3 s waveform (``waves.npy``,
int16 at 22,050 Hz, resampled here to ``audio_rate``). A mixture is the sum of N scenes'
waveforms; each scene's own waveform is its target, its frame and clip are its visual cues.

* Training (:class:`MixDataset` without ``mixtures``): every item mixes N scenes drawn from
  torch's generator (seeded by the engine), each with a recording (audio unit and window)
  different from the others, as Sound of Pixels mixes random videos; ``length`` items make
  an epoch.
* Evaluation (:func:`draw_mixtures`): a fixed, seeded list of scene tuples, no tuple twice:
  N sources of N different classes (2-mix, 3-mix, the paper's Fig. D and F), or two sources of
  the same class with different recordings (Fig. G). A split that allows fewer tuples than
  asked gives all of them (the table says N).

Only sounding scenes (``has_source``) are sources: a silent test scene's audio is noise or an
off-screen class, not the object shown. A sounding scene with an all-zero waveform is an error.
"""
from __future__ import annotations

import json
from itertools import combinations
from math import comb
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from avgn_lib.data.datasets import box_mask
from avgn_lib.data.image import to_tensor

SOURCE_RATE = 22050
_ARRAYS = ("images", "clips", "waves", "classes", "has_source", "masks", "boxes")


def resample(wave: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """float32 (L,) -> (L * rate_out / rate_in,) by polyphase filtering (scipy)."""
    if rate_in == rate_out:
        return np.asarray(wave, dtype=np.float32)
    from math import gcd

    from scipy.signal import resample_poly

    g = gcd(rate_in, rate_out)
    return resample_poly(np.asarray(wave, np.float64), rate_out // g, rate_in // g).astype(np.float32)


def clip_tensor(clip: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A scene clip as AME reads it: (K, h, w, 3) uint8 -> (3, K, h, w) ImageNet-normalized."""
    return to_tensor(clip).transpose(0, 1)


class SoloScenes(Dataset):
    """The scenes of one built solo split as AME training items and mixture sources.

    ``sounding_only`` keeps the sounding scenes (sources); ``False`` keeps every scene (AME
    localization, silent ones included). Item: ``image`` (3, H, W) and ``clip`` (3, K, h, w)
    ImageNet-normalized, ``wave`` (L,) float32 at ``audio_rate``, ``classes`` (1,), ``masks`` /
    ``box_masks`` (1, H, W) uint8, ``has_source`` bool, ``index`` (scene index in the split).
    """

    def __init__(self, split_dir: str | Path, audio_rate: int = 11025,
                 sounding_only: bool = True) -> None:
        self.dir = Path(split_dir)
        meta_path = self.dir / "meta.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path}: not a built split (run prepare_data)")
        for name in _ARRAYS:
            if not (self.dir / f"{name}.npy").is_file():
                raise FileNotFoundError(f"{self.dir / (name + '.npy')}: missing built array")
        self.meta = json.loads(meta_path.read_text())
        if int(self.meta.get("num_sources", 1)) != 1:
            raise ValueError(f"{self.dir}: a solo split has one source per scene, this one has "
                             f"{self.meta.get('num_sources')}")
        self.rate_in = int(self.meta.get("sample_rate", SOURCE_RATE))
        self.audio_rate = int(audio_rate)
        self.class_names: list[str] = list(self.meta["classes"])
        self.num_classes = len(self.class_names)
        has = np.load(self.dir / "has_source.npy").astype(bool)
        classes = np.load(self.dir / "classes.npy")[:, 0].astype(np.int64)
        keep = (has & (classes >= 0)) if sounding_only else np.ones(len(has), bool)
        self.scenes = np.flatnonzero(keep)                 # scene indices in the split
        self.classes = classes[self.scenes]                # (n,), -1 for silent scenes
        self.audio_keys = self._audio_keys()[self.scenes]
        self._arrays: dict[str, np.ndarray] | None = None
        self.appearance_feat: np.ndarray | None = None     # (n, C) pooled trunk output
        if sounding_only and len(self.scenes) == 0:
            raise ValueError(f"{self.dir}: no sounding scene to mix")

    def _audio_keys(self) -> np.ndarray:
        """Per scene, what recording and window it heard (scenes.jsonl), so two scenes that
        share both are never mixed: their sum would be one sound twice."""
        path = self.dir / "scenes.jsonl"
        n = len(np.load(self.dir / "has_source.npy", mmap_mode="r"))
        if not path.is_file():
            return np.array([str(i) for i in range(n)], dtype=object)
        keys = []
        for line in path.read_text().splitlines():
            rec = json.loads(line)
            heard = [{k: v for k, v in s.items() if k != "image"} for s in rec.get("sources", [])]
            keys.append(json.dumps(heard, sort_keys=True) if heard else f"silent:{len(keys)}")
        if len(keys) != n:
            raise ValueError(f"{path}: {len(keys)} records for {n} scenes")
        return np.array(keys, dtype=object)

    def _open(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            self._arrays = {k: np.load(self.dir / f"{k}.npy", mmap_mode="r") for k in _ARRAYS}
        return self._arrays

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_arrays"] = None  # memmaps are reopened in each worker
        return state

    def __len__(self) -> int:
        return len(self.scenes)

    def wave(self, pos: int) -> torch.Tensor:
        """(L,) float32 waveform of scene ``scenes[pos]`` at ``audio_rate``."""
        scene = int(self.scenes[pos])
        raw = np.asarray(self._open()["waves"][scene], dtype=np.float32) / 32767.0
        if not np.abs(raw).any():
            raise ValueError(f"{self.dir}: scene {scene} has an all-zero waveform (a silent "
                             "source cannot be a separation target)")
        return torch.from_numpy(resample(raw, self.rate_in, self.audio_rate))

    def frame(self, pos: int) -> np.ndarray:
        """(H, W, 3) uint8 frame of scene ``scenes[pos]`` as built (for figures)."""
        return np.array(self._open()["images"][int(self.scenes[pos])])

    def visual(self, pos: int) -> dict[str, torch.Tensor]:
        """``image`` (3, H, W) and ``clip`` (3, K, h, w) of scene ``scenes[pos]``."""
        a, scene = self._open(), int(self.scenes[pos])
        out = {"image": to_tensor(np.array(a["images"][scene])),
               "clip": clip_tensor(np.array(a["clips"][scene]))}
        if self.appearance_feat is not None:
            out["appearance_feat"] = torch.from_numpy(self.appearance_feat[pos])
        return out

    def __getitem__(self, pos: int) -> dict[str, torch.Tensor]:
        a, scene = self._open(), int(self.scenes[pos])
        masks = torch.from_numpy(np.array(a["masks"][scene]))                 # (1, H, W)
        return {**self.visual(pos), "wave": self.wave(pos),
                "classes": torch.tensor([int(self.classes[pos])]),
                "masks": masks, "box_masks": box_mask(np.asarray(a["boxes"][scene]), masks.shape[-2:]),
                "has_source": torch.tensor(bool(a["has_source"][scene])),
                "index": torch.tensor(scene, dtype=torch.int64)}


def _valid(classes: np.ndarray, keys: np.ndarray, combo: tuple[int, ...], same_class: bool) -> bool:
    if len({keys[i] for i in combo}) < len(combo):
        return False
    n_cls = len({int(classes[i]) for i in combo})
    return n_cls == 1 if same_class else n_cls == len(combo)


def draw_mixtures(solo: SoloScenes, num_mix: int, count: int, seed: int,
                  same_class: bool = False) -> list[tuple[int, ...]]:
    """Up to ``count`` distinct tuples of ``num_mix`` positions into ``solo`` (see the module
    docstring); deterministic in ``seed``. ``same_class`` needs ``num_mix == 2``."""
    if num_mix < 2:
        raise ValueError(f"draw_mixtures: a mixture needs at least 2 sources, got {num_mix}")
    if same_class and num_mix != 2:
        raise ValueError("draw_mixtures: same-class mixtures have 2 sources (the paper's Fig. G)")
    rng = np.random.default_rng(seed)
    n = len(solo)
    if comb(n, num_mix) <= 200_000:  # small splits: every valid tuple, then a seeded choice
        valid = [c for c in combinations(range(n), num_mix)
                 if _valid(solo.classes, solo.audio_keys, c, same_class)]
        order = rng.permutation(len(valid))[:count]
        return [tuple(int(i) for i in rng.permutation(valid[j])) for j in order]
    seen: set[tuple[int, ...]] = set()
    out: list[tuple[int, ...]] = []
    for _ in range(1000 * count):
        if len(out) == count:
            break
        combo = tuple(int(i) for i in rng.choice(n, num_mix, replace=False))
        if tuple(sorted(combo)) not in seen and _valid(solo.classes, solo.audio_keys, combo,
                                                       same_class):
            seen.add(tuple(sorted(combo)))
            out.append(combo)
    return out


class MixDataset(Dataset):
    """Mixtures of ``num_mix`` scenes of ``solo``. Item: ``mixture`` (L,), ``sources`` (N, L),
    ``image`` (N, 3, H, W), ``clip`` (N, 3, K, h, w), (``appearance_feat`` (N, C)),
    ``classes`` (N,) and ``index`` (N,) scene indices in the split.

    ``mixtures`` (a list of position tuples): a fixed evaluation set; ``None``: training,
    random scenes (see the module docstring), ``length`` items per epoch (default
    ``len(solo)``).
    """

    def __init__(self, solo: SoloScenes, num_mix: int = 2,
                 mixtures: list[tuple[int, ...]] | None = None, length: int | None = None) -> None:
        if mixtures is not None and not mixtures:
            raise ValueError(f"MixDataset: no mixture could be drawn from {solo.dir}")
        if mixtures is None and len(set(solo.audio_keys)) < num_mix:
            raise ValueError(f"MixDataset: {solo.dir} has fewer than {num_mix} distinct recordings")
        if length is not None and length < 1:
            raise ValueError(f"MixDataset: length must be >= 1, got {length}")
        self.solo, self.num_mix, self.mixtures = solo, num_mix, mixtures
        self.length = len(solo) if length is None else int(length)
        self.class_names, self.num_classes = solo.class_names, solo.num_classes

    def __len__(self) -> int:
        return len(self.mixtures) if self.mixtures is not None else self.length

    def _draw(self) -> tuple[int, ...]:
        chosen: list[int] = []
        while len(chosen) < self.num_mix:
            j = int(torch.randint(len(self.solo), ()))
            if self.solo.audio_keys[j] not in {self.solo.audio_keys[i] for i in chosen}:
                chosen.append(j)
        return tuple(chosen)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"MixDataset: index {i} out of range ({len(self)} items)")
        combo = self.mixtures[i] if self.mixtures is not None else self._draw()
        sources = torch.stack([self.solo.wave(p) for p in combo])          # (N, L)
        visual = [self.solo.visual(p) for p in combo]
        item = {k: torch.stack([v[k] for v in visual]) for k in visual[0]}
        item.update(mixture=sources.sum(0), sources=sources,
                    classes=torch.tensor([int(self.solo.classes[p]) for p in combo]),
                    index=torch.tensor([int(self.solo.scenes[p]) for p in combo]))
        return item
