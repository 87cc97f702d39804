"""Audio loader and spectrogram front end, on files written to tmp_path."""
import numpy as np
import pytest
import soundfile as sf
import torch
from scipy import signal

from avgn_lib.data.audio import SpecConfig, fit_length, load_audio, log_spectrogram


def _tone(rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 440.0 * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


def test_load_stereo_wav_resampled_to_mono(tmp_path):
    path = tmp_path / "tone.wav"
    sf.write(path, _tone(44100, 1.0, channels=2), 44100)
    wave = load_audio(path, sample_rate=22050)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.shape[0] - 22050) <= 1
    # 440 Hz survives resampling: the spectral peak stays at 440 Hz.
    freqs = np.fft.rfftfreq(wave.shape[0], 1 / 22050)
    assert abs(freqs[np.abs(np.fft.rfft(wave)).argmax()] - 440) < 2


@pytest.mark.parametrize("fmt", ["ogg", "flac"])
def test_load_compressed_formats(tmp_path, fmt):
    path = tmp_path / f"tone.{fmt}"
    sf.write(path, _tone(22050, 0.5), 22050, format=fmt.upper())
    wave = load_audio(path)
    assert abs(wave.shape[0] - 11025) < 1100 and np.abs(wave).max() > 0.3


def test_missing_file_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")


def test_corrupt_and_empty_raise_naming_file(tmp_path):
    bad = tmp_path / "garbage.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wave file" * 3)
    with pytest.raises(ValueError, match="garbage.wav"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0, 1), dtype=np.float32), 22050)
    with pytest.raises(ValueError, match="empty.wav"):
        load_audio(empty)


def test_nan_samples_raise(tmp_path):
    path = tmp_path / "nan.wav"
    data = _tone(22050, 0.1).astype(np.float32)
    data[10] = np.nan
    sf.write(path, data, 22050, subtype="FLOAT")
    with pytest.raises(ValueError, match="NaN"):
        load_audio(path)


def test_fit_length_crop_and_pad():
    w = np.arange(10, dtype=np.float32)
    assert fit_length(w, 4).tolist() == [3, 4, 5, 6]
    assert fit_length(w, 4, offset=0).tolist() == [0, 1, 2, 3]
    padded = fit_length(w, 12, offset=1)
    assert padded.shape == (12,) and padded[0] == 0 and padded[1:11].tolist() == w.tolist()
    with pytest.raises(ValueError):
        fit_length(w, 4, offset=7)


def test_paper_preset_matches_scipy_and_shape():
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal(66150)).astype(np.float32)
    cfg = SpecConfig.paper()
    spec = log_spectrogram(x, cfg)
    assert spec.shape == (257, 300) and cfg.shape == (257, 300)
    _, _, ref = signal.spectrogram(x, 22050, nperseg=512, noverlap=274)
    assert ref.shape == (257, 276)
    np.testing.assert_allclose(spec[:, :276].numpy(), np.log(ref + 1e-7), atol=1e-4)
    assert torch.all(spec[:, 276:] == spec[:, 276:].min())  # padded with the log floor


def test_cpu_preset_batched_equals_unbatched():
    cfg = SpecConfig.cpu()
    x = torch.randn(3, cfg.num_samples) * 0.1
    batched = log_spectrogram(x, cfg)
    assert batched.shape == (3, 128, 128) and batched.dtype == torch.float32
    single = log_spectrogram(x[1], cfg)
    torch.testing.assert_close(batched[1], single, rtol=1e-4, atol=1e-4)


def test_spectrogram_is_louder_for_louder_input():
    cfg = SpecConfig.cpu()
    # Level typical of our RMS-normalized clips; +20 dB is log(100) = 4.6 above the eps floor.
    x = torch.randn(cfg.num_samples) * 0.05
    assert (log_spectrogram(10 * x, cfg) - log_spectrogram(x, cfg)).mean() > 3.5


def _small_soundfont():
    pretty_midi = pytest.importorskip("pretty_midi")
    from pathlib import Path

    path = Path(pretty_midi.__file__).parent / "TimGM6mb.sf2"
    if not path.is_file():
        pytest.skip("pretty_midi ships no TimGM6mb.sf2 here")
    return path


def test_soundfont_pool_is_deterministic_and_audible():
    from avgn_lib.data.render import render_pool

    path = _small_soundfont()
    a = render_pool(path, ["violin", "drum", "no_such_class"], 2, 1.0, seed=3)
    b = render_pool(path, ["violin", "drum", "no_such_class"], 2, 1.0, seed=3)
    assert sorted(a) == ["drum", "violin"]  # classes without a GM voice are skipped
    assert a["violin"].shape == (2, 22050) and a["violin"].dtype == np.float32
    np.testing.assert_array_equal(a["violin"], b["violin"])
    assert not np.array_equal(a["violin"][0], a["violin"][1])  # a new melody per clip
    assert np.sqrt((a["drum"] ** 2).mean()) > 0.005


def test_mix_normalizes_loudness_and_limits_peak():
    from avgn_lib.data.audio import mix, rms

    rng = np.random.default_rng(0)
    quiet = 0.001 * np.sin(np.arange(22050) / 5.0).astype(np.float32)
    loud = 0.9 * np.sign(np.sin(np.arange(22050) / 50.0)).astype(np.float32)
    out = mix([quiet, loud], 0.1, rng, noise_snr_db=30.0)
    assert abs(rms(out) - 0.1) < 1e-3 and np.abs(out).max() <= 0.99
    noise_only = mix([], 0.1, rng, noise_snr_db=20.0, length=1000)
    assert noise_only.shape == (1000,) and abs(rms(noise_only) - 0.1) < 1e-3
    with pytest.raises(ValueError):
        mix([], 0.1, rng)
