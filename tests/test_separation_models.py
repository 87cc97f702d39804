"""AME and AMnet on tiny inputs: the triplet ordering, the residual fusion's invariant, shapes,
bad input, and a loss that falls when one batch is overfit."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avgn_lib.separation.data import MixDataset, SoloScenes, draw_mixtures
from avgn_lib.separation.models import build_separator
from avgn_lib.separation.models.ame import standardize, triplet_loss
from avgn_lib.separation.models.amnet import residual_fusion
from avgn_lib.separation.stft import STFTConfig

from separation_fixtures import write_solo_split

STFT = STFTConfig(n_fft=254, hop=127)
AME = {"width": 4, "audio_width": 4}
AMNET = {"pretrained": False, "spec_width": 8, "spec_depth": 2, "refine_width": 8,
         "refine_depth": 2, "dim": 16, "heads": 4}


def _batch(tmp_path, n_mix: int = 2, count: int = 4) -> tuple[SoloScenes, dict]:
    solo = SoloScenes(write_solo_split(tmp_path / "s", n=9), audio_rate=11025)
    data = MixDataset(solo, n_mix, draw_mixtures(solo, n_mix, count, seed=0))
    return solo, torch.utils.data.default_collate([data[i] for i in range(len(data))])


def test_triplet_loss_prefers_the_synchronized_pair():
    gen = torch.Generator().manual_seed(0)
    env = standardize(torch.rand(16, 8, generator=gen))              # (B, T') motion envelopes
    synced = standardize(env + 0.05 * torch.randn(16, 8, generator=gen))
    shifted = standardize(torch.roll(synced, 4, dims=1))               # same sound, out of step
    right = triplet_loss(env, synced, shifted, margin=2.0)
    wrong = triplet_loss(env, shifted, synced, margin=2.0)
    assert right < wrong
    assert right >= 0 and torch.isfinite(wrong)


def test_residual_fusion_moves_evidence_and_keeps_the_sum():
    base = torch.randn(2, 3, 5, 4)
    pairs = torch.tensor([(n, m) for n in range(3) for m in range(3) if n != m])
    residual = torch.randn(2, len(pairs), 5, 4)
    out = residual_fusion(base, residual, pairs)
    assert torch.allclose(out.sum(1), base.sum(1), atol=1e-5)
    assert not torch.allclose(out, base)


def test_ame_shapes_eval_shift_and_short_clip_error(tmp_path):
    solo = SoloScenes(write_solo_split(tmp_path / "s", n=6), audio_rate=11025)
    batch = torch.utils.data.default_collate([solo[i] for i in range(4)])
    ame = build_separator("ame", solo.num_classes, AME).eval()
    out = ame(batch)
    assert out["motion"].shape == out["audio"].shape == out["audio_shifted"].shape == (4, 8)
    assert out["shift"].tolist() == [4] * 4                            # eval: half the clip
    assert ame.cam(batch["clip"]).shape[0] == 4
    with pytest.raises(ValueError, match="frames"):
        ame({**batch, "clip": batch["clip"][:, :, :2]})


def test_amnet_outputs_and_separates_every_source(tmp_path):
    solo, batch = _batch(tmp_path, n_mix=3, count=2)
    ame = build_separator("ame", solo.num_classes, AME)
    amnet = build_separator("amnet", solo.num_classes, AMNET, motion=ame.motion, stft_cfg=STFT).eval()
    out = amnet(batch)
    bins, frames = STFT.bins, STFT.frames(batch["mixture"].shape[-1])
    assert out["logits"].shape == out["logits_appearance"].shape == (2, 3, bins, frames)
    waves = amnet.separate(batch)
    assert waves["amnet"].shape == waves["appearance"].shape == batch["sources"].shape
    # the refinement's last layer starts at zero: before training both stages agree
    assert torch.allclose(out["logits"], out["logits_appearance"], atol=1e-6)


@pytest.mark.parametrize("name", ["ame", "amnet"])
def test_overfitting_one_batch_lowers_the_loss(tmp_path, name):
    torch.manual_seed(0)
    solo, batch = _batch(tmp_path)
    ame = build_separator("ame", solo.num_classes, AME)
    if name == "ame":
        model = ame
        batch = torch.utils.data.default_collate([solo[i] for i in range(8)])
    else:
        model = build_separator("amnet", solo.num_classes, AMNET, motion=ame.motion, stft_cfg=STFT)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=3e-3)
    model.train()
    losses = []
    for _ in range(25):
        if name == "ame":  # a fixed negative, so the loss measures fitting, not a new shift
            torch.manual_seed(1)
        terms = model.loss(model(batch), batch)
        total = sum(model.loss_weights[k] * v for k, v in terms.items())
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    assert np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3]), losses
