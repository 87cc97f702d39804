"""Decoding of user media: good files in many modes/formats, and the bad-input corpus.

Every bad input must raise MediaError/FileNotFoundError with a one-line message naming the file.
"""
from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avgn_lib.media import MediaError, read_audio, read_image, read_video, write_video


# ------------------------------------------------------------------------------ file builders


def tone(seconds: float, rate: int, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    wave = (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wave] * channels, axis=1) if channels > 1 else wave


def make_video(path: Path, seconds: float = 1.0, fps: int = 10, size: tuple[int, int] = (48, 64),
               audio: bool = True, rate: int = 16000) -> Path:
    """Tiny MP4: a white square moving over grey, plus (optionally) a 440 Hz AAC track."""
    import av

    h, w = size
    with av.open(str(path), mode="w") as out:
        vs = out.add_stream("mpeg4", rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        streams = [vs]
        if audio:
            aus = out.add_stream("aac", rate=rate, layout="mono")
            streams.append(aus)
        for i in range(int(seconds * fps)):
            frame = np.full((h, w, 3), 100, np.uint8)
            x = (i * 4) % (w - 10)
            frame[10:20, x:x + 10] = 255
            for p in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                out.mux(p)
        if audio:
            wave = tone(seconds, rate)[None]  # (1, L) for the planar mono layout
            chunk = 1024
            for start in range(0, wave.shape[1], chunk):
                af = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[:, start:start + chunk]),
                                                format="fltp", layout="mono")
                af.sample_rate = rate
                af.pts = start
                for p in aus.encode(af):
                    out.mux(p)
        for s in streams:
            for p in s.encode():
                out.mux(p)
    return path


def png_with_header_size(path: Path, width: int, height: int) -> Path:
    """A valid small PNG whose IHDR claims ``width`` x ``height`` (CRC fixed), for bomb tests."""
    Image.new("RGB", (4, 4)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def assert_names_file(exc: pytest.ExceptionInfo, path: Path) -> None:
    message = str(exc.value)
    assert str(path) in message
    assert "\n" not in message


# ------------------------------------------------------------------------------------- images


def test_read_image_modes(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)

    gray = np.full((20, 30), 77, np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_image(tmp_path / "gray.png")
    assert out.shape == (20, 30, 3) and (out == 77).all()

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:10, :, 3] = 255  # top opaque red, bottom transparent -> white
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    out = read_image(tmp_path / "rgba.png")
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[-1, -1]) == (255, 255, 255)

    Image.new("CMYK", (30, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg")
    out = read_image(tmp_path / "cmyk.jpg")
    assert out.shape == (20, 30, 3) and out[..., 0].mean() > 200 and out[..., 1].mean() < 60

    deep = np.full((20, 30), 65535, np.uint16)
    deep[:, :15] = 32896
    Image.fromarray(deep).save(tmp_path / "deep.png")  # uint16 -> mode I;16
    out = read_image(tmp_path / "deep.png")
    assert out[0, 0, 0] == 128 and out[0, -1, 0] == 255


def test_image_content_is_sniffed_not_extension(tmp_path):
    Image.new("RGB", (20, 20), (1, 2, 3)).save(tmp_path / "really_png.jpg", format="PNG")
    assert tuple(read_image(tmp_path / "really_png.jpg")[0, 0]) == (1, 2, 3)


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "truncated", "one_pixel", "huge"])
def test_bad_images(tmp_path, case):
    path = tmp_path / f"{case}.png"
    expected = MediaError
    if case == "missing":
        expected = FileNotFoundError
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(b"this is not an image at all" * 10)
    elif case == "truncated":
        noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path)
        path.write_bytes(path.read_bytes()[:2000])
    elif case == "one_pixel":
        Image.new("RGB", (1, 1)).save(path)
    elif case == "huge":
        png_with_header_size(path, 10_000, 8_000)  # 80 MP claimed; must fail before decoding
    with pytest.raises(expected) as exc:
        read_image(path)
    assert_names_file(exc, path)
    if case == "huge":
        assert "MP" in str(exc.value)


# -------------------------------------------------------------------------------------- audio


@pytest.mark.parametrize("fmt,ext", [("WAV", "wav"), ("FLAC", "flac"), ("OGG", "ogg"), ("MP3", "mp3")])
def test_read_audio_formats(tmp_path, fmt, ext):
    path = tmp_path / f"stereo.{ext}"
    sf.write(path, tone(0.5, 44100, channels=2), 44100, format=fmt)
    wave, rate = read_audio(path)
    assert rate == 44100 and wave.ndim == 1 and wave.dtype == np.float32
    assert abs(wave.shape[0] - 22050) < 3000  # mp3 adds encoder padding
    assert 0.3 < np.abs(wave).max() < 0.7


def test_audio_content_is_sniffed_not_extension(tmp_path):
    path = tmp_path / "really_flac.wav"
    sf.write(path, tone(0.2, 8000), 8000, format="FLAC")
    wave, rate = read_audio(path)
    assert rate == 8000 and wave.shape == (1600,)


@pytest.mark.parametrize("case", ["missing", "empty", "garbage", "header_only", "zero_length",
                                  "silent", "nan", "inf", "image_as_audio"])
def test_bad_audio(tmp_path, case):
    path = tmp_path / f"{case}.wav"
    expected = MediaError
    if case == "missing":
        expected = FileNotFoundError
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "garbage":
        path.write_bytes(bytes(range(256)) * 4)
    elif case == "header_only":
        sf.write(path, tone(0.5, 8000), 8000)
        path.write_bytes(path.read_bytes()[:20])
    elif case == "zero_length":
        sf.write(path, np.zeros(0, np.float32), 8000)
    elif case == "silent":
        sf.write(path, np.zeros(8000, np.float32), 8000)
    elif case in ("nan", "inf"):
        wave = tone(0.5, 8000)
        wave[100] = np.nan if case == "nan" else np.inf
        sf.write(path, wave, 8000, subtype="FLOAT")
    elif case == "image_as_audio":
        Image.new("RGB", (20, 20)).save(path, format="PNG")
    with pytest.raises(expected) as exc:
        read_audio(path)
    assert_names_file(exc, path)


# -------------------------------------------------------------------------------------- video


def test_read_video_frames_and_audio(tmp_path):
    path = make_video(tmp_path / "clip.mp4", seconds=1.0, fps=10)
    video = read_video(path, sample_rate=22050)
    assert (video.height, video.width) == (48, 64) and video.fps == pytest.approx(10)
    frames = list(video.frames())
    assert len(frames) == 10
    times = [t for t, _ in frames]
    assert times == sorted(times) and times[-1] == pytest.approx(0.9, abs=0.05)
    assert frames[0][1].shape == (48, 64, 3) and frames[0][1].dtype == np.uint8
    # 1 s of audio at the requested rate (AAC priming may add a few ms)
    assert video.sample_rate == 22050 and abs(video.audio.shape[0] - 22050) < 3000
    assert video.frame_at(0.55).shape == (48, 64, 3)


@pytest.mark.parametrize("case", ["no_audio", "truncated", "garbage", "audio_only"])
def test_bad_video(tmp_path, case):
    path = tmp_path / f"{case}.mp4"
    if case == "no_audio":
        make_video(path, audio=False)
    elif case == "truncated":
        make_video(path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    elif case == "garbage":
        path.write_bytes(b"\x00\x01garbage" * 100)
    elif case == "audio_only":
        path = tmp_path / "audio_only.wav"
        sf.write(path, tone(0.5, 8000), 8000)
    with pytest.raises(MediaError) as exc:
        video = read_video(path)
        list(video.frames())
    assert_names_file(exc, path)


def test_write_video_roundtrip_odd_size(tmp_path):
    frames = [np.full((31, 45, 3), 10 * i, np.uint8) for i in range(6)]
    codec = write_video(tmp_path / "out.mp4", iter(frames), fps=5)
    assert codec in ("libx264", "h264", "mpeg4")
    import av

    with av.open(str(tmp_path / "out.mp4")) as container:
        decoded = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(decoded) == 6 and decoded[0].shape == (32, 46, 3)
    assert abs(int(decoded[-1][5, 5].mean()) - 50) < 8
