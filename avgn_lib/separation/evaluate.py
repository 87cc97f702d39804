"""The separation evaluation (a loader in, metrics out) and AME's localization evaluation.

:func:`evaluate_separation` scores, on every mixture of a loader, the estimates of

* ``mixture``: the mixture itself as every source's estimate (the floor);
* ``ibm``: the ideal binary mask of the true sources applied to the mixture (the ceiling of any
  binary-mask method with the mixture's phase, which AMnet is);
* ``appearance``: AMnet's Audio-Appearance stage alone;
* ``amnet``: the full AMnet (after the Audio-Motion refinement),

with :func:`avgn_lib.separation.metrics.score_mixture` (SDR/SIR/SAR, silent mixtures skipped and
counted as the paper's tooling does). It imports nothing from the engine; ``fit`` gets it as
``evaluate_fn`` with the model rows only.

:func:`evaluate_ame_localization` turns AME's CAMs into maps at the mask resolution and scores
them with :func:`avgn_lib.evaluation.evaluate_single`, the protocol of every localization table.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset

from avgn_lib.device import to_device
from avgn_lib.evaluation import evaluate_single
from avgn_lib.separation import metrics as M
from avgn_lib.separation.stft import STFTConfig, ideal_binary_mask, separate_with_masks, stft

ROWS = ("mixture", "ibm", "appearance", "amnet")
LABELS = {"mixture": "mixture as estimate (floor)", "ibm": "ideal binary mask (ceiling)",
          "appearance": "Audio-Appearance stage", "amnet": "AMnet (+ Audio-Motion)"}


def _loader(data: DataLoader | Dataset, batch_size: int) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)


def _device(model: nn.Module | None) -> torch.device:
    param = next(model.parameters(), None) if model is not None else None
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def estimates(model: nn.Module | None, batch: dict[str, torch.Tensor], stft_cfg: STFTConfig,
              rows: tuple[str, ...] = ROWS) -> dict[str, torch.Tensor]:
    """``{row: (B, N, L) estimates}`` of one batch (on the model's device)."""
    out: dict[str, torch.Tensor] = {}
    mixture, sources = batch["mixture"], batch["sources"]                # (B, L), (B, N, L)
    if "mixture" in rows:
        out["mixture"] = mixture[:, None].expand_as(sources)
    if "ibm" in rows:
        out["ibm"] = separate_with_masks(mixture, ideal_binary_mask(stft(sources, stft_cfg)),
                                         stft_cfg)
    if {"appearance", "amnet"} & set(rows):
        if model is None:
            raise ValueError("estimates: the model rows need a model")
        separated = model.separate(batch)
        out.update({k: v for k, v in separated.items() if k in rows})
    return out


@torch.no_grad()
def evaluate_separation(model: nn.Module | None, data: DataLoader | Dataset, stft_cfg: STFTConfig,
                        rows: tuple[str, ...] = ROWS, *, backend: str = "fast_bss_eval",
                        cg_iter: int | None = None, batch_size: int = 16,
                        keep: int = 0) -> dict[str, Any]:
    """Flat ``{"<row>_SDR": dB, "<row>_SIR", "<row>_SAR", "<row>_N", "<row>_N_skipped_silent"}``
    over every mixture of ``data`` (N mixtures scored; a row with none scored has no metric
    keys, never NaN). ``keep`` > 0 also returns the first ``keep`` mixtures under ``"examples"``
    (for figures and audio players): ``mixture`` (L,), ``sources`` (N, L), ``classes``, ``index``
    and ``estimates`` ``{row: (N, L)}``."""
    unknown = sorted(set(rows) - set(ROWS))
    if unknown:
        raise ValueError(f"evaluate_separation: unknown rows {unknown}; rows are {ROWS}")
    if model is not None:
        model.eval()
    device = _device(model)
    scores: dict[str, list] = {r: [] for r in rows}
    examples: list[dict[str, np.ndarray]] = []
    for batch in _loader(data, batch_size):
        batch = to_device(batch, device)
        est = {k: v.float().cpu().numpy() for k, v in estimates(model, batch, stft_cfg, rows).items()}
        refs = batch["sources"].float().cpu().numpy()                    # (B, N, L)
        for i in range(refs.shape[0]):
            for row in rows:
                scores[row].append(M.score_mixture(refs[i], est[row][i], backend, cg_iter))
            if len(examples) < keep:
                examples.append({"mixture": batch["mixture"][i].cpu().numpy(), "sources": refs[i],
                                 "classes": batch["classes"][i].cpu().numpy(),
                                 "index": batch["index"][i].cpu().numpy(),
                                 # not beside "mixture": the floor row is also named "mixture"
                                 "estimates": {row: est[row][i] for row in rows}})
    result: dict[str, Any] = {}
    for row in rows:
        result.update({f"{row}_{k}": v for k, v in M.summarize(scores[row]).items()})
    if keep:
        result["examples"] = examples
    return result


@torch.no_grad()
def ame_maps(ame: nn.Module, data: DataLoader | Dataset, batch_size: int = 32
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """AME CAMs upsampled bilinearly to the mask size: maps (N, H, W) and the ground truth
    ``masks`` / ``box_masks`` (N, H, W), ``has_source`` (N,), ``index`` (N,)."""
    ame.eval()
    device = _device(ame)
    maps, gt = [], {"masks": [], "box_masks": [], "has_source": [], "index": []}
    for batch in _loader(data, batch_size):
        cam = ame.cam(batch["clip"].to(device))                          # (B, h', w')
        size = tuple(batch["masks"].shape[-2:])
        maps.append(F.interpolate(cam[:, None], size=size, mode="bilinear",
                                  align_corners=False)[:, 0].cpu().numpy())
        gt["masks"].append(batch["masks"][:, 0].numpy())
        gt["box_masks"].append(batch["box_masks"][:, 0].numpy())
        gt["has_source"].append(batch["has_source"].bool().numpy())
        gt["index"].append(batch["index"].numpy())
    return np.concatenate(maps), {k: np.concatenate(v) for k, v in gt.items()}


def evaluate_ame_localization(ame: nn.Module, data: DataLoader | Dataset, iou_threshold: float = 0.5,
                              batch_size: int = 32) -> dict[str, Any]:
    """The single-source protocol (AP on the mask, cIoU / IoU@θ / AUC on the box; silent scenes
    in the extended protocol) of AME's CAMs over a solo split read by
    :class:`avgn_lib.separation.data.SoloScenes` (``sounding_only=False``)."""
    maps, gt = ame_maps(ame, data, batch_size)
    return evaluate_single(maps, gt["masks"], iou_threshold, has_source=gt["has_source"],
                           ciou_masks=gt["box_masks"])


@torch.no_grad()
def sync_accuracy(ame: nn.Module, data: DataLoader | Dataset, batch_size: int = 32) -> dict[str, float]:
    """``sync_acc``: fraction of clips whose motion embedding is closer to their synchronized
    audio than to the same audio shifted by half the clip (AME's own task, on held-out data),
    and ``triplet`` (the eval-mode loss)."""
    ame.eval()
    device = _device(ame)
    hits, losses, n = 0.0, 0.0, 0
    for batch in _loader(data, batch_size):
        batch = to_device(batch, device)
        out = ame(batch)
        pos = F.pairwise_distance(out["motion"], out["audio"])
        neg = F.pairwise_distance(out["motion"], out["audio_shifted"])
        hits += float((pos < neg).sum())
        losses += float(ame.loss(out, batch)["triplet"]) * len(pos)
        n += len(pos)
    if n == 0:
        raise ValueError("sync_accuracy: no clips")
    return {"sync_acc": hits / n, "triplet": losses / n}
