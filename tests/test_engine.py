"""fit(): loss weighting, logs, seeding, checkpoints and exact resume; evaluate(): routing.

The toy model follows the method contract of docs/ARCHITECTURE.md (forward -> dict, loss -> named
terms, loss_weights, localize) with dropout and BatchNorm, so RNG and buffer state both matter
for the exactness tests. tests/test_ddp.py imports it too.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from avgn_lib.checkpoint import load_checkpoint
from avgn_lib.engine import StopTraining, TrainConfig, fit, train_config
from avgn_lib.engine_eval import evaluate_localization


class ToyModel(nn.Module):
    """Image features (B, 8, H/2, W/2) matched against class embeddings chosen by the audio."""

    def __init__(self, num_classes: int = 3, dropout: float = 0.2, batchnorm: bool = True) -> None:
        super().__init__()
        self.num_classes = num_classes
        norm = nn.BatchNorm2d(8) if batchnorm else nn.Identity()
        self.visual = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), norm, nn.ReLU(), nn.AvgPool2d(2))
        self.audio = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
                                   nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout))
        self.classifier = nn.Linear(8, num_classes)
        self.loss_weights = {"cls": 1.0, "align": 0.5}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        v = self.visual(batch["image"])                              # (B, 8, h, w)
        a = self.audio(batch["spec"])                                # (B, 8)
        sim = torch.einsum("bchw,bc->bhw", F.normalize(v, dim=1), F.normalize(a, dim=1))
        return {"logits": self.classifier(a), "sim": sim}

    def loss(self, outputs, batch):
        cls = F.binary_cross_entropy_with_logits(outputs["logits"], batch["labels"])
        align = (1.0 - outputs["sim"].flatten(1).max(1).values).mean()
        return {"cls": cls, "align": align}

    def localize(self, image, spec, classes=None, num_sources=None):
        v = F.normalize(self.visual(image), dim=1)                   # (B, 8, h, w)
        probs = self.classifier(self.audio(spec)).sigmoid()          # (B, C)
        if classes is None:
            classes = probs.topk(num_sources or 1, dim=1).indices    # (B, N)
        emb = F.normalize(self.classifier.weight, dim=1)[classes]    # (B, N, 8)
        return {"maps": torch.einsum("bchw,bnc->bnhw", v, emb), "classes": classes,
                "scores": probs.gather(1, classes)}


class ToyDataset(Dataset):
    """Batch-contract samples: a class-coloured square on noise, a class-coded spectrogram.

    ``sources`` objects per sample (0 for the first ``silent`` samples); ``jitter`` adds numpy
    noise drawn in ``__getitem__`` so worker seeding is observable.
    """

    def __init__(self, n: int = 24, num_classes: int = 3, sources: int = 1, size: int = 16,
                 silent: int = 0, jitter: bool = False, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.num_classes, self.jitter, self.size = num_classes, jitter, size
        self.images = torch.randn(n, 3, size, size, generator=g) * 0.1
        self.specs = torch.randn(n, 1, 8, 8, generator=g) * 0.1
        self.masks = torch.zeros(n, sources, size, size, dtype=torch.uint8)
        self.classes = torch.full((n, sources), -1, dtype=torch.int64)
        half = size // 2
        for i in range(n):
            if i < silent:
                continue
            cls = torch.randperm(num_classes, generator=g)[:sources]
            for s, c in enumerate(cls.tolist()):
                y, x = (s * half) % size, int(torch.randint(0, half + 1, (1,), generator=g))
                self.masks[i, s, y:y + half, x:x + half] = 1
                self.images[i, c % 3, y:y + half, x:x + half] += 1.0
                self.specs[i, 0, c] += 1.0
                self.classes[i, s] = c

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        image = self.images[i]
        if self.jitter:
            image = image + torch.from_numpy(np.random.normal(0, 0.01, image.shape).astype(np.float32))
        labels = torch.zeros(self.num_classes)
        valid = self.classes[i][self.classes[i] >= 0]
        labels[valid] = 1.0
        return {"image": image, "spec": self.specs[i], "labels": labels,
                "classes": self.classes[i], "masks": self.masks[i],
                "has_source": torch.tensor(len(valid) > 0), "index": torch.tensor(i)}


def small_cfg(**over) -> TrainConfig:
    base = dict(lr=3e-3, batch_size=8, epochs=2, seed=5, progress=False, schedule="cosine",
                warmup_epochs=0.5, grad_clip=1.0, optimizer="adamw", weight_decay=0.01)
    base.update(over)
    return train_config(base)


def _numbers(history):
    return [dict(r) for r in history]  # wall-clock figures live in timings.json, not here


def _run(tmp_path, name, cfg, **kw):
    torch.manual_seed(0)  # model init happens in the caller, before fit seeds training
    model = ToyModel()
    history = fit(model, ToyDataset(jitter=True), ToyDataset(n=10, seed=1), cfg, tmp_path / name, **kw)
    return model, history


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_train_config_is_strict():
    with pytest.raises(ValueError, match="unknown key.*'lrr'"):
        train_config({"lrr": 0.1})
    assert train_config({"lr": "1e-4"}).lr == 1e-4  # YAML 1.1 reads 1e-4 as a string
    for bad in ({"optimizer": "sgd"}, {"schedule": "step"}, {"select_metric": "test_AP"},
                {"batch_size": 0}):
        with pytest.raises(ValueError):
            train_config(bad)


def test_fit_logs_weighted_terms_and_writes_files(tmp_path):
    model, history = _run(tmp_path, "run", small_cfg(epochs=3))
    assert [r["epoch"] for r in history] == [1, 2, 3]
    for r in history:
        for split in ("train", "val"):
            total = r[f"{split}_cls"] + 0.5 * r[f"{split}_align"]
            assert r[f"{split}_loss"] == pytest.approx(total, rel=1e-5)
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["lr"] < history[0]["lr"]  # cosine decays
    out = tmp_path / "run"
    assert json.loads((out / "history.json").read_text()) == history
    header = (out / "history.csv").read_text().splitlines()[0].split(",")
    assert {"epoch", "train_loss", "val_loss", "train_cls", "val_align"} <= set(header)
    last = load_checkpoint(out / "last.pt")
    assert last["epoch"] == 3 and last["history"] == history and last["num_classes"] == 3
    assert torch.load(out / "last.pt", weights_only=True)["train_cfg"]["lr"] == 3e-3
    best_epoch = min(history, key=lambda r: r["val_loss"])["epoch"]
    assert load_checkpoint(out / "best.pt")["epoch"] == best_epoch


def test_same_seed_gives_identical_run(tmp_path):
    model_a, hist_a = _run(tmp_path, "a", small_cfg())
    model_b, hist_b = _run(tmp_path, "b", small_cfg())
    assert _numbers(hist_a) == _numbers(hist_b)
    _assert_same_state(model_a, model_b)
    _, hist_c = _run(tmp_path, "c", small_cfg(seed=6))
    assert _numbers(hist_c) != _numbers(hist_a)


def test_validation_does_not_move_the_training_rng(tmp_path):
    """Extra evaluation work (DataLoaders, random draws) between epochs must not change what the
    next epoch trains on: a val trial with more metrics reproduces the pipeline's run."""
    def busy_eval(model, ds):
        for _ in torch.utils.data.DataLoader(ds, batch_size=4):
            pass
        return {"noise": float(torch.rand(()))}

    model_a, hist_a = _run(tmp_path, "plain", small_cfg(epochs=3))
    model_b, hist_b = _run(tmp_path, "busy", small_cfg(epochs=3), evaluate_fn=busy_eval)
    train = lambda h: [{k: v for k, v in r.items() if k.startswith("train_")} for r in h]  # noqa: E731
    assert train(hist_a) == train(hist_b)
    _assert_same_state(model_a, model_b)


@pytest.mark.slow
def test_same_seed_identical_with_workers(tmp_path):
    cfg = small_cfg(num_workers=2, epochs=1)
    _, hist_a = _run(tmp_path, "a", cfg)
    _, hist_b = _run(tmp_path, "b", cfg)
    assert _numbers(hist_a) == _numbers(hist_b)


def test_resume_is_bit_identical(tmp_path):
    cfg = small_cfg(epochs=3)
    straight, hist_straight = _run(tmp_path, "straight", cfg)

    def crash_after_first_epoch(event, state):
        if event == "epoch_end" and state["epoch"] == 0:
            raise KeyboardInterrupt  # an interruption, not a clean stop

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "resumed", cfg, callbacks=[crash_after_first_epoch])
    assert load_checkpoint(tmp_path / "resumed" / "last.pt")["epoch"] == 1
    torch.manual_seed(123)  # a fresh process would have different RNG state and weights
    resumed = ToyModel()
    hist_resumed = fit(resumed, ToyDataset(jitter=True), ToyDataset(n=10, seed=1), cfg,
                       tmp_path / "resumed", resume=True)
    assert _numbers(hist_resumed) == _numbers(hist_straight)
    _assert_same_state(straight, resumed)
    opt_a = load_checkpoint(tmp_path / "straight" / "last.pt")["optimizer"]["state"]
    opt_b = load_checkpoint(tmp_path / "resumed" / "last.pt")["optimizer"]["state"]
    for key in opt_a:
        for name in opt_a[key]:
            assert torch.equal(opt_a[key][name], opt_b[key][name])


def test_resume_rejects_changed_config_and_missing_file(tmp_path):
    _run(tmp_path, "run", small_cfg(epochs=1))
    with pytest.raises(ValueError, match="last.pt.*differ in \\['train.lr'\\]"):
        fit(ToyModel(), ToyDataset(), None, small_cfg(epochs=2, lr=1e-2), tmp_path / "run", resume=True)
    with pytest.raises(FileNotFoundError, match="last.pt"):
        fit(ToyModel(), ToyDataset(), None, small_cfg(), tmp_path / "empty", resume=True)


def test_resume_rejects_another_resolved_precision(tmp_path):
    """precision 'auto' is bf16 on CUDA and fp32 on CPU: a last.pt written with the other
    arithmetic must not be continued as if the run were the same."""
    _run(tmp_path, "run", small_cfg(epochs=1))
    path = tmp_path / "run" / "last.pt"
    ckpt = load_checkpoint(path)
    assert ckpt["precision_used"] == "fp32"
    ckpt["precision_used"] = "bf16"  # as a CUDA machine would have written it
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match="differ in \\['precision_used'\\]"):
        fit(ToyModel(), ToyDataset(), None, small_cfg(epochs=2), tmp_path / "run", resume=True)


def test_auto_resume_from_checkpoint_dir_and_fresh_start_on_change(tmp_path):
    """resume='auto' (the pipeline's mode): continue from a last.pt kept outside the outputs
    when every setting matches; start fresh, never crash, when one differs."""
    cfg, val = small_cfg(epochs=3), ToyDataset(n=10, seed=1)
    _, straight = _run(tmp_path, "straight", cfg)

    def crash(event, state):
        if event == "epoch_end" and state["epoch"] == 1:
            raise KeyboardInterrupt

    ckpt = tmp_path / "ckpt"
    torch.manual_seed(0)
    with pytest.raises(KeyboardInterrupt):
        fit(ToyModel(), ToyDataset(jitter=True), val, cfg, tmp_path / "out", callbacks=[crash],
            checkpoint_dir=ckpt, resume="auto", meta={"fingerprint": {"data": "a"}})
    assert not (tmp_path / "out" / "last.pt").exists() and (ckpt / "last.pt").is_file()
    (tmp_path / "out" / "history.csv").unlink()  # DVC deletes outputs before re-running
    torch.manual_seed(0)
    resumed = fit(ToyModel(), ToyDataset(jitter=True), val, cfg, tmp_path / "out",
                  checkpoint_dir=ckpt, resume="auto", meta={"fingerprint": {"data": "a"}})
    assert _numbers(resumed) == _numbers(straight)
    assert len(json.loads((tmp_path / "out" / "timings.json").read_text())) == 1  # 1 epoch left
    assert (tmp_path / "out" / "history.csv").is_file()
    (tmp_path / "out" / "timings.json").unlink()
    done = fit(ToyModel(), ToyDataset(jitter=True), val, cfg, tmp_path / "out",
               checkpoint_dir=ckpt, resume="auto", meta={"fingerprint": {"data": "a"}})
    assert _numbers(done) == _numbers(straight)  # nothing left to train: the logs come back
    assert json.loads((tmp_path / "out" / "timings.json").read_text()) == []
    torch.manual_seed(0)
    fresh = fit(ToyModel(), ToyDataset(jitter=True), val, cfg, tmp_path / "out",
                checkpoint_dir=ckpt, resume="auto", meta={"fingerprint": {"data": "b"}})
    assert _numbers(fresh) == _numbers(straight)
    assert len(json.loads((tmp_path / "out" / "timings.json").read_text())) == 3  # from scratch


def test_model_param_groups_set_learning_rates(tmp_path):
    model = ToyModel()
    model.param_groups = lambda lr: [{"params": list(model.visual.parameters()), "lr": lr * 0.1},
                                     {"params": [p for n, p in model.named_parameters()
                                                 if not n.startswith("visual.")]}]
    from avgn_lib.engine import build_optimizer

    opt = build_optimizer(model, small_cfg(lr=1e-2))
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 1e-2]
    model.param_groups = lambda lr: [{"params": list(model.visual.parameters())}]
    with pytest.raises(ValueError, match="param_groups covers"):
        build_optimizer(model, small_cfg())


def test_precision_auto_is_fp32_on_every_cpu_and_bf16_only_when_asked(monkeypatch):
    """auto: fp32 on a CPU with or without native bf16 (emulated bf16 is 10x slower; native bf16
    broke exact resume on an AMX CPU); an explicit bf16 is honoured."""
    from avgn_lib import device as dev

    cpu = torch.device("cpu")
    for native in (False, True):
        monkeypatch.setattr(dev, "cpu_has_native_bf16", lambda native=native: native)
        assert dev.resolve_precision("auto", cpu) == "fp32"
        assert dev.resolve_precision("bf16", cpu) == "bf16"
    assert dev.resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        dev.resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="precision"):
        small_cfg(precision="half")


def test_stop_training_and_missing_loss_weight(tmp_path):
    def stop(event, state):
        if event == "epoch_end":
            raise StopTraining

    _, history = _run(tmp_path, "stop", small_cfg(epochs=5), callbacks=[stop])
    assert len(history) == 1 and (tmp_path / "stop" / "last.pt").is_file()
    model = ToyModel()
    model.loss_weights = {"cls": 1.0}
    with pytest.raises(ValueError, match="align"):
        fit(model, ToyDataset(), None, small_cfg(), tmp_path / "bad")


def test_bf16_channels_last_and_class_names(tmp_path):
    train = ToyDataset()
    train.class_names = ["violin", "flute", "drum"]
    cfg = small_cfg(epochs=1, precision="bf16", channels_last=True)
    history = fit(ToyModel(), train, ToyDataset(n=10, seed=1), cfg, tmp_path / "bf16")
    assert np.isfinite(history[0]["train_loss"]) and np.isfinite(history[0]["val_loss"])
    assert load_checkpoint(tmp_path / "bf16" / "last.pt")["class_names"] == train.class_names


def test_select_metric_must_exist(tmp_path):
    with pytest.raises(ValueError, match="val_AP.*available"):
        _run(tmp_path, "sel", small_cfg(epochs=1, select_metric="val_AP", select_mode="max"))


def test_evaluate_single_source_with_silent_samples(tmp_path):
    torch.manual_seed(0)
    model, data = ToyModel(), ToyDataset(n=12, silent=3, seed=2)
    cfg = small_cfg(batch_size=5)
    result = evaluate_localization(model, data, batch_size=cfg.batch_size, out_dir=tmp_path / "ev", save_maps=2)
    assert result["task"] == "single" and result["num_samples"] == 12
    assert result["N"] == 9 and result["N_silent"] == 3
    assert 0.0 <= result["AP"] <= 1.0 and "IoU@0.5" in result and "AP_conf@0.5" in result
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text()) == result
    saved = sorted((tmp_path / "ev" / "maps").iterdir())
    assert len(saved) == 2
    with np.load(saved[0]) as npz:
        assert npz["maps"].shape == (1, 16, 16) and npz["gt_masks"].shape == (1, 16, 16)
    again = evaluate_localization(model, data, batch_size=cfg.batch_size)
    assert {k: again[k] for k in result} == result  # eval mode + no RNG: repeatable


def test_evaluate_multi_oracle_vs_agnostic():
    torch.manual_seed(0)
    model, data = ToyModel(), ToyDataset(n=10, sources=2, seed=3)
    cfg = small_cfg(batch_size=4)
    oracle = evaluate_localization(model, data, batch_size=cfg.batch_size, mode="oracle")
    agnostic = evaluate_localization(model, data, batch_size=cfg.batch_size, mode="agnostic")
    assert oracle["task"] == agnostic["task"] == "multi"
    assert oracle["N"] == 20 and {"CAP", "PIAP", "CIoU@0.3", "AUC"} <= set(oracle)
    # PIAP ignores class tags; oracle maps cover every GT class, so CAP == PIAP can only fail
    # through the assignment, and agnostic CAP can never beat PIAP.
    assert agnostic["CAP"] <= agnostic["PIAP"] + 1e-12
    with pytest.raises(ValueError, match="mode must be"):
        evaluate_localization(model, data, batch_size=cfg.batch_size, mode="both")


class _GroundTruthMaps(nn.Module):
    """Returns each requested class's GT mask as its map (or the other source's, when ``swap``)."""

    def __init__(self, data: ToyDataset, swap: bool = False) -> None:
        super().__init__()
        self.data, self.swap, self.w = data, swap, nn.Parameter(torch.zeros(()))

    def localize(self, image, spec, classes=None, num_sources=None):
        flat = self.data.images.flatten(1)
        idx = [int((flat == im.flatten()).all(1).nonzero()[0]) for im in image]
        rows = []
        for b, i in enumerate(idx):
            slots = [int((self.data.classes[i] == c).nonzero()[0]) for c in classes[b]]
            rows.append(self.data.masks[i, slots[::-1] if self.swap else slots].float())
        return {"maps": torch.stack(rows), "classes": classes, "scores": torch.ones(classes.shape)}


def test_evaluate_routes_maps_by_class():
    """GT masks as maps score 1; the same maps under swapped class tags lose CAP, keep PIAP."""
    data = ToyDataset(n=6, sources=2, seed=4)
    cfg = small_cfg(batch_size=4)
    right = evaluate_localization(_GroundTruthMaps(data), data, batch_size=cfg.batch_size, mode="oracle")
    # (CIoU is not 1 here: the median rule predicts half the frame, the masks cover a quarter)
    assert right["CAP"] == right["PIAP"] == 1.0
    swapped = evaluate_localization(_GroundTruthMaps(data, swap=True), data, batch_size=4, mode="oracle")
    assert swapped["PIAP"] == 1.0 and swapped["CAP"] < 0.9


@pytest.mark.slow
def test_real_avgn_resume_and_evaluate(tmp_path):
    """The registry's AVGN through the same engine: exact resume, then both evaluation modes."""
    from avgn_lib.models.registry import build_model

    def build():
        torch.manual_seed(0)
        return build_model("avgn", 3, {"dim": 32, "width": 8, "depth": 1, "heads": 2})

    data, val = ToyDataset(n=16, size=32), ToyDataset(n=8, size=32, seed=1)
    cfg = small_cfg(epochs=2)
    straight = build()
    hist = fit(straight, data, val, cfg, tmp_path / "a", meta={"method": "avgn"})

    def crash(event, state):
        if event == "epoch_end":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(build(), data, val, cfg, tmp_path / "b", callbacks=[crash])
    resumed = build()
    assert _numbers(fit(resumed, data, val, cfg, tmp_path / "b", resume=True)) == _numbers(hist)
    _assert_same_state(straight, resumed)
    assert {"train_loc", "train_token_ce", "train_presence_a", "val_presence_v"} <= set(hist[0])
    assert load_checkpoint(tmp_path / "a" / "best.pt")["method"] == "avgn"
    assert not any("time" in k for k in hist[0])  # timings are kept out of history/checkpoints
    assert len(json.loads((tmp_path / "a" / "timings.json").read_text())) == 2
    duet = ToyDataset(n=6, size=32, sources=2, seed=3)
    for mode in ("oracle", "agnostic"):
        result = evaluate_localization(straight, duet, batch_size=cfg.batch_size, mode=mode)
        assert result["N"] == 12 and 0.0 <= result["CAP"] <= 1.0


def test_evaluate_presence_scores_the_presence_heads_and_skips_models_without_them():
    """A module whose presence is the batch's labels (read back from the spectrogram) is perfect;
    its inverse never hits; a model without presence outputs gives nothing."""
    import numpy as np
    from torch import nn

    from avgn_lib.engine_eval import evaluate_presence

    labels = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1]])
    data = [{"image": torch.zeros(3, 4, 4), "spec": l.reshape(1, 1, 3), "labels": l} for l in labels]

    class Heads(nn.Module):
        def __init__(self, invert=False, presence=True):
            super().__init__()
            self.w, self.invert, self.presence = nn.Parameter(torch.zeros(())), invert, presence

        def forward(self, batch):
            p = batch["spec"].reshape(len(batch["spec"]), -1) * 0.8 + 0.1
            p = 1 - p if self.invert else p
            return {"presence_a": p, "presence_v": p} if self.presence else {"feat_a": p}

    good = evaluate_presence(Heads(), data, batch_size=2)
    assert {good[f"cls_{m}_{k}"] for m in "av" for k in ("precision", "recall", "F1", "top1")} == {1.0}
    bad = evaluate_presence(Heads(invert=True), data, batch_size=2)
    assert bad["cls_a_recall"] == 0.0 and bad["cls_a_F1"] == 0.0 and bad["cls_a_top1"] == 0.0
    assert np.isclose(bad["cls_a_precision"], 0.0)
    assert evaluate_presence(Heads(presence=False), data) == {}


def test_channels_last_converts_4d_tensors_and_leaves_3d_conv_weights():
    """A model mixing Conv3d and Conv2d (the LCBM video net) goes channels_last without error:
    4-D weights change layout, values stay; 5-D weights keep theirs."""
    from avgn_lib.engine import to_channels_last

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv3d(3, 4, 3), nn.Flatten(1, 2), nn.Conv2d(4 * 2, 5, 3),
                        nn.BatchNorm2d(5))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    to_channels_last(net)
    assert net[2].weight.is_contiguous(memory_format=torch.channels_last)
    assert net[0].weight.is_contiguous()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    x = torch.randn(2, 3, 4, 9, 9)
    assert net(x).shape == (2, 5, 5, 5)

