"""LCBM (Less Can Be More): its distinctive mechanisms on small real inputs. The method contract
(fit, localize shapes, checkpoint) is in tests/test_contract.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from avgn_lib.lcbm_report import (box_from_mask, box_iou, box_scores, classification_table,
                                  full_frame_box_scores, split_gt_boxes,
                                  head_accuracies, head_accuracy, moment_table, pseudo_box_scores)
from avgn_lib.models import build_model
from avgn_lib.models.lcbm import cam_box, informative_moment

C = 3
TINY = {"width": 4, "audio_width": 4, "dim": 8, "clip_frames": 4, "clip_size": 16}


def _batch(b=4, k=4, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    classes = torch.arange(b)[:, None] % C
    labels = F.one_hot(classes[:, 0], C).float()
    clip = torch.randint(0, 255, (b, k, h, w, 3), generator=g, dtype=torch.uint8)
    return {"image": torch.randn(b, 3, 32, 32, generator=g), "spec": torch.randn(b, 1, 32, 32, generator=g),
            "clip": clip, "labels": labels, "classes": classes,
            "masks": torch.zeros(b, 1, 32, 32, dtype=torch.uint8)}


def test_head_variants_have_their_heads():
    batch = _batch()
    expect = {"single": {"av"}, "shared": {"av", "a", "v"}, "individual": {"av", "a", "v"}}
    for heads, keys in expect.items():
        torch.manual_seed(0)
        model = build_model("lcbm", C, {**TINY, "heads": heads})
        out = model(batch)
        assert {k.removeprefix("logits_") for k in out if k.startswith("logits_")} == keys
        assert {k.removeprefix("presence_") for k in out if k.startswith("presence_")} == keys
        assert set(model.loss(out, batch)) == set(model.loss_weights) == keys
        assert all(out[f"logits_{k}"].shape == (4, C) for k in keys)
        linears = {n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)
                   and n.startswith("fc_")}
        assert linears == ({"fc_av", "fc_a", "fc_v"} if heads == "individual" else {"fc_av"})
    # shared: the A and V heads are the AV FC with the other modality zeroed
    model = build_model("lcbm", C, {**TINY, "heads": "shared"})
    out = model(batch)
    bias = model.fc_av.bias
    torch.testing.assert_close(out["logits_av"], out["logits_a"] + out["logits_v"] - bias)


def test_bad_config_fails():
    with pytest.raises(ValueError, match="heads"):
        build_model("lcbm", C, {"heads": "two"})
    with pytest.raises(ValueError, match="moment"):
        build_model("lcbm", C, {"moment": "first"})


def test_loss_falls_when_overfitting_one_batch():
    torch.manual_seed(0)
    model = build_model("lcbm", C, TINY)
    batch = _batch()
    opt = torch.optim.Adam(model.parameters(), 3e-3)
    losses = []
    for _ in range(30):
        total = sum(model.loss(model(batch), batch).values())
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0]


def test_cam_of_a_single_blob_is_its_box():
    cam = np.zeros((20, 30))
    yy, xx = np.mgrid[:20, :30]
    cam += np.exp(-((yy - 8) ** 2 + (xx - 20) ** 2) / 50.0) * ((abs(yy - 8) <= 4) & (abs(xx - 20) <= 6))
    blob = cam > 0.5 * cam.max()
    assert np.array_equal(cam_box(cam, 0.5), box_from_mask(blob))
    # a flat block: exactly its box; a weaker second blob is not the largest component
    cam = np.zeros((20, 30))
    cam[3:10, 5:15] = 1.0
    cam[15:17, 25:27] = 0.9
    assert np.array_equal(cam_box(cam, 0.5), [5, 3, 15, 10])
    assert cam_box(np.ones((5, 5))) is None


def test_informative_moment_picks_the_peak_of_a_synthetic_clip():
    k = 8
    envelope = torch.tensor([0.1, 0.2, 0.1, 0.3, 0.2, 1.0, 0.4, 0.1])  # loudest at frame 5
    visual = torch.tensor([0.2, 0.9, 0.2, 0.3, 0.2, 0.8, 0.3, 0.2])    # a still bright frame 1
    evidence = torch.stack([envelope + visual, envelope])               # (2, K): AV, A only
    assert informative_moment(evidence).tolist() == [5, 5]
    assert informative_moment(evidence, "mid").tolist() == [k // 2, k // 2]
    # through localize: stand-in networks that pass the synthetic clip and envelope through
    # (frame maps = the clip's brightness, audio windows = the envelope), unit AV weights
    torch.manual_seed(0)
    model = build_model("lcbm", C, {**TINY, "clip_frames": k}).eval()
    d = model.cfg.dim
    model.visual = _Brightness(d)
    model.audio = _Envelope(envelope, d)
    with torch.no_grad():
        model.fc_av.weight.fill_(1.0)
        model.fc_av.bias.zero_()
    clip = torch.zeros(1, k, 16, 16, 3, dtype=torch.uint8)
    for t in range(k):  # the object pulses with the envelope, moving right as it gets louder
        x = 2 + int(6 * envelope[t])
        clip[0, t, 4:10, x:x + 6] = int(255 * envelope[t])
    image, spec = torch.zeros(1, 3, 32, 32), torch.zeros(1, 1, 32, 32)
    out = model.localize(image, spec, classes=torch.zeros(1, 1, dtype=torch.long), clip=clip)
    assert out["moments"].item() == 5
    assert np.array_equal(cam_box(out["maps"][0, 0].numpy()), [8, 4, 14, 10])  # frame 5's blob
    model.moment = "mid"
    out = model.localize(image, spec, classes=torch.zeros(1, 1, dtype=torch.long), clip=clip)
    assert out["moments"].item() == k // 2
    assert np.array_equal(cam_box(out["maps"][0, 0].numpy()), [3, 4, 9, 10])  # frame 4's blob


class _Brightness(torch.nn.Module):
    """(B, 3, K, h, w) normalized clip -> (B, K, D, h, w): its brightness in every channel."""

    def __init__(self, dim):
        super().__init__()
        self.dim = dim

    def forward(self, clip):
        lum = clip.mean(1) - clip.amin(dim=(1, 3, 4), keepdim=True)[:, 0]  # (B, K, h, w)
        return lum[:, :, None].expand(-1, -1, self.dim, -1, -1)


class _Envelope(torch.nn.Module):
    def __init__(self, envelope, dim):
        super().__init__()
        self.envelope, self.dim = envelope, dim

    def forward(self, spec, windows):
        return self.envelope[None, :windows, None].expand(len(spec), -1, self.dim)


def test_map_has_the_image_shape_after_upsampling_and_padding_is_zero():
    torch.manual_seed(0)
    model = build_model("lcbm", C, TINY).eval()
    batch = _batch()
    classes = torch.cat([batch["classes"], torch.full((4, 1), -1)], 1)
    out = model.localize(batch["image"], batch["spec"], classes=classes, clip=batch["clip"])
    assert out["maps"].shape[:2] == (4, 2) and (out["maps"][:, 1] == 0).all()
    assert torch.equal(out["classes"], classes) and out["class_probs"].shape == (4, C)
    up = F.interpolate(out["maps"], size=batch["image"].shape[-2:], mode="bilinear")
    assert up.shape[-2:] == batch["image"].shape[-2:]
    free = model.localize(batch["image"], batch["spec"], num_sources=2, clip=batch["clip"])
    assert torch.equal(free["classes"], out["class_probs"].topk(2, 1).indices)


def test_box_metrics_and_tables_on_hand_built_inputs():
    a, b = np.array([0, 0, 10, 10.0]), np.array([5, 0, 15, 10.0])
    assert box_iou(a, a) == 1.0 and box_iou(a, b) == pytest.approx(50 / 150) and box_iou(a, None) == 0
    s = box_scores([a, b, None], [a, a, a])
    assert s["box_IoU"] == pytest.approx((1 + 1 / 3) / 3) and s["box_P@0.5"] == pytest.approx(1 / 3)
    gt = split_gt_boxes(np.array([[[2, 3, 12, 13.0], [np.nan] * 4]]), np.array([[1, -1]]), (20, 20))
    assert len(gt) == 1 and np.array_equal(gt[0], [2, 3, 12, 13])
    whole = full_frame_box_scores(gt, (20, 20))
    assert whole["box_IoU"] == pytest.approx(100 / 400) and whole["box_P@0.5"] == 0
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.6], [0.1, 0.2, 0.3], [0.5, 0.5, 0.5]])
    labels = np.array([[1, 0, 0], [0, 1, 1], [1, 0, 0], [0, 0, 0]])
    assert head_accuracy(probs, labels) == pytest.approx(2 / 3)  # silent sample left out
    table = classification_table({"single": {"av": 0.5}, "individual": {"av": 0.6, "a": 0.4, "v": 0.3}})
    assert list(table.columns) == ["AV-head", "A-head", "V-head"]
    assert table.loc["individual", "A-head"] == pytest.approx(40) and np.isnan(table.loc["single", "V-head"])
    mt = moment_table({"lcbm": {"selected": {"AP": 0.5, "IoU@0.5": 0.4}, "mid": {"AP": 0.3}}})
    assert mt.loc[("lcbm", "selected"), "AP"] == 0.5 and np.isnan(mt.loc[("lcbm", "mid"), "IoU@0.5"])


def test_report_loops_run_on_a_tiny_set():
    torch.manual_seed(0)
    model = build_model("lcbm", C, TINY).eval()
    batch = _batch()
    batch["box_masks"] = torch.zeros(4, 1, 32, 32, dtype=torch.uint8)
    batch["box_masks"][:, 0, 4:20, 8:24] = 1
    items = [{k: v[i] for k, v in batch.items()} for i in range(4)]
    accs = head_accuracies(model, items, batch_size=2)
    assert set(accs) == {"av", "a", "v"} and all(0 <= v <= 1 for v in accs.values())
    boxes = pseudo_box_scores(model, items, batch_size=2)
    assert boxes["num_boxes"] == 4 and 0 <= boxes["box_IoU"] <= 1


def test_report_section_gives_both_tables_with_moments_and_box_references(tmp_path):
    """The report's LCBM section on a tiny split: head accuracies per variant, both moments per
    variant (localization + pseudo boxes), and the two box references scored on the split's boxes."""
    from avgn_lib.lcbm_report import report_section

    torch.manual_seed(0)
    models = {"individual": build_model("lcbm", C, TINY).eval(),
              "single": build_model("lcbm", C, {**TINY, "heads": "single"}).eval()}
    batch = _batch()
    batch["masks"][:, 0, 4:20, 8:24] = 1
    batch["box_masks"] = batch["masks"].clone()
    batch["has_source"] = torch.ones(4, dtype=torch.bool)
    batch["index"] = torch.arange(4)
    items = [{k: v[i] for k, v in batch.items()} for i in range(4)]
    split = tmp_path / "instruments_solo" / "test"
    split.mkdir(parents=True)
    np.save(split / "images.npy", np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8))
    np.save(split / "boxes.npy", np.tile(np.array([8, 4, 24, 20], dtype=np.float32), (4, 1, 1)))
    np.save(split / "classes.npy", batch["classes"].numpy())
    md, summary = report_section(models, items, split, iou_threshold=0.5, batch_size=2)
    assert set(summary["heads"]) == {"individual", "single"}
    assert set(summary["heads"]["single"]) == {"av"}
    assert set(summary["moments"]["individual"]) == {"selected", "mid"}
    assert {"AP", "box_IoU"} <= set(summary["moments"]["individual"]["mid"])
    full = summary["box_references"]["whole frame as the box"]
    assert full["box_IoU"] == pytest.approx(16 * 16 / (32 * 32))   # the box covers a quarter
    for text in ("AV-head", "selected", "mid", "whole frame as the box", "visual-only objectness box"):
        assert text in md
    assert "('" not in md                                               # no tuple row labels
    assert f"{100 * summary['heads']['single']['av']:.1f}" in md         # percent, scaled once
