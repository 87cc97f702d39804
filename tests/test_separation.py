"""Separation plumbing: STFT round trip, masks, BSS Eval backends and the silent-source rule,
mix-and-separate data, and the evaluation's floor and ceiling rows."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from avgn_lib.separation import metrics as M
from avgn_lib.separation.data import MixDataset, SoloScenes, draw_mixtures, resample
from avgn_lib.separation.evaluate import evaluate_separation
from avgn_lib.separation.stft import (STFTConfig, apply_mask, ideal_binary_mask, istft,
                                      separate_with_masks, stft)

from separation_fixtures import RATE, tone, write_solo_split

CFG = STFTConfig(n_fft=254, hop=127)


def _sources(n: int = 2, length: int = 11025, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([tone(c, rng.uniform(0.1, 1, 8), length, rng) for c in range(n)])


def test_all_ones_mask_round_trip_returns_the_mixture():
    mix = torch.from_numpy(_sources().sum(0)).float()[None]                 # (1, L)
    spec = stft(mix, CFG)
    assert spec.shape == (1, CFG.bins, CFG.frames(mix.shape[-1]))
    out = separate_with_masks(mix, torch.ones(1, 3, *spec.shape[-2:]), CFG)
    assert out.shape == (1, 3, mix.shape[-1])
    assert torch.allclose(out, mix[:, None].expand_as(out), atol=1e-5)
    assert torch.allclose(istft(spec, CFG, mix.shape[-1]), mix, atol=1e-5)


def test_masks_partition_the_mixture_and_the_ibm_picks_the_loudest_source():
    src = torch.from_numpy(_sources(3)).float()[None]                       # (1, 3, L)
    ibm = ideal_binary_mask(stft(src, CFG))
    assert torch.equal(ibm.sum(1), torch.ones_like(ibm[:, 0]))              # one winner per bin
    parts = separate_with_masks(src.sum(1), ibm, CFG)
    assert torch.allclose(parts.sum(1), src.sum(1), atol=1e-4)              # masks partition X
    with pytest.raises(ValueError, match="does not fit"):
        apply_mask(stft(src.sum(1), CFG), torch.ones(1, 3, 5, 5))


def test_too_short_mixture_and_bad_hop_give_clear_errors():
    with pytest.raises(ValueError, match="shorter than the STFT window"):
        stft(torch.zeros(1, 100), CFG)
    with pytest.raises(ValueError, match="hop"):
        STFTConfig(n_fft=254, hop=200)


def test_ideal_binary_mask_scores_above_the_mixture_on_sdr(tmp_path):
    solo = SoloScenes(write_solo_split(tmp_path / "s", n=6), audio_rate=11025)
    data = MixDataset(solo, 2, draw_mixtures(solo, 2, 3, seed=0))
    res = evaluate_separation(None, data, CFG, rows=("mixture", "ibm"), batch_size=2)
    assert res["mixture_N"] == res["ibm_N"] == 3
    assert res["ibm_SDR"] > res["mixture_SDR"] + 5.0
    assert res["ibm_SIR"] > res["mixture_SIR"]
    assert res["mixture_SAR"] == pytest.approx(M.CLAMP_DB, abs=1e-3)  # no artifact: SAR at the bound


def test_backends_agree_on_a_few_cases():
    rng = np.random.default_rng(1)
    pairs = []
    for n in (2, 3):
        refs = _sources(n, seed=n)
        mixing = np.eye(n) + 0.3 * rng.random((n, n))
        pairs.append((refs, mixing @ refs + 0.01 * rng.standard_normal(refs.shape)))
    rows = M.backend_agreement(pairs)
    assert len(rows) == 2
    for row in rows:
        for name in M.METRICS:
            assert row[f"{name}_max_abs_diff"] < 1e-4, row
    # the library's conjugate-gradient shortcut does not agree on tonal sources: not used
    approx = M.backend_agreement(pairs, cg_iter=10)
    assert max(r[f"{m}_max_abs_diff"] for r in approx for m in M.METRICS) > 1e-3


def test_a_silent_source_is_skipped_and_counted_never_nan():
    refs = _sources()
    ests = refs + 0.1 * refs[::-1]
    assert M.score_mixture(np.stack([refs[0], np.zeros_like(refs[1])]), ests) is None
    assert M.score_mixture(refs, np.stack([ests[0], np.zeros_like(ests[1])])) is None
    with pytest.raises(ValueError, match="silent"):
        M.bss_eval(np.stack([refs[0], np.zeros_like(refs[1])]), ests)
    summary = M.summarize([None, M.score_mixture(refs, ests)])
    assert summary["N"] == 1 and summary["N_skipped_silent"] == 1
    assert all(np.isfinite(v) for v in summary.values())
    assert M.summarize([None]) == {"N": 0.0, "N_skipped_silent": 1.0}  # no metric, no NaN
    with pytest.raises(ValueError, match=r"\(N, L\)"):
        M.bss_eval(refs, ests[:, :10])


def test_mixtures_are_deterministic_and_respect_class_rules(tmp_path):
    solo = SoloScenes(write_solo_split(tmp_path / "s", n=9, silent=2), audio_rate=11025)
    assert len(solo) == 9                                                   # silent ones dropped
    two = draw_mixtures(solo, 2, 10, seed=3)
    assert two == draw_mixtures(solo, 2, 10, seed=3) != draw_mixtures(solo, 2, 10, seed=4)
    assert len({tuple(sorted(c)) for c in two}) == len(two) == 10
    assert all(len({solo.classes[i] for i in c}) == 2 for c in two)
    three = draw_mixtures(solo, 3, 100, seed=0)
    assert len(three) == 27 and all(len({solo.classes[i] for i in c}) == 3 for c in three)
    same = draw_mixtures(solo, 2, 100, seed=0, same_class=True)
    assert len(same) == 9 and all(solo.classes[a] == solo.classes[b] for a, b in same)
    with pytest.raises(ValueError, match="Fig. G"):
        draw_mixtures(solo, 3, 5, seed=0, same_class=True)


def test_mix_items_sum_their_sources_and_carry_each_sources_cues(tmp_path):
    solo = SoloScenes(write_solo_split(tmp_path / "s", n=6, seconds=0.5), audio_rate=11025)
    item = MixDataset(solo, 2, [(0, 1)])[0]
    assert item["sources"].shape == (2, 5513) and item["mixture"].shape == (5513,)  # 0.5 s at 11,025 Hz
    assert torch.allclose(item["mixture"], item["sources"].sum(0))
    assert item["image"].shape == (2, 3, 32, 32) and item["clip"].shape == (2, 3, 8, 16, 16)
    assert item["classes"].tolist() == [0, 1]
    torch.manual_seed(0)
    train = MixDataset(solo, 2, length=5)
    assert len(train) == 5 and train[4]["sources"].shape[0] == 2
    raw = np.load(solo.dir / "waves.npy")[0].astype(np.float32) / 32767
    assert np.allclose(solo.wave(0).numpy(), resample(raw, RATE, 11025))


def test_an_all_zero_sounding_waveform_is_an_error(tmp_path):
    root = write_solo_split(tmp_path / "s", n=4)
    waves = np.load(root / "waves.npy")
    waves[1] = 0
    np.save(root / "waves.npy", waves)
    solo = SoloScenes(root)
    with pytest.raises(ValueError, match="all-zero waveform"):
        solo.wave(1)
    with pytest.raises(FileNotFoundError, match="meta.json"):
        SoloScenes(tmp_path / "nowhere")


def test_fast_bss_eval_is_exact_after_the_stage_sets_two_threads():
    """Every stage calls torch.set_num_threads(threads); with 2 threads MKL's threaded LU inside
    fast_bss_eval failed ("Parameter 6 ... DLASWP") and stalled on a Xeon. bss_eval solves with
    one thread and restores the setting; its scores equal mir_eval's."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        rng = np.random.default_rng(3)
        refs = _sources(2, seed=5)
        ests = refs + 0.3 * rng.standard_normal(refs.shape)
        fast = M.bss_eval(refs, ests, "fast_bss_eval")
        ref = M.bss_eval(refs, ests, "mir_eval")
        assert torch.get_num_threads() == 2
        for name in M.METRICS:
            assert np.abs(getattr(fast, name.lower()) - getattr(ref, name.lower())).max() < 1e-4
    finally:
        torch.set_num_threads(before)
