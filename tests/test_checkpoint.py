"""Checkpoint files (atomic save, strict load) and RNG state capture/restore."""
from __future__ import annotations

import pickle
import random

import numpy as np
import pytest
import torch

from avgn_lib.checkpoint import FORMAT, REQUIRED_KEYS, load_checkpoint, save_checkpoint
from avgn_lib.seeding import (
    capture_rng_state, loader_generator, restore_rng_state, seed_everything,
)


def _fields(**over):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    model(torch.ones(4, 3)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    fields = dict(method="toy", model_cfg={"width": 4}, num_classes=2, class_names=["a", "b"],
                  vocab="instruments", data_cfg={"image_size": [16, 16]}, train_cfg={"lr": 1e-3},
                  epoch=1, model=model.state_dict(), optimizer=opt.state_dict(),
                  scheduler=sched.state_dict(), rng=capture_rng_state(),
                  history=[{"epoch": 1, "train_loss": 0.5}])
    fields.update(over)
    return fields


def _draws():
    return (random.random(), float(np.random.rand()), float(torch.rand(())))


def test_roundtrip_loads_weights_only(tmp_path):
    fields = _fields()
    path = save_checkpoint(tmp_path / "sub" / "last.pt", **fields)
    raw = torch.load(path, weights_only=True)
    assert set(REQUIRED_KEYS) <= set(raw) and raw["format"] == FORMAT
    ckpt = load_checkpoint(path)
    for key, value in fields["model"].items():
        assert torch.equal(ckpt["model"][key], value)
    assert ckpt["optimizer"]["param_groups"] == fields["optimizer"]["param_groups"]
    assert ckpt["history"] == fields["history"] and ckpt["class_names"] == ["a", "b"]
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["last.pt"]  # no temp file left


def test_failed_save_keeps_previous_file(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", **_fields(epoch=1))
    with pytest.raises(TypeError, match=r"checkpoint.history\[0\].train_loss"):
        save_checkpoint(path, **_fields(epoch=2, history=[{"train_loss": np.float64(0.1)}]))
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_missing_fields_rejected(tmp_path):
    fields = _fields()
    del fields["rng"]
    with pytest.raises(ValueError, match="rng"):
        save_checkpoint(tmp_path / "x.pt", **fields)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pt"):
        load_checkpoint(tmp_path / "nope.pt")


def test_truncated_file_names_path(tmp_path):
    path = save_checkpoint(tmp_path / "last.pt", **_fields())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="last.pt.*not a readable avgn checkpoint"):
        load_checkpoint(path)


def test_random_bytes_rejected(tmp_path):
    path = tmp_path / "junk.pt"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    with pytest.raises(ValueError, match="junk.pt"):
        load_checkpoint(path)


class _Evil:
    def __reduce__(self):
        return (print, ("code ran",))


def test_unsafe_pickle_rejected(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "payload": _Evil()}, path)
    with pytest.raises(ValueError, match="evil.pt"):
        load_checkpoint(path)
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"format": FORMAT}, protocol=2))
    with pytest.raises(ValueError, match="plain.pkl"):
        load_checkpoint(plain)


def test_format_checks(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="other.pt.*no 'format' key"):
        load_checkpoint(path)
    good = save_checkpoint(tmp_path / "good.pt", **_fields())
    ckpt = torch.load(good, weights_only=True)
    for fmt, message in [("avgn-checkpoint/2", "not supported"), ("something/1", "not an avgn")]:
        torch.save({**ckpt, "format": fmt}, path)
        with pytest.raises(ValueError, match=message):
            load_checkpoint(path)
    del ckpt["history"]
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="missing keys.*history"):
        load_checkpoint(path)


def test_version_mismatch_warns(tmp_path):
    good = save_checkpoint(tmp_path / "good.pt", **_fields())
    ckpt = torch.load(good, weights_only=True)
    torch.save({**ckpt, "torch_version": "1.0.0"}, good)
    with pytest.warns(UserWarning, match="torch 1.0.0"):
        load_checkpoint(good)


def test_seed_everything_repeats_and_validates():
    seed_everything(3)
    first = _draws()
    seed_everything(3)
    assert _draws() == first
    seed_everything(4)
    assert _draws() != first
    with pytest.raises(ValueError):
        seed_everything(-1)


def test_rng_state_roundtrip_through_checkpoint(tmp_path):
    seed_everything(11)
    random.gauss(0, 1)  # leaves a cached gaussian in python's state
    np.random.randn()
    fields = _fields()  # builds a model, which draws from torch's RNG: capture after it
    path = save_checkpoint(tmp_path / "r.pt", **{**fields, "rng": capture_rng_state()})
    expected = _draws() + (random.gauss(0, 1), float(np.random.randn()))
    seed_everything(99)
    restore_rng_state(load_checkpoint(path)["rng"])
    assert _draws() + (random.gauss(0, 1), float(np.random.randn())) == expected


def test_restore_rejects_malformed_state():
    with pytest.raises(ValueError, match="malformed"):
        restore_rng_state({"python": {}})


def test_loader_generators_differ_by_epoch_and_rank():
    draw = lambda g: torch.randint(0, 2**31, (4,), generator=g).tolist()  # noqa: E731
    assert draw(loader_generator(0, 1, 0)) == draw(loader_generator(0, 1, 0))
    seen = {tuple(draw(loader_generator(0, e, r))) for e in range(3) for r in range(2)}
    assert len(seen) == 6
