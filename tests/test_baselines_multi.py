"""Mix-and-Localize, DMC and SLAVC (avgn_lib.models.mix_localize, dmc, slavc): shapes and each
method's own mechanism on tiny tensors (the random walk, the soft k-means, the momentum encoders).
The generic checks (batched == unbatched, one-batch overfit, silent samples, bf16, config) are
parametrized over every baseline in tests/test_baselines.py."""
import math

import pytest
import torch
import torch.nn.functional as F

from avgn_lib.models import build_model
from avgn_lib.models.dmc import centre_distance, max_margin, soft_kmeans
from avgn_lib.models.mix_localize import cycle_loss, transitions
from avgn_lib.models.slavc import slavc_logits

from test_baselines import make_batch, total

C = 3
METHODS = ["mix_localize", "dmc", "slavc"]
TINY = {"width": 8, "dim": 16}


def tiny(name: str, **kw):
    torch.manual_seed(0)
    return build_model(name, C, {**TINY, **kw})


@pytest.mark.parametrize("name", METHODS)
def test_shapes_and_contract_fields(name):
    model = tiny(name).eval()
    batch = make_batch(size=64)  # stride 16: a 4x4 map
    assert not model.class_aware
    terms = model.loss(model(batch), batch)
    assert set(terms) == set(model.loss_weights) and all(t.dim() == 0 for t in terms.values())
    loc = model.localize(batch["image"], batch["spec"], classes=batch["classes"])
    assert loc["maps"].shape == (6, 2, 4, 4) and loc["scores"].shape == (6, 2)
    assert loc["classes"].dtype == torch.int64 and (loc["classes"] == -1).all()
    pad = batch["classes"] < 0
    assert (loc["maps"][pad] == 0).all() and (loc["scores"][pad] == 0).all()
    assert model.localize(batch["image"], batch["spec"], num_sources=3)["maps"].shape == (6, 3, 4, 4)
    assert model.localize(batch["image"], batch["spec"])["maps"].shape == (6, 1, 4, 4)
    grouped = [p for g in model.param_groups(1e-3) for p in g["params"]]
    assert len(grouped) == len({id(p) for p in grouped})
    assert {id(p) for p in model.parameters() if p.requires_grad} <= {id(p) for p in grouped}


# --- Mix-and-Localize ------------------------------------------------------------------------

def test_random_walk_rows_sum_to_one_and_matching_nodes_close_the_cycle():
    g = torch.Generator().manual_seed(0)
    audio = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    regions = F.normalize(torch.randn(10, 8, generator=g), dim=-1)
    log_av, log_va = transitions(audio, regions, 0.07)
    assert log_av.shape == (4, 10) and log_va.shape == (10, 4)
    assert torch.allclose(log_av.exp().sum(1), torch.ones(4), atol=1e-6)
    assert torch.allclose(log_va.exp().sum(1), torch.ones(10), atol=1e-6)
    back = log_av.exp() @ log_va.exp()  # (M, M) audio -> visual -> audio
    assert torch.allclose(back.sum(1), torch.ones(4), atol=1e-5)
    assert torch.allclose(cycle_loss(audio, regions, 0.07), -back.diagonal().log().mean(), atol=1e-5)
    # Hand-built graph: each source has its own region(s) (orthogonal directions): the walk
    # returns with certainty; two sources sharing one direction cannot be told apart (log 2).
    eye = torch.eye(3)
    assert cycle_loss(eye, torch.cat([eye, eye]), 0.05).item() < 1e-6
    twins = torch.stack([eye[0], eye[0], eye[1]])
    assert cycle_loss(twins, eye[:2], 0.05).item() == pytest.approx(2 / 3 * math.log(2), abs=1e-4)


def test_mix_localize_slots_beyond_k_repeat_the_heads():
    model = tiny("mix_localize", num_sources=2).eval()
    batch = make_batch(size=64)
    maps = model.localize(batch["image"], batch["spec"], num_sources=5)["maps"]
    assert not torch.allclose(maps[:, 0], maps[:, 1])  # two heads, two maps
    for n in range(2, 5):
        assert torch.equal(maps[:, n], maps[:, n % 2])
    out = model(batch)
    sim = torch.einsum("bkd,bpd->bkp", out["feat_a"], out["feat_v"]).reshape(6, 2, 4, 4)
    assert torch.allclose(maps[:, :2], sim, atol=1e-5)
    assert tiny("mix_localize", num_sources=3).eval()(batch)["feat_a"].shape == (6, 3, 16)


# --- DMC -------------------------------------------------------------------------------------

def test_soft_kmeans_recovers_two_well_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.eye(6)[:2] * 3.0
    labels = torch.arange(40) % 2
    x = F.normalize(centres[labels] + 0.3 * torch.randn(40, 6, generator=g), dim=-1)
    perm = torch.randperm(40, generator=g)
    x, labels = x[perm][None], labels[perm]
    init = F.normalize(torch.tensor([[1.0, 0.8, 0.3, 0, 0, 0], [0.8, 1.0, 0, 0.3, 0, 0]]), dim=-1)
    c, s = soft_kmeans(x, init, iters=5, tau=0.1)
    assert c.shape == (1, 2, 6) and s.shape == (1, 40, 2)
    assert torch.allclose(s.sum(-1), torch.ones(1, 40), atol=1e-6)
    assert torch.allclose(c.norm(dim=-1), torch.ones(1, 2), atol=1e-6)
    hard = s[0].argmax(-1)
    assert torch.equal(hard, labels) or torch.equal(hard, 1 - labels)
    assert (s[0].amax(-1) > 0.9).all()
    assert torch.allclose(c[0, hard[labels == 0][0]], F.normalize(x[0, labels == 0].mean(0), dim=0),
                          atol=0.05)


def test_dmc_max_margin_by_hand_and_map_is_the_best_pair_assignment():
    g = torch.Generator().manual_seed(2)
    ca = F.normalize(torch.randn(3, 2, 4, generator=g), dim=-1)
    cv = F.normalize(torch.randn(3, 2, 4, generator=g), dim=-1)
    dist = centre_distance(ca, cv)
    assert torch.allclose(dist[0, 1], 1 - (ca[0] * cv[1]).sum(-1).mean())
    valid = torch.tensor([True, False, True])
    hinge = [F.relu(0.2 + dist[i, i] - dist[i, j]) for i, j in [(0, 2), (2, 0)]]
    assert torch.allclose(max_margin(dist, valid, 0.2), torch.stack(hinge).mean())

    model = tiny("dmc").eval()
    batch = make_batch(size=64)
    out = model(batch)
    assert torch.allclose(out["assign_v"].sum(-1), torch.ones(6, 16), atol=1e-5)
    loc = model.localize(batch["image"], batch["spec"], num_sources=2)
    agree = (out["centres_a"] * out["centres_v"]).sum(-1)  # (B, k)
    best = agree.argmax(1)
    expected = out["assign_v"][torch.arange(6), :, best].reshape(6, 4, 4)
    assert torch.allclose(loc["maps"][:, 0], expected, atol=1e-5)
    assert torch.allclose(loc["scores"][:, 0], (1 + agree.amax(1)) / 2, atol=1e-5)
    assert (loc["scores"][:, 0] >= loc["scores"][:, 1]).all()


# --- SLAVC -----------------------------------------------------------------------------------

def test_slavc_logits_by_hand():
    g = torch.Generator().manual_seed(0)
    v1, v2 = (F.normalize(torch.randn(3, 5, 4, generator=g), dim=-1) for _ in range(2))
    a1, a2 = (F.normalize(torch.randn(3, 4, generator=g), dim=-1) for _ in range(2))
    tau = 0.1
    expected = torch.zeros(3, 3)
    for n in range(3):
        corr = torch.softmax(v1[n] @ a1.t() / tau, dim=1)  # (P, M): over audio
        for m in range(3):
            loc = torch.softmax(v2[n] @ a2[m] / tau, dim=0)  # (P,): over locations
            expected[n, m] = (loc * corr[:, m]).sum().log()
    assert torch.allclose(slavc_logits(v1, v2, a1, a2, tau), expected, atol=1e-5)


def test_slavc_momentum_update_and_no_gradient_to_ema():
    model = tiny("slavc", momentum_img=0.9, momentum_aud=0.8).train()
    online, ema = model.audio.proj.weight, model.momentum["audio"].proj.weight
    assert torch.equal(online, ema)  # initialized as a copy
    with torch.no_grad():
        online.add_(1.0)
        model.visual_proj2.weight.add_(1.0)
    old_a, old_v = ema.clone(), model.momentum["visual_proj2"].weight.clone()
    batch = make_batch()
    loss = total(model, batch)  # a training forward updates the targets first
    assert torch.allclose(ema, 0.8 * old_a + 0.2 * online.detach(), atol=1e-6)
    assert torch.allclose(model.momentum["visual_proj2"].weight,
                          0.9 * old_v + 0.1 * model.visual_proj2.weight.detach(), atol=1e-6)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.momentum.parameters())
    assert model.audio.proj.weight.grad is not None
    ema_ids = {id(p) for p in model.momentum.parameters()}
    assert not ema_ids & {id(p) for g in model.param_groups(1e-3) for p in g["params"]}
    # no update in eval mode or without grad (validation, localize)
    frozen = ema.clone()
    with torch.no_grad():
        model(batch)
    model.eval()(batch)
    assert torch.equal(ema, frozen)
    # the copies are in the state_dict, so checkpoints round-trip them
    state = model.state_dict()
    assert "momentum.audio.proj.weight" in state and "momentum.visual_trunk.conv1.weight" in state


def test_slavc_frozen_trunk_is_shared_and_maps_come_from_the_momentum_encoders():
    model = tiny("slavc", trunk_trainable="none").eval()
    assert "visual_trunk" not in model.momentum  # the EMA of a frozen trunk is the trunk
    batch = make_batch(size=64)
    before = model.localize(batch["image"], batch["spec"])["maps"]
    with torch.no_grad():
        model.visual.proj.weight.add_(1.0)  # online only: the map does not move
    assert torch.equal(model.localize(batch["image"], batch["spec"])["maps"], before)
    with torch.no_grad():
        model.momentum["visual_proj"].weight.add_(1.0)
    assert not torch.allclose(model.localize(batch["image"], batch["spec"])["maps"], before)
    trunk_feat = model.visual.trunk(batch["image"])
    assert torch.allclose(model.localize(batch["image"], batch["spec"], trunk_feat=trunk_feat)["maps"],
                          model.localize(batch["image"], batch["spec"])["maps"], atol=1e-6)
