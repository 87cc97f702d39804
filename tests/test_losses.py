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
