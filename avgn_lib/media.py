"""Decoding of user-supplied images, audio and video, with one-line errors a user can act on.

Every problem is raised as :class:`MediaError` (a ``ValueError``) whose message starts with the file
path and states the problem, e.g. ``clip.wav: audio contains NaN or infinite samples``. A missing
file is a ``FileNotFoundError`` worded the same way. Nothing here ever substitutes another input.

Decisions (documented here because callers rely on them):

* **Formats are sniffed from content, not the extension.** Pillow, libsndfile and FFmpeg all read
  the file header, so ``photo.wav`` that really holds a PNG is rejected as "not a decodable audio
  file", and ``song.bin`` that holds FLAC is read fine.
* **Images** of any mode are converted to 8-bit RGB: grayscale is replicated, RGBA / LA / palette
  transparency is composited over white (transparent pixels are usually "no content"), CMYK goes
  through Pillow's conversion, 16-bit grayscale is scaled by 1/257 rather than clipped. EXIF
  orientation is applied. Images smaller than ``MIN_IMAGE_SIDE`` px on a side are refused (nothing
  to localize in one pixel); images above ``MAX_IMAGE_PIXELS`` (50 MP) are refused *before*
  decoding, from the header size, which also guards against decompression bombs.
* **Audio** of any channel count and rate is averaged to mono float32; resampling to the model's
  rate happens in :mod:`avgn_lib.inference`. Empty audio, NaN/inf samples and all-silent audio
  (peak exactly 0, usually a muted track) are errors: a localization map for silence is
  meaningless. Short / long audio is *not* an error here: inference pads or windows it.
* **Video** is decoded with PyAV; frames are yielded lazily with timestamps, the audio track is
  decoded up front and resampled to the requested rate. A video without an audio track is an error.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from fractions import Fraction
from typing import Iterable, Iterator

import numpy as np

MIN_IMAGE_SIDE = 16
MAX_IMAGE_PIXELS = 50_000_000


class MediaError(ValueError):
    """A user media file cannot be used; the message names the file and the problem."""


def _fail(path: Path, problem: str) -> MediaError:
    # Keep messages on one line: decoder errors sometimes carry newlines.
    return MediaError(f"{path}: {' '.join(problem.split())}")


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: file not found")
    if not path.is_file():
        raise _fail(path, "is not a regular file")
    if path.stat().st_size == 0:
        raise _fail(path, "file is empty (0 bytes)")
    return path


# --------------------------------------------------------------------------------------- images


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 of shape (H, W, 3). See the module docstring for rules."""
    from PIL import Image, ImageOps

    path = _check_file(path)
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between MAX_IMAGE_PIXELS and 2x; make every bomb an error.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise _fail(path, f"image is {width}x{height} = {width * height / 1e6:.0f} MP, "
                                      f"above the {MAX_IMAGE_PIXELS / 1e6:.0f} MP limit; "
                                      "downscale it first")
                if min(width, height) < MIN_IMAGE_SIDE:
                    raise _fail(path, f"image is {width}x{height} px; need at least "
                                      f"{MIN_IMAGE_SIDE} px on each side")
                img.load()
                img = ImageOps.exif_transpose(img)
                rgb = _to_rgb(img)
    except MediaError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise _fail(path, f"refused as a possible decompression bomb ({exc})") from None
    except Image.UnidentifiedImageError:
        raise _fail(path, "not a decodable image file (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise _fail(path, f"corrupt or truncated image ({exc})") from None
    return rgb


def _to_rgb(img) -> np.ndarray:
    """Any Pillow mode -> uint8 (H, W, 3)."""
    from PIL import Image

    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16/32-bit grayscale: convert("L") would clip at 255, so rescale explicitly.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        arr = np.nan_to_num(arr) if np.isfinite(arr).any() else np.zeros_like(arr)
        scale = 1.0 if arr.max() <= 1.0 else 255.0
        gray = np.clip(np.round(arr / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))


# ---------------------------------------------------------------------------------------- audio


def _check_wave(path: Path, wave: np.ndarray) -> np.ndarray:
    """Shared checks for decoded audio of shape (L, channels) or (L,) -> mono float32 (L,)."""
    if wave.size == 0 or wave.shape[0] == 0:
        raise _fail(path, "audio has no samples (zero length)")
    if not np.isfinite(wave).all():
        raise _fail(path, "audio contains NaN or infinite samples")
    mono = wave.mean(axis=1) if wave.ndim == 2 else wave
    mono = mono.astype(np.float32, copy=False)
    if float(np.max(np.abs(mono))) == 0.0:
        raise _fail(path, "audio is completely silent (every sample is 0); nothing to localize")
    return mono


def read_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Decode an audio file (wav/ogg/flac/mp3/...) to mono float32 (L,) at its own rate.

    Returns ``(wave, sample_rate)``. Multi-channel audio is averaged to mono.
    """
    import soundfile as sf

    path = _check_file(path)
    try:
        wave, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except sf.LibsndfileError as exc:
        raise _fail(path, f"not a decodable audio file or corrupt audio ({exc.error_string})") from None
    except (RuntimeError, ValueError, TypeError) as exc:
        raise _fail(path, f"not a decodable audio file or corrupt audio ({exc})") from None
    if rate <= 0:
        raise _fail(path, f"audio declares an invalid sample rate {rate}")
    return _check_wave(path, wave), int(rate)


# ---------------------------------------------------------------------------------------- video


@dataclass
class Video:
    """A decoded video: lazy frames plus its whole audio track.

    ``audio`` is mono float32 (L,) at ``sample_rate``; ``frames()`` yields ``(time_s, frame)``
    with frame uint8 (H, W, 3), and can be called again to re-decode from the start.
    """

    path: Path
    audio: np.ndarray
    sample_rate: int
    fps: float
    duration: float
    width: int
    height: int

    def frames(self) -> Iterator[tuple[float, np.ndarray]]:
        import av

        try:
            with av.open(str(self.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    time = float(frame.time) if frame.time is not None else 0.0
                    yield time, frame.to_ndarray(format="rgb24")
        except av.FFmpegError as exc:
            raise _fail(self.path, f"corrupt or truncated video stream ({exc})") from None

    def frame_at(self, time: float) -> np.ndarray:
        """The last frame whose timestamp is <= ``time`` (the first frame if none), (H, W, 3)."""
        chosen = None
        for t, frame in self.frames():
            if chosen is not None and t > time:
                break
            chosen = frame
        if chosen is None:
            raise _fail(self.path, "video has no decodable frames")
        return chosen


def read_video(path: str | Path, sample_rate: int = 22050) -> Video:
    """Open a video (mp4/webm/mov/...) with PyAV: checks streams, decodes audio at ``sample_rate``.

    Frames are decoded lazily through :meth:`Video.frames`; the first frame is decoded here so a
    file with a broken video stream fails at once.
    """
    import av

    path = _check_file(path)
    try:
        container = av.open(str(path))
    except av.FFmpegError as exc:
        raise _fail(path, f"not a decodable video file ({exc})") from None
    with container:
        if not container.streams.video:
            raise _fail(path, "file has no video stream")
        if not container.streams.audio:
            raise _fail(path, "video has no audio track; nothing to localize")
        vstream = container.streams.video[0]
        fps = float(vstream.average_rate or vstream.guessed_rate or 0) or 25.0
        width, height = vstream.codec_context.width, vstream.codec_context.height
        duration = float(container.duration / 1e6) if container.duration else 0.0
        audio = _decode_audio(path, container, sample_rate)
    video = Video(path, audio, sample_rate, fps, duration, width, height)
    first = next(video.frames(), None)
    if first is None:
        raise _fail(path, "video has no decodable frames")
    video.height, video.width = first[1].shape[:2]
    return video


def _decode_audio(path: Path, container, sample_rate: int) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[np.ndarray] = []
    try:
        for frame in container.decode(container.streams.audio[0]):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1))
        for out in resampler.resample(None):
            chunks.append(out.to_ndarray().reshape(-1))
    except av.FFmpegError as exc:
        raise _fail(path, f"corrupt or truncated audio track ({exc})") from None
    wave = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    return _check_wave(path, wave.astype(np.float32, copy=False))


def write_video(path: str | Path, frames: Iterable[np.ndarray], fps: float,
                audio: np.ndarray | None = None, sample_rate: int | None = None) -> str:
    """Encode uint8 (H, W, 3) frames to an MP4; returns the video codec used (h264 if present,
    else mpeg4). Odd sizes are padded by one black row/column since yuv420p needs even sizes.

    ``audio`` (mono float (L,) at ``sample_rate``) is muxed as an AAC track, so the overlay plays
    with the sound it was computed from.
    """
    import av

    codec = next((c for c in ("libx264", "h264", "mpeg4") if _has_encoder(c)), None)
    if codec is None:
        raise RuntimeError("no H.264 or MPEG-4 encoder available in this PyAV build")
    if audio is not None and (sample_rate is None or sample_rate <= 0):
        raise ValueError(f"{path}: audio needs a positive sample_rate, got {sample_rate}")
    rate = Fraction(fps).limit_denominator(1000) if fps > 0 else Fraction(25)
    with av.open(str(path), mode="w") as container:
        stream = None
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=int(sample_rate), layout="mono")
        for frame in frames:
            h, w = frame.shape[:2]
            if stream is None:
                stream = container.add_stream(codec, rate=rate)
                stream.width, stream.height = w + w % 2, h + h % 2
                stream.pix_fmt = "yuv420p"
            padded = np.zeros((stream.height, stream.width, 3), np.uint8)
            padded[:h, :w] = frame[: stream.height, : stream.width]
            for packet in stream.encode(av.VideoFrame.from_ndarray(padded, format="rgb24")):
                container.mux(packet)
        if stream is None:
            raise ValueError(f"{path}: no frames to write")
        for packet in stream.encode():
            container.mux(packet)
        if sound is not None:
            _write_audio(container, sound, np.asarray(audio, np.float32), int(sample_rate))
    return codec


def _write_audio(container, stream, wave: np.ndarray, sample_rate: int) -> None:
    """Encode mono float32 (L,) into ``stream`` in 1024-sample frames (AAC's frame size)."""
    import av

    wave = np.clip(wave, -1.0, 1.0)
    step = stream.codec_context.frame_size or 1024
    for start in range(0, len(wave), step):
        chunk = wave[start:start + step]
        frame = av.AudioFrame.from_ndarray(chunk[None], format="fltp", layout="mono")
        frame.sample_rate = sample_rate
        frame.pts = start
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def _has_encoder(name: str) -> bool:
    import av

    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV raises different types across versions
        return False
    return True
