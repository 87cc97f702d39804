"""CoarsetoFine and DSOL (avgn_lib.models.coarse_to_fine, dsol): the stage switch (at the
configured step, kept by state_dict, checkpoints and an exact resume through the engine), each
method's own mechanism on hand-built tensors, and one-batch overfitting across both stages.
The generic checks (shapes, batched == unbatched, silent samples, bf16, config) are
parametrized over every baseline in tests/test_baselines.py (there in stage 1)."""
import math

import pytest
import torch
import torch.nn.functional as F

from avgn_lib import inference
from avgn_lib.engine import fit, train_config
from avgn_lib.models import build_model
from avgn_lib.models.coarse_to_fine import alignment, cam_pool, kmeans_step
from avgn_lib.models.dsol import distribution_match, object_features

from test_baselines import make_batch
from test_engine import ToyDataset

C = 3
TINY = {"width": 8, "dim": 16}
STAGE2_TERM = {"coarse_to_fine": "align", "dsol": "distribution"}
SWITCH = {"coarse_to_fine": {"stage1_steps": 3}, "dsol": {"stage1_steps": 3, "cluster_start": 1}}


def tiny(name: str, **kw):
    torch.manual_seed(0)
    return build_model(name, C, {**TINY, **kw})


def solo_batch(b: int = 6, seed: int = 3, labels: bool = False):
    """Single-source samples (DSOL's stage 1 uses no other), with multi-hot ``labels``."""
    batch = make_batch(b=b, seed=seed)
    batch["classes"][:, 1] = -1
    if labels:
        batch["labels"] = F.one_hot(batch["classes"][:, 0], C).float()
    return batch


def train_step(model, opt, batch) -> dict[str, float]:
    terms = model.loss(model(batch), batch)
    loss = sum(model.loss_weights[k] * v for k, v in terms.items())
    opt.zero_grad()
    loss.backward()
    opt.step()
    return {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}}


@pytest.mark.parametrize("name", ["coarse_to_fine", "dsol"])
def test_stage_switch_at_the_configured_step_and_state_dict_round_trip(name):
    model = tiny(name, **SWITCH[name]).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = solo_batch()
    stages, stage2 = [], []
    for _ in range(5):
        stages.append(model.stage)
        stage2.append(train_step(model, opt, batch)[STAGE2_TERM[name]])
    assert stages == [1, 1, 1, 2, 2] and int(model.steps_done) == 5
    assert stage2[:3] == [0.0, 0.0, 0.0] and all(t > 0 for t in stage2[3:]), stage2
    # validation passes (eval mode, or no gradient) are not optimizer steps
    with torch.no_grad():
        model.loss(model(batch), batch)
    model.eval()
    model.loss(model(batch), batch)
    assert int(model.steps_done) == 5

    state = model.state_dict()
    assert int(state["steps_done"]) == 5
    fresh = tiny(name, **SWITCH[name]).eval()
    assert fresh.stage == 1
    fresh.load_state_dict(state)
    assert fresh.stage == 2
    a = model.localize(batch["image"], batch["spec"], num_sources=2)
    b = fresh.localize(batch["image"], batch["spec"], num_sources=2)
    assert torch.equal(a["maps"], b["maps"]) and torch.equal(a["scores"], b["scores"])


@pytest.mark.parametrize("name", ["coarse_to_fine", "dsol"])
def test_the_engine_crosses_the_switch_and_resumes_it_exactly(name, tmp_path):
    """fit() knows nothing of stages: 2 steps per epoch, stage 2 from step 3; a run interrupted
    after epoch 1 (in stage 1) and resumed equals the straight run, and the checkpoint loads
    into stage 2."""
    cfg = {**SWITCH[name]}
    data = ToyDataset(n=16, size=32, sources=1)
    meta = {"method": name, "model_cfg": {**TINY, **cfg}, "class_names": ["a", "b", "c"],
            "data_cfg": {"image_size": 32}}

    def run(epochs, out, resume=False):
        model = tiny(name, **cfg)
        fit(model, data, None, train_config({"batch_size": 8, "epochs": epochs, "lr": 1e-3,
                                             "progress": False, "precision": "fp32"}),
            tmp_path / out, resume=resume, meta=meta)
        return model

    straight = run(3, "straight")
    assert int(straight.steps_done) == 6 and straight.stage == 2
    run(1, "resumed")
    resumed = run(3, "resumed", resume=True)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    loaded = inference.load_model(tmp_path / "straight" / "last.pt", device="cpu").model
    assert loaded.stage == 2 and int(loaded.steps_done) == 6
    if name == "dsol":
        assert bool(loaded.teacher_synced)


# --- CoarsetoFine ----------------------------------------------------------------------------

def test_cam_pool_follows_the_class_activation():
    feat = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [3.0, 1.0], [5.0, 5.0]]])  # (1, P=4, D=2)
    cam = torch.zeros(1, 4, 3)
    cam[0, 1, 0] = 0.7                    # class 0 active at one location only
    cam[0, 0, 1], cam[0, 2, 1] = 1.0, 3.0  # class 1: a weighted mean of two locations
    pooled = cam_pool(feat, cam)  # (1, K=3, D)
    assert torch.allclose(pooled[0, 0], feat[0, 1])
    assert torch.allclose(pooled[0, 1], (feat[0, 0] + 3 * feat[0, 2]) / 4)
    assert torch.equal(pooled[0, 2], torch.zeros(2))  # never active: no class feature


def test_c2f_fine_embeddings_are_the_cam_weighted_class_features():
    model = tiny("coarse_to_fine", stage1_steps=1).eval()
    model.steps_done.fill_(1)  # stage 2
    batch = solo_batch()
    out = model(batch)
    cam = F.relu(model.cls_v(out["feat_v"]))  # (B, P, K)
    expected = F.normalize(model.project_v(cam_pool(out["feat_v"], cam)), dim=-1)
    assert torch.allclose(out["z_v"], expected, atol=1e-5)
    # locations where class k does not activate do not enter its embedding
    k, b = 0, 0
    off = cam[b, :, k] == 0
    if off.any() and (~off).any():
        feat = out["feat_v"].clone()
        feat[b, off] += 10.0
        moved = cam_pool(feat, cam)
        assert torch.allclose(moved[b, k], cam_pool(out["feat_v"], cam)[b, k])


def test_c2f_alignment_by_hand_and_its_fixed_point():
    g = torch.Generator().manual_seed(0)
    za = F.normalize(torch.randn(2, 2, 4, generator=g), dim=-1)
    zv = F.normalize(torch.randn(2, 2, 4, generator=g), dim=-1)
    act_a = torch.tensor([[True, False], [True, True]])
    act_v = torch.tensor([[True, True], [False, True]])
    pos, neg = [], []
    for i in range(2):
        for k in range(2):
            for j in range(2):
                for m in range(2):
                    if act_a[i, k] and act_v[j, m]:
                        d = ((za[i, k] - zv[j, m]) ** 2).sum()
                        (pos if (i, k) == (j, m) else neg).append(d if (i, k) == (j, m)
                                                                   else F.relu(1.4 - d.sqrt()) ** 2)
    expected = torch.stack(pos).mean() + torch.stack(neg).mean()
    assert torch.allclose(alignment(za, zv, act_a, act_v, 1.4), expected, atol=1e-5)
    # matched pairs equal and every other pair orthogonal (distance sqrt 2 > 1.4): loss 0
    eye = torch.eye(4).reshape(2, 2, 4)
    every = torch.ones(2, 2, dtype=torch.bool)
    assert alignment(eye, eye, every, every, 1.4).item() == pytest.approx(0.0, abs=1e-6)
    assert alignment(eye, eye.flip(1), every, every, 1.4).item() > 1.0  # classes swapped


def test_c2f_maps_are_the_cam_in_stage_1_and_the_fine_similarity_in_stage_2():
    model = tiny("coarse_to_fine", stage1_steps=1).eval()
    batch = make_batch(size=64)  # 4x4 maps
    out = model(batch)
    top = out["logits_a"].argmax(1)
    loc = model.localize(batch["image"], batch["spec"], num_sources=2)
    cam = model.cls_v(out["feat_v"])[torch.arange(6), :, top].reshape(6, 4, 4)
    assert torch.allclose(loc["maps"][:, 0], cam, atol=1e-5) and (loc["classes"] == -1).all()
    assert torch.allclose(loc["scores"][:, 0], torch.sigmoid(out["logits_a"]).amax(1), atol=1e-6)
    model.steps_done.fill_(1)
    out = model(batch)
    loc = model.localize(batch["image"], batch["spec"], num_sources=2)
    zv = F.normalize(model.project_v(out["feat_v"]), dim=-1)  # (B, P, D)
    fine = (out["z_a"][torch.arange(6), top][:, None] * zv).sum(-1).reshape(6, 4, 4)
    assert torch.allclose(loc["maps"][:, 0], fine, atol=1e-5)
    assert (loc["scores"][:, 0] >= loc["scores"][:, 1]).all()


def test_c2f_pseudo_labels_kmeans_or_the_class_labels():
    batch = solo_batch(labels=True)
    model = tiny("coarse_to_fine").train()
    out = model(batch)
    assert model.pseudo_labels(out, batch) is None  # no centre seeded yet
    model.loss(out, batch)  # a training step seeds and moves the centres
    y = model.pseudo_labels(out, batch)
    assert y.shape == (6, C) and torch.allclose(y.sum(1), torch.ones(6))
    assert torch.allclose(model.centres.norm(dim=1), torch.ones(C)) and model.counts.sum().item() == 6

    strong = tiny("coarse_to_fine", pseudo_labels="labels").eval()
    assert strong.class_aware and not model.class_aware
    assert torch.equal(strong.pseudo_labels(strong(batch), batch), batch["labels"])
    given = torch.tensor([[2, -1]] * 6)
    loc = strong.localize(batch["image"], batch["spec"], classes=given)
    assert torch.equal(loc["classes"], given) and loc["class_probs"].shape == (6, C)
    assert (loc["maps"][:, 1] == 0).all()


def test_kmeans_step_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    labels = torch.arange(30) % 3
    x = F.normalize(torch.eye(5)[labels] * 3 + 0.3 * torch.randn(30, 5, generator=g), dim=-1)
    centres, counts = torch.zeros(3, 5), torch.zeros(3)
    for i in range(0, 30, 10):
        kmeans_step(centres, counts, x[i:i + 10])
    hard = (x @ centres.t()).argmax(1)
    for c in range(3):  # one centre per true cluster
        assert (hard[labels == c] == hard[labels == c][0]).all()
    assert len(set(hard.tolist())) == 3 and counts.sum().item() == 30


# --- DSOL ------------------------------------------------------------------------------------

def test_dsol_distribution_match_is_zero_exactly_when_the_distributions_agree():
    g = torch.Generator().manual_seed(0)
    teacher = torch.randn(4, 5, generator=g)
    valid = torch.ones(4, dtype=torch.bool)
    assert distribution_match(teacher, teacher, valid).item() == pytest.approx(0.0, abs=1e-6)
    assert distribution_match(teacher + 3.0, teacher, valid).item() == pytest.approx(0.0, abs=1e-6)
    other = torch.randn(4, 5, generator=g)
    p, q = teacher.softmax(-1), other.softmax(-1)
    expected = (p * (p.log() - q.log())).sum(-1).mean()
    assert distribution_match(other, teacher, valid).item() > 0
    assert torch.allclose(distribution_match(other, teacher, valid), expected, atol=1e-6)
    mask = torch.tensor([True, False, True, False])  # invalid rows are left out
    assert torch.allclose(distribution_match(other, teacher, mask),
                          (p * (p.log() - q.log())).sum(-1)[mask].mean(), atol=1e-6)


def test_dsol_object_features_pool_the_sounding_area():
    trunk = torch.arange(8.0).reshape(1, 2, 2, 2)  # (B, C'=2, 2, 2)
    area = torch.tensor([[0.9, 0.01, 0.6, 0.02]])
    assert torch.allclose(object_features(trunk, area, 0.05), trunk.flatten(2)[0][:, [0, 2]].mean(1))
    silent = torch.full((1, 4), 0.01)  # no sounding location: the whole image
    assert torch.allclose(object_features(trunk, silent, 0.05), trunk.flatten(2).mean(-1))


def test_dsol_stage1_trains_on_single_source_samples_only():
    model = tiny("dsol", stage1_steps=2, cluster_start=0).eval()
    batch = make_batch()  # odd samples have two sources
    other = make_batch(seed=7)
    swapped = {**batch, "image": batch["image"].clone()}
    swapped["image"][3] = other["image"][3]
    terms = model.loss(model(batch), batch)
    assert torch.allclose(sum(model.loss(model(swapped), swapped).values()), sum(terms.values()))


def test_dsol_teacher_is_the_frozen_stage1_audio_branch():
    model = tiny("dsol", stage1_steps=2, cluster_start=0).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = solo_batch()
    for _ in range(2):
        train_step(model, opt, batch)
    assert not bool(model.teacher_synced)
    at_switch = {k: v.clone() for k, v in model.audio.state_dict().items()}
    train_step(model, opt, batch)  # the first stage-2 step copies, then trains on
    assert bool(model.teacher_synced)
    for key, value in model.teacher["audio"].state_dict().items():
        assert torch.equal(value, at_switch[key]), key
    assert not torch.equal(model.audio.state_dict()["proj.weight"], at_switch["proj.weight"])
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
    grouped = {id(p) for g in model.param_groups(1e-3) for p in g["params"]}
    assert not grouped & {id(p) for p in model.teacher.parameters()}
    # stage-2 maps: a softmax over the K categories at each location
    loc = model.eval().localize(batch["image"], batch["spec"], num_sources=C)
    assert torch.allclose(loc["maps"].sum(1), torch.ones(6, 2, 2), atol=1e-5)
    probs = model(batch)["teacher_logits"].softmax(-1)
    assert torch.allclose(loc["scores"], probs.sort(1, descending=True).values, atol=1e-6)


def test_dsol_stage2_without_a_dictionary_says_so():
    model = tiny("dsol", stage1_steps=1, cluster_start=0).train()
    batch = make_batch()
    batch["classes"][:, 1] = (batch["classes"][:, 0] + 1) % C  # every sample a duet
    model.loss(model(batch), batch)
    with pytest.raises(ValueError, match="0 of 3 dictionary entries formed"):
        model(batch)


# --- both: one batch, both stages ------------------------------------------------------------

@pytest.mark.parametrize("name, extra", [
    ("coarse_to_fine", {"pseudo_labels": "labels"}),
    ("coarse_to_fine", {"label_temp": 1e-3}),  # k-means targets, sharp (see test_baselines.OVERFIT)
    ("dsol", {"cluster_start": 5}),
    ("dsol", {"cluster_start": 5, "pseudo_labels": "labels"}),
])
def test_overfit_one_batch_through_both_stages(name, extra):
    model = tiny(name, stage1_steps=20, **extra).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = solo_batch(b=8, labels=True)
    history = [train_step(model, opt, batch) for _ in range(40)]
    assert all(math.isfinite(h["loss"]) for h in history)
    term = STAGE2_TERM[name]
    assert history[19]["loss"] < 0.5 * history[0]["loss"], [h["loss"] for h in history[:20]]
    assert history[-1][term] < 0.7 * history[20][term], [h[term] for h in history[20:]]
