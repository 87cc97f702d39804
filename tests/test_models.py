"""Tests for avgn_lib.models: encoders, AVGN, ablations, registry."""
import pytest
import torch
from torch import nn

from avgn_lib.models import available, build_model, default_config
from avgn_lib.models.avgn import AVGN, AVGNConfig, assign
from avgn_lib.models.common import DualEncoderMethod
from avgn_lib.models.encoders import AudioEncoder, VisualEncoder

C = 6
TINY = dict(width=8, dim=32, heads=2, depth=1)


def make_batch(b: int = 4, size: int = 64, spec: tuple[int, int] = (48, 40), seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    classes = torch.full((b, 2), -1, dtype=torch.long)
    labels = torch.zeros(b, C)
    for i in range(b):
        classes[i, 0] = i % C
        if i % 2:
            classes[i, 1] = (i + 2) % C
        labels[i, classes[i][classes[i] >= 0]] = 1
    return {
        "image": torch.randn(b, 3, size, size, generator=g),
        "spec": torch.randn(b, 1, *spec, generator=g),
        "labels": labels,
        "classes": classes,
    }


def tiny(**kw) -> AVGN:
    torch.manual_seed(0)
    return AVGN(AVGNConfig(**{**TINY, **kw}), C)


@pytest.mark.parametrize("stride", [16, 32])
@pytest.mark.parametrize("size", [64, 96])
def test_encoder_shapes(size, stride):
    enc = VisualEncoder(width=8, dim=24, stride=stride)
    out = enc(torch.randn(2, 3, size, size + 32))
    assert out.shape == (2, 24, -(-size // stride), -(-(size + 32) // stride))
    audio = AudioEncoder(width=8, dim=24)(torch.randn(2, 1, 57, 33))
    assert audio.shape == (2, 24)


@pytest.mark.parametrize("stride", [16, 32])
@pytest.mark.parametrize("size", [64, 96])
def test_avgn_output_shapes(size, stride):
    model = tiny(visual_stride=stride)
    batch = make_batch(size=size)
    out = model(batch)
    p = (size // stride) ** 2
    assert out["feat_v"].shape == (4, p, 32)
    assert out["class_a"].shape == out["class_v"].shape == (4, C, 32)
    assert out["assign_v"].shape == (4, p, C)
    assert out["presence_a"].shape == (4, C)
    assert out["token_logits"].shape == (C, C)
    res = model.eval().localize(batch["image"], batch["spec"], classes=batch["classes"])
    assert res["maps"].shape == (4, 2, size // stride, size // stride)


def test_pretrained_loading_roundtrip(tmp_path):
    src = VisualEncoder(width=64, dim=16)
    state = {k: v.clone() for k, v in src.trunk.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # torchvision files carry the classifier
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    dst = VisualEncoder(width=64, dim=16, stride=16)
    dst.load_pretrained(path)
    assert torch.equal(dst.trunk.layer4[1].conv2.weight, src.trunk.layer4[1].conv2.weight)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        dst.load_pretrained(tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="width=64"):
        VisualEncoder(width=8).load_pretrained(path)
    torch.save({"conv1.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="bad.pth"):
        dst.load_pretrained(tmp_path / "bad.pth")


@pytest.mark.parametrize("assignment", ["softmax", "hard"])
def test_batched_equals_unbatched(assignment):
    model = tiny(assignment=assignment).eval()
    batch = make_batch(b=3)
    full = model(batch)
    full_loc = model.localize(batch["image"], batch["spec"], classes=batch["classes"])
    full_top = model.localize(batch["image"], batch["spec"], num_sources=2)
    for i in range(3):
        one = {k: v[i : i + 1] for k, v in batch.items()}
        out = model(one)
        for key in ("feat_v", "class_a", "class_v", "presence_a", "presence_v", "assign_v"):
            assert torch.allclose(out[key], full[key][i : i + 1], atol=1e-5), key
        loc = model.localize(one["image"], one["spec"], classes=one["classes"])
        assert torch.allclose(loc["maps"], full_loc["maps"][i : i + 1], atol=1e-5)
        top = model.localize(one["image"], one["spec"], num_sources=2)
        assert torch.equal(top["classes"], full_top["classes"][i : i + 1])


def test_hard_assignment_is_exactly_one_hot_at_eval():
    model = tiny(assignment="hard").eval()
    out = model(make_batch())
    for key in ("assign_v", "assign_a"):
        a = out[key]
        assert set(a.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(a.sum(-1), torch.ones_like(a.sum(-1)))


def test_softmax_assignment_sums_to_one_over_classes():
    out = tiny().eval()(make_batch())
    assert torch.allclose(out["assign_v"].sum(-1), torch.ones(4, 16))
    assert (out["assign_v"] > 0).all()


def test_gumbel_path_is_one_hot_and_differentiable():
    torch.manual_seed(1)
    logits = torch.randn(2, 5, C, requires_grad=True)
    a = assign(logits, hard=True, training=True)
    assert torch.allclose(a.detach().sum(-1), torch.ones(2, 5))
    assert set(a.detach().unique().tolist()) <= {0.0, 1.0}
    (a * torch.randn_like(a)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    # Training noise makes repeated draws differ; eval is deterministic argmax.
    draws = {tuple(assign(logits, True, True).argmax(-1).flatten().tolist()) for _ in range(20)}
    assert len(draws) > 1
    assert torch.equal(assign(logits, True, False).argmax(-1), logits.argmax(-1))


def test_hard_model_trains_gradients_reach_grouping_projections():
    model = tiny(assignment="hard").train()
    batch = make_batch()
    terms = model.loss(model(batch), batch)
    sum(terms.values()).backward()
    for group in (model.group_a, model.group_v):
        grad = group.q.weight.grad.abs()  # reaches q only via the straight-through estimator
        assert grad.sum() > 0
        # Empty groups (always C-1 of them for the single audio token) must not blow up the
        # gradient; dividing by (mass + 1e-6) instead of max(mass, 1) gives ~1e6x larger values.
        assert grad.max() < 1.0


ABLATIONS = [
    dict(use_class_tokens=True, use_grouping=True),
    dict(use_class_tokens=False, use_grouping=True),
    dict(use_class_tokens=True, use_grouping=False),
    dict(use_class_tokens=False, use_grouping=False),
    dict(transformer="bare"),
    dict(loc_visual="raw", symmetric_loss=True, class_reduction="mean", assign_eps=1.0),
    dict(loc_negatives="own_class"),
    dict(linear_init="trunc_normal"),
]


@pytest.mark.parametrize("kw", ABLATIONS, ids=lambda kw: "-".join(f"{k}={v}" for k, v in kw.items()))
def test_variants_forward_backward_localize(kw):
    model = tiny(**kw).train()
    batch = make_batch()
    terms = model.loss(model(batch), batch)
    assert set(terms) == set(model.loss_weights)
    total = sum(model.loss_weights[k] * v for k, v in terms.items())
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.visual.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    res = model.localize(batch["image"], batch["spec"], classes=batch["classes"])
    assert res["maps"].shape == (4, 2, 4, 4)
    assert torch.isfinite(res["maps"]).all()
    assert (res["maps"].abs() <= 1 + 1e-5).all()  # cosine similarities
    if not (kw.get("use_class_tokens", True) or kw.get("use_grouping", True)):
        assert set(terms) == {"loc"}
        assert (res["classes"] == -1).all()


def test_fast_path_bf16_channels_last():
    model = tiny().to(memory_format=torch.channels_last).train()
    batch = make_batch()
    batch["image"] = batch["image"].contiguous(memory_format=torch.channels_last)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        terms = model.loss(model(batch), batch)
        res = model.eval().localize(batch["image"], batch["spec"], classes=batch["classes"])
    sum(terms.values()).backward()
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in terms.values())
    assert res["maps"].dtype == torch.float32 and torch.isfinite(res["maps"]).all()


def test_oracle_and_class_agnostic_localize():
    model = tiny().eval()
    batch = make_batch()
    oracle = model.localize(batch["image"], batch["spec"], classes=batch["classes"])
    assert torch.equal(oracle["classes"], batch["classes"])
    pad = batch["classes"] < 0
    assert (oracle["maps"][pad] == 0).all() and (oracle["scores"][pad] == 0).all()
    assert oracle["class_probs"].shape == (4, C)

    top = model.localize(batch["image"], batch["spec"], num_sources=3)
    assert top["maps"].shape == (4, 3, 4, 4) and top["classes"].shape == (4, 3)
    prob = top["class_probs"]
    assert torch.equal(top["classes"][:, 0], prob.argmax(1))
    assert (top["scores"][:, :-1] >= top["scores"][:, 1:]).all()  # most probable first

    free = model.localize(batch["image"], batch["spec"])
    n_pos = (prob > 0.5).sum(1).clamp(min=1)
    assert free["classes"].shape[1] == int(n_pos.max())
    assert torch.equal((free["classes"] >= 0).sum(1), n_pos)

    with pytest.raises(ValueError, match="class indices"):
        model.localize(batch["image"], batch["spec"], classes=torch.full((4, 1), C))


def test_class_agnostic_threshold_picks_confident_classes():
    model = tiny().eval()
    with torch.no_grad():  # force p^a > 0.5 for exactly two classes via the head bias
        model.presence_head_a.weight.zero_()
        model.presence_head_a.bias.fill_(-3.0)
    prob = torch.full((2, C), 0.1)
    prob[0, 2], prob[0, 4], prob[1, 1] = 0.9, 0.7, 0.6
    picked = model._pick_classes(prob, None)
    assert picked.tolist() == [[2, 4], [1, -1]]
    batch = make_batch(b=2)
    out = model.localize(batch["image"], batch["spec"])
    assert out["classes"].shape == (2, 1)  # all p^a < 0.5: the single best class


@pytest.mark.slow
def test_overfit_one_batch_loss_halves():
    torch.manual_seed(0)
    model = AVGN(AVGNConfig(width=8, dim=32, heads=2, depth=1, tau=0.1), C).train()
    batch = make_batch(b=8, size=48, spec=(32, 32), seed=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    history = []
    for _ in range(40):
        terms = model.loss(model(batch), batch)
        total = sum(model.loss_weights[k] * v for k, v in terms.items())
        opt.zero_grad()
        total.backward()
        opt.step()
        history.append({k: v.item() for k, v in terms.items()})
    first, last = history[0], history[-1]
    assert sum(last.values()) < 0.5 * sum(first.values())
    assert last["loc"] < 0.5 * first["loc"]


def test_bad_inputs_raise():
    model = tiny()
    batch = make_batch()
    with pytest.raises(ValueError, match="image"):
        model({**batch, "image": batch["image"][:, :1]})
    with pytest.raises(ValueError, match="spec"):
        model({**batch, "spec": batch["spec"][:, 0]})
    with pytest.raises(ValueError, match="assignment"):
        tiny(assignment="argmax")
    with pytest.raises(ValueError, match="loss_weights"):
        tiny(loss_weights={"typo": 1.0})


def test_registry_and_config():
    assert {"avgn", "ezvsl"} <= set(available())
    model = build_model("avgn", C, {**TINY, "assignment": "hard"})
    assert isinstance(model, nn.Module) and model.group_v.hard
    ez = build_model("ezvsl", C, {"width": 8, "dim": 32})
    assert not ez.class_aware and set(ez.loss_weights) == {"loc"}
    with pytest.raises(ValueError, match="unknown key"):
        build_model("avgn", C, {"widht": 8})
    with pytest.raises(ValueError, match="unknown key"):  # EZ-VSL carries no AVGN-only keys
        build_model("ezvsl", C, {"depth": 3})
    with pytest.raises(ValueError, match="expected a boolean"):  # the string 'false' is truthy
        build_model("avgn", C, {**TINY, "use_class_tokens": "false"})
    with pytest.raises(ValueError, match="unknown model"):
        build_model("nope", C, {})
    assert default_config("avgn")["loc_visual"] == "gated"
    assert default_config("avgn")["loc_negatives"] == "anchor_class"
    with pytest.raises(ValueError, match="loc_negatives"):
        build_model("avgn", C, {**TINY, "loc_negatives": "other"})


def test_registry_imports_no_model():
    import ast
    from pathlib import Path

    import avgn_lib.models.registry as registry

    tree = ast.parse(Path(registry.__file__).read_text())
    imported = [a.name if isinstance(n, ast.Import) else n.module
                for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) for a in n.names]
    assert not [m for m in imported if m and m.startswith("avgn_lib.models")]


def test_ezvsl_matches_avgn_with_tokens_and_grouping_off():
    """EZ-VSL is its own model file, but the same computation as the (AVCT off, AVG off) ablation."""
    batch = make_batch()
    torch.manual_seed(0)
    ez = build_model("ezvsl", C, {"width": 8, "dim": 32, "tau": 0.1})
    torch.manual_seed(0)
    ab = AVGN(AVGNConfig(width=8, dim=32, tau=0.1, use_class_tokens=False, use_grouping=False), C)
    ab.load_state_dict(ez.state_dict())
    assert torch.allclose(ez.loss(ez(batch), batch)["loc"], ab.loss(ab(batch), batch)["loc"])
    a = ez.eval().localize(batch["image"], batch["spec"], classes=batch["classes"])
    b = ab.eval().localize(batch["image"], batch["spec"], classes=batch["classes"])
    assert torch.allclose(a["maps"], b["maps"]) and (a["classes"] == -1).all()


# Every registered method but the class-aware AVGN and T-VSL (tests/test_tvsl.py) is
# class-agnostic and built on DualEncoderMethod; the names are the ones its error messages spell
# out (a new method adds its name here).
CLASS_AWARE = ("avgn", "tvsl", "lcbm")  # lcbm: a classifier, tested in tests/test_lcbm.py
METHOD_NAMES = {"ezvsl": "EZ-VSL", "lvs": "LVS", "ots": "OTS", "attention10k": "Attention10k",
                "mix_localize": "Mix-and-Localize", "dmc": "DMC", "slavc": "SLAVC",
                "coarse_to_fine": "CoarsetoFine", "dsol": "DSOL"}


@pytest.mark.parametrize("name", [n for n in available() if n not in CLASS_AWARE])
def test_class_agnostic_encode_is_unit_norm_and_names_the_method(name):
    if name not in METHOD_NAMES:
        pytest.fail(f"method {name!r} is registered but METHOD_NAMES has no entry for it")
    torch.manual_seed(0)
    model = build_model(name, C, {"width": 8, "dim": 16}).eval()
    assert isinstance(model, DualEncoderMethod) and not model.class_aware
    batch = make_batch(b=3, size=32, spec=(32, 32))
    fv, fa, (h, w) = model._encode(batch["image"], batch["spec"])
    assert fv.shape == (3, h * w, 16) and fa.shape == (3, 16)
    torch.testing.assert_close(fv.norm(dim=-1), torch.ones(3, h * w))
    torch.testing.assert_close(fa.norm(dim=-1), torch.ones(3))
    bad = batch["image"][:, :1]  # (B, 1, H, W): one channel
    for call in (model._encode, model.localize):
        with pytest.raises(ValueError, match=rf"^{METHOD_NAMES[name]}: image must be \(B, 3, H, W\)"):
            call(bad, batch["spec"])
