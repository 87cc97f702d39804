"""The AVGN paper's single-source baselines (avgn_lib.models.attention10k, ots, lvs): shapes,
batched == unbatched, one-batch overfitting, silent samples, and each objective against a
hand-written version of its equations on tiny tensors."""
import math

import pytest
import torch
import torch.nn.functional as F

from avgn_lib.models import build_model
from avgn_lib.models.attention10k import softmax_triplet
from avgn_lib.models.lvs import lvs_contrastive, region_mean, trimap
from avgn_lib.models.ots import correspondence_bce

C = 3
METHODS = ["attention10k", "ots", "lvs", "mix_localize", "dmc", "slavc",  # generic tests: all
           "coarse_to_fine", "dsol"]  # (the two-stage ones in stage 1 here; stage 2: test_two_stage_baselines)
# SLAVC's 0.9 image dropout makes a 20-step loss curve noise; its objective is what is tested.
# CoarsetoFine's k-means targets of a random tiny trunk's nearly parallel pooled features are
# almost uniform at the default temperature (a BCE floor of H(1/K)); a sharp one makes them fit.
OVERFIT = {"slavc": {"dropout_img": 0.0}, "coarse_to_fine": {"label_temp": 1e-3}}
SINGLE_MAP = ["attention10k", "ots", "lvs"]  # one map per sample (the others: test_baselines_multi)
TINY = {"width": 8, "dim": 16}


def make_batch(b: int = 6, size: int = 32, seed: int = 0, silent: tuple[int, ...] = ()):
    g = torch.Generator().manual_seed(seed)
    classes = torch.full((b, 2), -1, dtype=torch.long)
    classes[:, 0] = torch.arange(b) % C
    classes[1::2, 1] = (torch.arange(b)[1::2] + 1) % C
    classes[list(silent)] = -1
    return {"image": torch.randn(b, 3, size, size, generator=g),
            "spec": torch.randn(b, 1, 32, 32, generator=g), "classes": classes}


def tiny(name: str, **kw):
    torch.manual_seed(0)
    return build_model(name, C, {**TINY, **kw})


def total(model, batch):
    terms = model.loss(model(batch), batch)
    assert set(terms) == set(model.loss_weights)
    return sum(model.loss_weights[k] * v for k, v in terms.items())


def overfit(model, batch, steps: int = 20, lr: float = 1e-2) -> list[float]:
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
    for _ in range(steps):
        loss = total(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return history


@pytest.mark.parametrize("name", SINGLE_MAP)
def test_shapes_and_contract_fields(name):
    model = tiny(name).eval()
    batch = make_batch(size=64)  # stride 16: a 4x4 map
    out = model(batch)
    assert out["feat_a"].shape == (6, 16)
    assert not model.class_aware
    loc = model.localize(batch["image"], batch["spec"], classes=batch["classes"])
    assert loc["maps"].shape == (6, 2, 4, 4) and loc["scores"].shape == (6, 2)
    assert loc["classes"].dtype == torch.int64 and (loc["classes"] == -1).all()
    pad = batch["classes"] < 0
    assert (loc["maps"][pad] == 0).all() and (loc["scores"][pad] == 0).all()
    both = ~pad[:, 1]
    assert torch.equal(loc["maps"][both, 0], loc["maps"][both, 1])  # one map per sample
    free = model.localize(batch["image"], batch["spec"], num_sources=3)
    assert free["maps"].shape == (6, 3, 4, 4) and torch.equal(free["maps"][:, 0], free["maps"][:, 2])
    assert model.localize(batch["image"], batch["spec"])["maps"].shape == (6, 1, 4, 4)
    groups = model.param_groups(1e-3)
    assert sum(len(g["params"]) for g in groups) == len(list(model.parameters()))


@pytest.mark.parametrize("name", METHODS)
def test_batched_equals_unbatched(name):
    model = tiny(name).eval()
    batch = make_batch(b=3, size=48)
    full = model.localize(batch["image"], batch["spec"], classes=batch["classes"])
    for i in range(3):
        one = model.localize(batch["image"][i:i + 1], batch["spec"][i:i + 1],
                             classes=batch["classes"][i:i + 1])
        for key in ("maps", "scores"):
            assert torch.allclose(one[key], full[key][i:i + 1], atol=1e-5), key


@pytest.mark.parametrize("name", METHODS)
def test_overfit_one_batch_loss_halves(name):
    model = tiny(name, **OVERFIT.get(name, {})).train()
    history = overfit(model, make_batch(seed=3))
    assert all(math.isfinite(h) for h in history)
    assert history[-1] < 0.5 * history[0], history


@pytest.mark.parametrize("name", METHODS)
def test_silent_samples_are_neither_anchors_nor_negatives(name):
    model = tiny(name).eval()  # eval: BatchNorm must not mix the samples' statistics
    batch = make_batch(silent=(2,))
    base = total(model, batch)
    other = make_batch(seed=7)
    swapped = {**batch, "image": batch["image"].clone(), "spec": batch["spec"].clone()}
    swapped["image"][2], swapped["spec"][2] = other["image"][2], other["spec"][2]
    assert torch.allclose(total(model, swapped), base, atol=1e-6)
    # ...whereas a sounding sample's image does count (a single-source one: DSOL's stage 1
    # trains on single-source samples only).
    swapped["image"][4] = other["image"][4]
    assert not torch.allclose(total(model, swapped), base, atol=1e-6)


@pytest.mark.parametrize("name", METHODS)
def test_all_silent_batch_gives_a_connected_zero(name):
    model = tiny(name).train()
    batch = make_batch(b=4, silent=(0, 1, 2, 3))
    loss = total(model, batch)
    assert loss.item() == 0.0
    loss.backward()  # every parameter still sees the graph (DDP needs it)


@pytest.mark.parametrize("name", METHODS)
def test_bf16_autocast_keeps_losses_and_maps_in_fp32(name):
    model = tiny(name).train()
    batch = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.loss(model(batch), batch)
        maps = model.eval().localize(batch["image"], batch["spec"])["maps"]
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in terms.values())
    assert maps.dtype == torch.float32 and torch.isfinite(maps).all()


@pytest.mark.parametrize("name", METHODS)
def test_bad_inputs_raise_with_shapes(name):
    model = tiny(name)
    batch = make_batch()
    with pytest.raises(ValueError, match=r"image must be \(B, 3, H, W\), got \(6, 1, 32, 32\)"):
        model({**batch, "image": batch["image"][:, :1]})
    with pytest.raises(ValueError, match=r"spec must be .*got \(6, 32, 32\)"):
        model({**batch, "spec": batch["spec"][:, 0]})
    with pytest.raises(ValueError, match="batch sizes differ"):
        model({**batch, "spec": batch["spec"][:4]})
    with pytest.raises(ValueError, match=r"classes must be \(B=6, N\), got \(6,\)"):
        model.localize(batch["image"], batch["spec"], classes=batch["classes"][:, 0])
    with pytest.raises(ValueError, match="num_sources"):
        model.localize(batch["image"], batch["spec"], num_sources=0)
    with pytest.raises(ValueError, match="unknown key"):
        build_model(name, C, {"depth": 3})


@pytest.mark.parametrize("name, bad, match", [
    ("attention10k", {"attention_tau": 0.0}, "attention_tau"),
    ("ots", {"init_scale": -1.0}, "init_scale"),
    ("lvs", {"eps_p": 0.3, "eps_n": 0.4}, "eps_n"),
    ("lvs", {"temperature": 0.0}, "temperature"),
    ("lvs", {"easy_negatives": "all"}, "easy_negatives"),
    ("mix_localize", {"num_sources": 0}, "num_sources"),
    ("mix_localize", {"cycle_temp": 0.0}, "cycle_temp"),
    ("dmc", {"iters": 0}, "iters"),
    ("dmc", {"assign_temp": -1.0}, "assign_temp"),
    ("slavc", {"dropout_img": 1.0}, "dropout_img"),
    ("slavc", {"momentum_aud": 1.5}, "momentum_aud"),
    ("coarse_to_fine", {"pseudo_labels": "tags"}, "pseudo_labels"),
    ("coarse_to_fine", {"stage1_steps": 0}, "stage1_steps"),
    ("coarse_to_fine", {"active_threshold": 1.0}, "active_threshold"),
    ("coarse_to_fine", {"pseudo_labels": "labels", "num_clusters": 5}, "num_clusters"),
    ("dsol", {"cluster_start": 1000, "stage1_steps": 1000}, "cluster_start"),
    ("dsol", {"mask_threshold": 0.0}, "mask_threshold"),
    ("dsol", {"pseudo_labels": "labels", "num_clusters": 5}, "num_clusters"),
])
def test_config_checks(name, bad, match):
    with pytest.raises(ValueError, match=match):
        build_model(name, C, {**TINY, **bad})


# --- Attention10k ---------------------------------------------------------------------------

def test_attention10k_map_is_the_attention():
    model = tiny("attention10k").eval()
    batch = make_batch(size=64)
    att = model(batch)["attention"]  # (B, P)
    assert torch.allclose(att.sum(-1), torch.ones(6)) and (att > 0).all()
    maps = model.localize(batch["image"], batch["spec"], num_sources=1)["maps"]
    assert torch.allclose(maps.flatten(1), att, atol=1e-6)
    # A lower attention temperature sharpens the same ranking.
    sharp = tiny("attention10k", attention_tau=0.05).eval()(batch)["attention"]
    assert torch.equal(sharp.argsort(-1), att.argsort(-1)) and sharp.amax(-1).gt(att.amax(-1)).all()


def test_softmax_triplet_matches_hoffer_ailon_by_hand():
    g = torch.Generator().manual_seed(0)
    z = F.normalize(torch.randn(4, 5, generator=g), dim=-1)
    a = F.normalize(torch.randn(4, 5, generator=g), dim=-1)
    valid = torch.tensor([True, True, False, True])
    terms = []
    for i in range(4):
        for j in range(4):
            if i != j and valid[i] and valid[j]:
                d = torch.stack([(z[i] - a[i]).norm(), (z[i] - a[j]).norm()])
                terms.append(((d.softmax(0) - torch.tensor([0.0, 1.0])) ** 2).sum())
    assert torch.allclose(softmax_triplet(z, a, valid), torch.stack(terms).mean(), atol=1e-6)


# --- OTS -------------------------------------------------------------------------------------

def test_ots_loss_by_hand():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
    valid = torch.tensor([True, True, False])
    match, mismatch = correspondence_bce(logits, valid)
    assert torch.allclose(match, (F.softplus(-logits[0, 0]) + F.softplus(-logits[1, 1])) / 2)
    assert torch.allclose(mismatch, (F.softplus(logits[0, 1]) + F.softplus(logits[1, 0])) / 2)


def test_ots_matched_pairs_score_above_mismatched_after_overfit():
    model = tiny("ots").train()
    batch = make_batch(seed=3)
    overfit(model, batch, steps=40)
    model.eval()  # scores through localize, with BatchNorm's running statistics
    b = len(batch["image"])
    scores = torch.stack([model.localize(batch["image"][j:j + 1].expand(b, -1, -1, -1),
                                         batch["spec"], num_sources=1)["scores"][:, 0]
                          for j in range(b)], dim=1)  # (audio i, image j)
    matched = scores.diagonal()
    mismatched = scores.masked_fill(torch.eye(b, dtype=torch.bool), -1.0).amax(1)
    assert (matched > mismatched).all(), scores
    assert (matched > 0.5).all() and (mismatched < 0.5).all()
    maps = model.localize(batch["image"], batch["spec"], num_sources=1)
    assert ((maps["maps"] >= 0) & (maps["maps"] <= 1)).all()  # per-location probabilities
    assert torch.allclose(maps["scores"][:, 0], matched)


# --- LVS -------------------------------------------------------------------------------------

def test_lvs_trimap_on_a_hand_built_map():
    sim = torch.full((4, 4), 0.1)
    sim[:2, :2] = 0.9    # clearly above eps_p: positive
    sim[3, 3] = 0.52     # between eps_n and eps_p: the ignored band
    pos, neg = trimap(sim, eps_p=0.65, eps_n=0.4, tau_soft=0.03)
    block = torch.zeros(4, 4, dtype=torch.bool)
    block[:2, :2] = True
    band = torch.zeros(4, 4, dtype=torch.bool)
    band[3, 3] = True
    assert (pos[block] > 0.99).all() and (pos[~block] < 0.02).all()
    assert (neg[block] < 1e-3).all() and (neg[band] < 0.02).all()
    assert (neg[~block & ~band] > 0.99).all()
    flat = sim.flatten()
    assert torch.allclose(region_mean(flat, (flat - 0.65) / 0.03), torch.tensor(0.9), atol=2e-3)
    assert torch.allclose(region_mean(flat, (0.4 - flat) / 0.03), torch.tensor(0.1), atol=1e-3)
    # Far below both thresholds the positive mean is still finite: a soft maximum.
    low = torch.tensor([-0.9, -0.5, -0.8])
    assert torch.allclose(region_mean(low, (low - 0.65) / 0.03), torch.tensor(-0.5), atol=1e-4)


@pytest.mark.parametrize("easy", ["whole_map", "positive_region"])
def test_lvs_loss_matches_the_equations_by_hand(easy):
    g = torch.Generator().manual_seed(1)
    fa = F.normalize(torch.randn(4, 3, generator=g), dim=-1)
    fv = F.normalize(torch.randn(4, 6, 3, generator=g), dim=-1)
    valid = torch.tensor([True, False, True, True])
    eps_p, eps_n, tau, temp = 0.3, 0.0, 0.1, 0.07  # thresholds inside the cosines' range

    def masked(s, m):
        return (m * s).sum() / m.sum()

    losses = []
    for i in range(4):
        if not valid[i]:
            continue
        own = fv[i] @ fa[i]  # (P,)
        logits = [masked(own, torch.sigmoid((own - eps_p) / tau)),
                  masked(own, 1 - torch.sigmoid((own - eps_n) / tau))]
        for j in range(4):
            if j != i and valid[j]:
                s = fv[j] @ fa[i]
                logits.append(s.mean() if easy == "whole_map"
                              else masked(s, torch.sigmoid((s - eps_p) / tau)))
        losses.append(-torch.log_softmax(torch.stack(logits) / temp, 0)[0])
    expected = torch.stack(losses).mean()
    got = lvs_contrastive(fa, fv, valid, eps_p, eps_n, tau, temp, easy)
    assert torch.allclose(got, expected, atol=1e-5)


def test_lvs_defaults_are_the_papers_thresholds_and_the_codes_negatives():
    model = tiny("lvs")
    c = model.cfg
    assert (c.eps_p, c.eps_n, c.tau_soft, c.temperature) == (0.65, 0.4, 0.03, 0.07)
    assert c.easy_negatives == "positive_region"  # chosen on val (lvs.py docstring)
