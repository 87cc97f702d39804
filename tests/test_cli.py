"""`python -m avgn_lib localize` on generated files, and its handling of bad input.

Most cases call ``main(argv)`` in-process (fast); two run a real subprocess to check the exit
status and that no traceback reaches the terminal.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from avgn_lib import annotate
from avgn_lib.__main__ import main
from avgn_lib.calibration import CALIBRATION_FORMAT, checkpoint_digest
from test_inference import write_tiny_checkpoint
from test_media import make_video, png_with_header_size, tone

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    ckpt = write_tiny_checkpoint(root / "tiny.pt")
    image = root / "scene.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (45, 70, 3), dtype=np.uint8)).save(image)
    audio = root / "sound.wav"
    sf.write(audio, tone(4.0, 16000, channels=2), 16000)
    return {"root": root, "ckpt": ckpt, "image": image, "audio": audio}


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_image_audio_outputs(files, tmp_path, capsys):
    out = tmp_path / "out"
    code, stdout, err = run_cli(["localize", "--checkpoint", files["ckpt"], "--image", files["image"],
                                 "--audio", files["audio"], "--sources", 2, "--out", out], capsys)
    assert code == 0, err
    doc = json.loads((out / "result.json").read_text())
    assert doc["mode"] == "class-agnostic" and len(doc["sources"]) == 2
    assert doc["image_size_hw"] == [45, 70] and doc["audio_window_s"] == [0.0, 3.0]
    assert set(doc["probabilities"]) == {"cat", "dog", "violin"}
    for src in doc["sources"]:
        png = np.asarray(Image.open(out / src["overlay"]))
        assert png.shape == (45, 70, 3)
        x1, y1, x2, y2 = src["box_xyxy"]
        assert 0 <= x1 < x2 <= 70 and 0 <= y1 < y2 <= 45
        assert set(src["stats"]) >= {"max", "mean", "area_above"}
        assert src["box_fraction"] == pytest.approx((x2 - x1) * (y2 - y1) / (45 * 70))
        assert src["class"] in stdout


def test_oracle_classes(files, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(["localize", "--checkpoint", files["ckpt"], "--image", files["image"],
                            "--audio", files["audio"], "--classes", "violin,dog", "--out", out], capsys)
    assert code == 0, err
    doc = json.loads((out / "result.json").read_text())
    assert doc["mode"] == "oracle" and [s["class"] for s in doc["sources"]] == ["violin", "dog"]


def test_video_writes_mp4(files, tmp_path, capsys):
    import av

    clip = make_video(tmp_path / "clip.mp4", seconds=1.0, fps=8)
    out = tmp_path / "out"
    code, _, err = run_cli(["localize", "--checkpoint", files["ckpt"], "--video", clip,
                            "--sources", 2, "--out", out], capsys)
    assert code == 0, err
    doc = json.loads((out / "result.json").read_text())
    assert doc["mp4_codec"] in ("libx264", "h264", "mpeg4") and len(doc["sources"]) == 2
    with av.open(str(out / doc["mp4"])) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 8
    assert frames[0].shape == (48, 2 * 64, 3)  # one panel per source, side by side
    # The overlay carries the input's sound (make_video writes a tone track).
    with av.open(str(out / doc["mp4"])) as container:
        assert len(container.streams.audio) == 1
        sound = np.concatenate([f.to_ndarray().reshape(-1) for f in container.decode(audio=0)])
    assert np.abs(sound).max() > 0.01


def _bad_inputs(files: dict, tmp: Path) -> dict[str, tuple[list, Path]]:
    """name -> (argv, the file the message must name)."""
    ck, img, snd = files["ckpt"], files["image"], files["audio"]
    trunc_img = tmp / "trunc.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(trunc_img)
    trunc_img.write_bytes(trunc_img.read_bytes()[:1500])
    tiny_img = tmp / "dot.png"
    Image.new("RGB", (1, 1)).save(tiny_img)
    huge_img = png_with_header_size(tmp / "huge.png", 12_000, 9_000)
    silent = tmp / "silent.wav"
    sf.write(silent, np.zeros(16000, np.float32), 16000)
    nan = tmp / "nan.wav"
    wave = tone(1.0, 16000)
    wave[5] = np.nan
    sf.write(nan, wave, 16000, subtype="FLOAT")
    empty = tmp / "empty.wav"
    sf.write(empty, np.zeros(0, np.float32), 16000)
    garbage = tmp / "noise.mp3"
    garbage.write_bytes(b"\xff\x00junk" * 50)
    no_audio = make_video(tmp / "mute.mp4", audio=False)
    trunc_vid = make_video(tmp / "cut.mp4")
    trunc_vid.write_bytes(trunc_vid.read_bytes()[:400])
    tampered = tmp / "tampered.pt"
    tampered.write_bytes(ck.read_bytes()[:-5000])
    missing = tmp / "missing.png"
    base = ["localize", "--checkpoint", ck, "--out", tmp / "o"]
    return {
        "missing_image": (base + ["--image", missing, "--audio", snd], missing),
        "truncated_image": (base + ["--image", trunc_img, "--audio", snd], trunc_img),
        "one_pixel_image": (base + ["--image", tiny_img, "--audio", snd], tiny_img),
        "huge_image": (base + ["--image", huge_img, "--audio", snd], huge_img),
        "silent_audio": (base + ["--image", img, "--audio", silent], silent),
        "nan_audio": (base + ["--image", img, "--audio", nan], nan),
        "empty_audio": (base + ["--image", img, "--audio", empty], empty),
        "garbage_audio": (base + ["--image", img, "--audio", garbage], garbage),
        "video_without_audio": (base + ["--video", no_audio], no_audio),
        "truncated_video": (base + ["--video", trunc_vid], trunc_vid),
        "tampered_checkpoint": (["localize", "--checkpoint", tampered, "--image", img, "--audio",
                                 snd, "--out", tmp / "o"], tampered),
        "unknown_class": (base + ["--image", img, "--audio", snd, "--classes", "tuba"], Path("tuba")),
    }


CASES = ["missing_image", "truncated_image", "one_pixel_image", "huge_image", "silent_audio",
         "nan_audio", "empty_audio", "garbage_audio", "video_without_audio", "truncated_video",
         "tampered_checkpoint", "unknown_class"]


@pytest.fixture(scope="module")
def corpus(files, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bad")
    return tmp, _bad_inputs(files, tmp)


@pytest.mark.parametrize("case", CASES)
def test_bad_inputs_one_line_no_traceback(corpus, capsys, case):
    tmp, cases = corpus
    argv, named = cases[case]
    code, stdout, err = run_cli(argv, capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and str(named) in lines[0], err
    assert "Traceback" not in err
    assert not (tmp / "o" / "result.json").exists()


@pytest.mark.parametrize("argv", [
    ["localize", "--checkpoint", "x.pt", "--out", "o"],  # neither video nor image+audio
    ["localize", "--checkpoint", "x.pt", "--image", "a.png", "--out", "o"],  # image without audio
    ["localize", "--checkpoint", "x.pt", "--video", "v.mp4", "--image", "a.png", "--audio", "b.wav",
     "--out", "o"],
    ["localize", "--checkpoint", "x.pt", "--video", "v.mp4", "--sources", "2", "--classes", "a",
     "--out", "o"],
    ["localize", "--checkpoint", "x.pt", "--video", "v.mp4", "--sources", "two", "--out", "o"],
    ["frobnicate"],
    [],
])
def test_argument_errors_are_one_line(argv, capsys):
    code, _, err = run_cli(argv, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.slow
def test_subprocess_exit_codes(files, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEjunk")
    cmd = [sys.executable, "-m", "avgn_lib", "localize", "--checkpoint", str(files["ckpt"]),
           "--image", str(files["image"]), "--audio", str(bad), "--out", str(tmp_path / "o")]
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and str(bad) in proc.stderr
    good = cmd[:-4] + ["--audio", str(files["audio"]), "--out", str(tmp_path / "ok")]
    proc = subprocess.run(good, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ok" / "result.json").is_file()


# ------------------------------------------------------------------- how sure the output is


def _calibration(path: Path, ckpt: Path, presence: float, box: float = 0.5) -> Path:
    path.write_text(json.dumps({"format": CALIBRATION_FORMAT, "presence_threshold": presence,
                                "map_threshold": box, "checkpoint": str(ckpt),
                                "checkpoint_sha1": checkpoint_digest(ckpt)}))
    return path


def _localize(files, out, *extra, capsys):
    return run_cli(["localize", "--checkpoint", files["ckpt"], "--image", files["image"],
                    "--audio", files["audio"], "--out", out, *extra], capsys)


@pytest.mark.parametrize("presence, verdict", [(0.01, "confident"), (0.99, "unsure")])
def test_every_class_gets_a_probability_and_a_verdict(files, tmp_path, capsys, presence, verdict):
    calib = _calibration(tmp_path / "cal.json", files["ckpt"], presence)
    code, stdout, err = _localize(files, tmp_path / "out", "--calibration", calib, capsys=capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["presence_threshold"] == presence and doc["calibration"]["calibrated"]
    assert [c["class"] for c in doc["classes"]] == list(doc["probabilities"])  # ranked
    assert {c["verdict"] for c in doc["classes"]} == {verdict}
    assert {s["verdict"] for s in doc["sources"]} == {verdict}
    assert doc["summary"].startswith(verdict)
    for name in ("cat", "dog", "violin"):
        assert any(name in line and verdict in line for line in stdout.splitlines())
    if verdict == "unsure":
        # Nothing is confident: one map (the most likely class), plainly not an answer.
        assert len(doc["sources"]) == 1 and "not an answer" in stdout
    assert doc["threshold"] == 0.5 and "note:" not in err


def test_without_calibration_the_fallback_is_announced(files, tmp_path, capsys):
    code, _, err = _localize(files, tmp_path / "out", capsys=capsys)
    assert code == 0
    assert "note: no calibration" in err and "0.5" in err
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["calibration"]["calibrated"] is False and doc["presence_threshold"] == 0.5


def test_a_calibration_of_other_weights_is_not_used(files, tmp_path, capsys):
    other = write_tiny_checkpoint(tmp_path / "other.pt", seed=3)
    calib = _calibration(tmp_path / "cal.json", other, 0.01)
    code, _, err = _localize(files, tmp_path / "out", "--calibration", calib, capsys=capsys)
    assert code == 2 and "another checkpoint" in err and len(err.strip().splitlines()) == 1


def test_calibration_next_to_the_checkpoint_is_found(files, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    ckpt = folder / "best.pt"
    ckpt.write_bytes(files["ckpt"].read_bytes())
    _calibration(folder / "calibration.json", ckpt, 0.01, box=0.8)
    code, _, err = run_cli(["localize", "--checkpoint", ckpt, "--image", files["image"], "--audio",
                            files["audio"], "--out", tmp_path / "out"], capsys)
    assert code == 0 and "note:" not in err
    doc = json.loads((tmp_path / "out" / "result.json").read_text())
    assert doc["threshold"] == 0.8 and doc["calibration"]["source"] == str(folder / "calibration.json")


def test_short_audio_is_padded_with_a_warning_and_its_real_window(files, tmp_path, capsys):
    short = tmp_path / "blip.wav"
    sf.write(short, tone(0.2, 16000), 16000)
    out = tmp_path / "out"
    code, _, err = run_cli(["localize", "--checkpoint", files["ckpt"], "--image", files["image"],
                            "--audio", short, "--out", out], capsys)
    assert code == 0, err
    assert "warning:" in err and "0.20 s" in err and "padded" in err
    doc = json.loads((out / "result.json").read_text())
    assert doc["padded"] is True and doc["audio_duration_s"] == pytest.approx(0.2)
    assert doc["audio_window_s"] == pytest.approx([0.0, 0.2])
    long_doc = tmp_path / "long"
    code, _, err = run_cli(["localize", "--checkpoint", files["ckpt"], "--image", files["image"],
                            "--audio", files["audio"], "--out", long_doc], capsys)
    assert "warning:" not in err
    assert json.loads((long_doc / "result.json").read_text())["padded"] is False


def test_more_sources_than_classes_is_an_error(files, tmp_path, capsys):
    code, _, err = _localize(files, tmp_path / "out", "--sources", 99, capsys=capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "99" in err and "3 classes" in err
    assert not (tmp_path / "out").exists()


def test_a_wav_passed_as_checkpoint_is_not_an_avgn_checkpoint(files, tmp_path, capsys):
    code, _, err = run_cli(["localize", "--checkpoint", files["audio"], "--image", files["image"],
                            "--audio", files["audio"], "--out", tmp_path / "out"], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{files['audio']}: not an avgn checkpoint" in err


def _label_height(picture: np.ndarray) -> int:
    """Rows of the black label strip at the top-left corner."""
    return int(np.argmax(~(picture[:, 0] == 0).all(axis=1)))


@pytest.mark.parametrize("shape", [(45, 70), (600, 800), (3000, 4000)])
def test_labels_and_lines_scale_with_the_image(shape):
    image = np.full((*shape, 3), 200, np.uint8)
    height = _label_height(annotate.draw_label(image, "violin p=0.91 (confident)"))
    # About 1/25 of the shorter side plus margins, and never below the 11 px bitmap size.
    assert max(11, shape[0] / 25) <= height <= max(24, shape[0] / 10)
    assert annotate.line_width(shape) == max(2, round(min(shape) / 250))
    boxed = annotate.draw_box(image, (10, 10, shape[1] - 10, shape[0] - 10), (255, 0, 0))
    red = (boxed[shape[0] // 2, :, 0] == 255) & (boxed[shape[0] // 2, :, 1] == 0)
    assert red.sum() == 2 * annotate.line_width(shape)  # left and right edges


def test_the_readme_demo_command_runs(files, tmp_path, monkeypatch, capsys):
    """The README's localize command, verbatim, in a folder laid out like a repo after repro
    (a tiny checkpoint and scene in place of the trained ones)."""
    import re
    import shlex

    readme = (REPO / "README.md").read_text()
    block = next(b for b in re.findall(r"```bash\n(.*?)```", readme, re.S) if "avgn_lib localize" in b)
    argv = shlex.split(block.replace("\\\n", " "))
    assert argv[:3] == [".venv/bin/python", "-m", "avgn_lib"]
    argv = argv[3:]
    value = {a: argv[i + 1] for i, a in enumerate(argv) if a.startswith("--")}
    for key, source in (("--checkpoint", "ckpt"), ("--image", "image"), ("--audio", "audio")):
        target = tmp_path / value[key]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[source].read_bytes())
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run_cli(argv, capsys)
    assert code == 0, err
    assert (tmp_path / value["--out"] / "result.json").is_file() and "wrote" in stdout


def test_box_text_says_when_a_box_is_the_whole_frame():
    from avgn_lib.__main__ import _box_text

    assert "singles out no location" in _box_text([0, 0, 100, 50], (50, 100))
    assert _box_text([10, 10, 30, 20], (50, 100)) == "[10, 10, 30, 20] (4% of the frame)"
    assert _box_text(None, (50, 100)).startswith("none")
