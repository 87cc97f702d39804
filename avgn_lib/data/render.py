"""Soundfont rendering of random melodies and rhythms for instrument classes (tinysoundfont).

Each instrument class maps to a General MIDI program (melodic) or to percussion keys (drum
channel). A pool of clips per (soundfont, class) is rendered once; scenes then sample from it, so
the cost is bounded whatever the number of scenes.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Voice:
    """How a class is played: a GM program and pitch range, or drum-kit keys."""

    program: int = 0
    low: int = 48
    high: int = 72
    drum_keys: tuple[int, ...] = ()

    @property
    def is_drum(self) -> bool:
        return bool(self.drum_keys)


# General MIDI proxies for the instrument vocabulary (GCompris names and MUSIC-21 names).
# Ranges keep each instrument near its natural register so timbre, not pitch, identifies it.
VOICES: dict[str, Voice] = {
    "accordion": Voice(21, 53, 77), "acoustic_guitar": Voice(24, 40, 72),
    "bagpipe": Voice(109, 60, 76), "banjo": Voice(105, 50, 74),
    "bassoon": Voice(70, 34, 58), "bongo": Voice(drum_keys=(60, 61)),
    "castanets": Voice(drum_keys=(85,)), "cello": Voice(42, 36, 60),
    "clarinet": Voice(71, 50, 77), "congas": Voice(drum_keys=(62, 63, 64)),
    "cymbal": Voice(drum_keys=(49, 51, 52, 57)), "drum": Voice(drum_keys=(35, 36, 38, 41, 45)),
    "drum_kit": Voice(drum_keys=(35, 36, 38, 42, 46, 49)), "electric_bass": Voice(33, 28, 52),
    "electric_guitar": Voice(29, 40, 72), "erhu": Voice(110, 55, 84),
    "flute": Voice(73, 60, 91), "flute_traversiere": Voice(73, 60, 91),
    "guitar": Voice(24, 40, 72), "guzheng": Voice(107, 48, 84), "harmonica": Voice(22, 60, 84),
    "harp": Voice(46, 36, 84), "horn": Voice(60, 41, 72), "french_horn": Voice(60, 41, 72),
    "maracas": Voice(drum_keys=(70,)),
    "organ": Voice(19, 36, 84), "piano": Voice(0, 36, 84), "pipa": Voice(106, 48, 84),
    "saxophone": Voice(65, 49, 80), "snare_drum": Voice(drum_keys=(38, 40)),
    "tambourine": Voice(drum_keys=(54,)), "timpani": Voice(47, 40, 57),
    "triangle": Voice(drum_keys=(81, 80)), "trombone": Voice(57, 40, 70),
    "trumpet": Voice(56, 55, 82), "tuba": Voice(58, 28, 53), "ukulele": Voice(24, 60, 81),
    "violin": Voice(40, 55, 88), "xylophone": Voice(13, 65, 96),
}

DRUM_CHANNEL = 9


def _melody_events(voice: Voice, seconds: float, rng: np.random.Generator) -> list[tuple]:
    """Random notes as (start_s, end_s, key, velocity), with tempo, pitch and velocity varied."""
    tempo = rng.uniform(70, 160)  # beats per minute
    beat = 60.0 / tempo
    scale = np.array([0, 2, 4, 5, 7, 9, 11])  # major scale; a random root varies the key
    root = int(rng.integers(voice.low, max(voice.low + 1, voice.high - 12)))
    base_velocity = rng.uniform(60, 115)
    events, t = [], float(rng.uniform(0, 0.25))
    while t < seconds:
        length = beat * float(rng.choice([0.5, 1.0, 1.0, 2.0]))
        if voice.is_drum:
            key = int(rng.choice(voice.drum_keys))
            end = t + 0.1
        else:
            key = root + int(scale[rng.integers(0, 7)]) + 12 * int(rng.integers(0, 2))
            key = int(np.clip(key, voice.low, voice.high))
            end = t + length * rng.uniform(0.6, 1.0)
        velocity = int(np.clip(base_velocity + rng.normal(0, 10), 30, 127))
        events.append((t, min(end, seconds), key, velocity))
        t += length
    return events


class SoundfontRenderer:
    """Renders random clips for a class from one soundfont file at ``sample_rate``."""

    def __init__(self, path: str | Path, sample_rate: int = 22050):
        import tinysoundfont

        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: soundfont not found")
        self.sample_rate = sample_rate
        self._synth = tinysoundfont.Synth(samplerate=sample_rate)
        try:
            self._sfid = self._synth.sfload(str(self.path))
        except Exception as err:  # noqa: BLE001 - the binding raises generic errors
            raise ValueError(f"{self.path}: cannot load soundfont ({err})") from err

    def render(self, cls: str, seconds: float, rng: np.random.Generator) -> np.ndarray:
        """A random melody (or rhythm) of class ``cls``: mono float32 ``(round(seconds*sr),)``."""
        if cls not in VOICES:
            raise ValueError(f"no General MIDI voice for class {cls!r}; known: {sorted(VOICES)}")
        voice = VOICES[cls]
        synth = self._synth
        synth.notes_off()
        synth.sounds_off()
        if voice.is_drum:
            channel = DRUM_CHANNEL
            synth.program_select(channel, self._sfid, 128, 0, True)
        else:
            channel = 0
            synth.program_select(channel, self._sfid, 0, voice.program)
        total = int(round(seconds * self.sample_rate))
        # Collect note-on/off times in samples, then render the gaps between them.
        changes = []
        for start, end, key, vel in _melody_events(voice, seconds, rng):
            changes.append((int(start * self.sample_rate), 1, key, vel))
            changes.append((int(end * self.sample_rate), 0, key, 0))
        changes.sort(key=lambda c: (c[0], c[1]))
        chunks, pos = [], 0
        for at, on, key, vel in changes:
            at = min(at, total)
            if at > pos:
                chunks.append(self._generate(at - pos))
                pos = at
            if on:
                synth.noteon(channel, key, vel)
            else:
                synth.noteoff(channel, key)
        if pos < total:
            chunks.append(self._generate(total - pos))
        synth.notes_off()
        return np.concatenate(chunks)[:total].astype(np.float32)

    def _generate(self, n: int) -> np.ndarray:
        stereo = np.frombuffer(self._synth.generate(n), dtype=np.float32).reshape(-1, 2)
        return stereo.mean(axis=1)


def render_pool(path: str | Path, classes: list[str], per_class: int, seconds: float,
                seed: int, sample_rate: int = 22050,
                min_rms: float = 0.005) -> dict[str, np.ndarray]:
    """Render ``per_class`` clips for each class in ``classes`` -> {class: (per_class, L)}.

    A class whose clips are nearly silent in this soundfont (median RMS < ``min_rms``, e.g. the
    MuseScore-Lite piano) is left out, so it never feeds silence labelled as an instrument.
    """
    renderer = SoundfontRenderer(path, sample_rate)
    pools: dict[str, np.ndarray] = {}
    for k, cls in enumerate(classes):
        if cls not in VOICES:
            continue
        rng = np.random.default_rng([seed, k, per_class])
        clips = np.stack([renderer.render(cls, seconds, rng) for _ in range(per_class)])
        if np.median(np.sqrt((clips ** 2).mean(axis=1))) >= min_rms:
            pools[cls] = clips
    return pools
