"""Tests for avgn_lib.losses on hand-built embeddings."""
import math

import pytest
import torch

from avgn_lib.losses import max_pooled_similarity, multiple_instance_contrastive


def _aligned_case(b: int = 4, p: int = 5, d: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample i's audio is basis vector e_i; its visual bag holds e_i at one location and
    orthogonal noise-free filler (e_{d-1}) elsewhere."""
    eye = torch.eye(d)
    audio = eye[:b]  # (B, D)
    visual = eye[d - 1].repeat(b, p, 1)  # (B, P, D)
    for i in range(b):
        visual[i, i % p] = eye[i]
    return audio, visual


def test_max_pooled_similarity_picks_best_location():
    audio, visual = _aligned_case()
    sims = max_pooled_similarity(audio[:, None], visual[:, None])  # (1, B, B)
    assert torch.allclose(sims[0], torch.eye(4))


def test_aligned_pairs_beat_shuffled_pairs():
    audio, visual = _aligned_case()
    aligned = multiple_instance_contrastive(audio, visual, tau=0.1)
    shuffled = multiple_instance_contrastive(audio, visual.roll(1, dims=0), tau=0.1)
    assert aligned < shuffled
    # Hand computation: logits are 10 on the diagonal and 0 elsewhere.
    expected = -math.log(math.exp(10) / (math.exp(10) + 3))
    assert aligned.item() == pytest.approx(expected, abs=1e-6)


def test_symmetric_adds_reverse_direction():
    audio, visual = _aligned_case()
    one = multiple_instance_contrastive(audio, visual, tau=0.1)
    both = multiple_instance_contrastive(audio, visual, tau=0.1, symmetric=True)
    assert both.item() == pytest.approx(2 * one.item(), rel=1e-5)  # symmetric case


def test_padded_slots_are_neither_anchors_nor_negatives():
    audio, visual = _aligned_case()
    # Slot 1 of sample 3 is padding holding garbage that would match sample 0's audio.
    a2 = torch.stack([audio, audio.roll(1, 0)], dim=1)  # (B, 2, D)
    v2 = torch.stack([visual, visual.roll(1, 0)], dim=1)  # (B, 2, P, D)
    v2[3, 1] = audio[0]
    valid = torch.ones(4, 2, dtype=torch.bool)
    valid[3, 1] = False
    masked = multiple_instance_contrastive(a2, v2, 0.1, valid)
    # Equals the loss over the 7 valid anchors computed by hand from the two slots.
    slot0 = multiple_instance_contrastive(audio, visual, 0.1)
    slot1 = multiple_instance_contrastive(a2[:3, 1], v2[:3, 1], 0.1)
    assert masked.item() == pytest.approx((4 * slot0.item() + 3 * slot1.item()) / 7, rel=1e-5)


def test_all_padded_gives_zero_with_gradient():
    audio = torch.randn(3, 2, 6, requires_grad=True)
    visual = torch.randn(3, 2, 4, 6, requires_grad=True)
    loss = multiple_instance_contrastive(audio, visual, 0.07, torch.zeros(3, 2, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert audio.grad is not None and torch.all(audio.grad == 0)


def test_gradients_finite_with_padding():
    audio = torch.randn(4, 3, 6, requires_grad=True)
    visual = torch.randn(4, 3, 5, 6, requires_grad=True)
    valid = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 1]], dtype=torch.bool)
    loss = multiple_instance_contrastive(audio, visual, 0.07, valid, symmetric=True)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(audio.grad).all() and torch.isfinite(visual.grad).all()


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        multiple_instance_contrastive(torch.randn(4, 8), torch.randn(3, 5, 8), 0.1)
    with pytest.raises(ValueError):
        multiple_instance_contrastive(torch.randn(4, 8), torch.randn(4, 5, 8), 0.0)


def test_class_gated_similarity_matches_materialized_bags():
    from avgn_lib.losses import class_gated_similarity
    g = torch.Generator().manual_seed(0)
    b, n, p, c, d = 4, 2, 5, 3, 8
    audio = torch.randn(b, n, d, generator=g)
    feats = torch.randn(b, p, d, generator=g)
    gates = torch.randn(b, c, d, generator=g)
    classes = torch.tensor([[0, 2], [1, -1], [2, 0], [1, 1]])
    sims = class_gated_similarity(audio, feats, gates, classes)
    assert sims.shape == (n, b, b)
    for slot in range(n):
        for i in range(b):
            k = max(int(classes[i, slot]), 0)
            for m in range(b):
                bag = feats[m] * gates[m, k]  # (P, D), the anchor's class on image m
                ref = torch.nn.functional.cosine_similarity(audio[i, slot][None], bag, dim=-1).max()
                assert sims[slot, i, m].item() == pytest.approx(ref.item(), abs=1e-5)


def test_class_gated_loss_needs_image_content():
    """With anchor-class gates, two images of the same class can only be told apart by their
    locations: the loss is lower when the audio matches the feature actually present."""
    from avgn_lib.losses import class_gated_similarity, contrastive_from_similarity
    d = 4
    gates = torch.ones(2, 1, d)  # one class, neutral gate
    feats = torch.eye(d)[:2, None]  # image 0 holds e0, image 1 holds e1 (P = 1)
    classes = torch.zeros(2, 1, dtype=torch.long)
    valid = torch.ones(2, 1, dtype=torch.bool)
    matched = torch.eye(d)[:2, None]
    swapped = matched.flip(0)
    l_match = contrastive_from_similarity(class_gated_similarity(matched, feats, gates, classes), 0.1, valid)
    l_swap = contrastive_from_similarity(class_gated_similarity(swapped, feats, gates, classes), 0.1, valid)
    assert l_match < 0.01 < 5.0 < l_swap


def test_own_class_negatives_ignore_image_content():
    """The shortcut of reading Eq. 10's negatives with each image's own class: with class gates
    on disjoint dimensions, every other-class bag is orthogonal to the anchor's audio, so the
    loss is the same whatever the images show. With the anchor's class, it is not."""
    from avgn_lib.losses import class_gated_similarity, contrastive_from_similarity
    g = torch.Generator().manual_seed(1)
    d, p = 4, 3
    gates = torch.zeros(2, 2, d)
    gates[:, 0, :2] = 1.0  # class 0 lives on dims 0-1, class 1 on dims 2-3
    gates[:, 1, 2:] = 1.0
    classes = torch.tensor([[0], [1]])
    audio = gates[torch.arange(2), classes[:, 0]][:, None]  # (2, 1, D): each sample's class gate
    valid = torch.ones(2, 1, dtype=torch.bool)

    def own(feats):
        bags = feats[:, None] * gates[torch.arange(2), classes[:, 0]][:, None, None]
        return multiple_instance_contrastive(audio, bags, 0.1, valid)

    def anchor(feats):
        return contrastive_from_similarity(class_gated_similarity(audio, feats, gates, classes), 0.1, valid)

    a, b = torch.rand(2, p, d, generator=g) + 0.1, torch.rand(2, p, d, generator=g) + 0.1
    assert own(a).item() == pytest.approx(own(b).item(), abs=1e-4)
    assert abs(anchor(a).item() - anchor(b).item()) > 1e-3
