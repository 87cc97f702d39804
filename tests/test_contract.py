"""The method contract, checked for every registered method the day it is registered:
one ``fit`` epoch on a tiny set, ``localize`` shapes and -1 padding in both modes, and a
checkpoint round trip through ``avgn_lib.inference.load_model``."""
import pytest
import torch

from avgn_lib import inference
from avgn_lib.engine import fit, train_config
from avgn_lib.models import available, build_model
from avgn_lib.models.registry import MODELS

from test_engine import ToyDataset

C = 3
# The smallest size of each method's own config fields that a contract check needs.
TINY = {"avgn": {"width": 8, "dim": 16, "depth": 1, "heads": 2}, "ezvsl": {"width": 8, "dim": 16},
        "attention10k": {"width": 8, "dim": 16}, "ots": {"width": 8, "dim": 16},
        "lvs": {"width": 8, "dim": 16}, "mix_localize": {"width": 8, "dim": 16},
        "dmc": {"width": 8, "dim": 16}, "slavc": {"width": 8, "dim": 16},
        # T-VSL embeds its class prompts at build time: it needs the C class names
        "tvsl": {"width": 8, "dim": 16, "classes": ["cat", "dog", "cow"]},
        # stage 2 from the second of the two steps: fit crosses the switch, the checkpoint holds it
        "coarse_to_fine": {"width": 8, "dim": 16, "stage1_steps": 1},
        # (stays in stage 1: the toy set has no single-source sample to form a dictionary from;
        # tests/test_two_stage_baselines.py fits DSOL across its switch)
        "dsol": {"width": 8, "dim": 16},
        # (the toy set has no clip: LCBM repeats the still image as a static clip)
        "lcbm": {"width": 4, "audio_width": 4, "dim": 8, "clip_frames": 4, "clip_size": 16}}


def tiny_cfg(name: str) -> dict:
    if name not in TINY:
        pytest.fail(f"method {name!r} is registered but tests/test_contract.py has no TINY entry")
    return TINY[name]


@pytest.mark.parametrize("name", available())
def test_method_contract(name, tmp_path):
    torch.manual_seed(0)
    model = build_model(name, C, tiny_cfg(name))
    assert isinstance(model.loss_weights, dict) and isinstance(model.class_aware, bool)
    train, val = ToyDataset(n=16, size=32, sources=2), ToyDataset(n=8, size=32, seed=1)
    cfg = train_config({"batch_size": 8, "epochs": 1, "lr": 1e-3, "progress": False,
                        "select_metric": "val_loss", "precision": "fp32"})
    history = fit(model, train, val, cfg, tmp_path / "run",
                  meta={"method": name, "model_cfg": tiny_cfg(name), "class_names": ["cat", "dog", "cow"],
                        "data_cfg": {"image_size": 32, "spec": {"n_mels": 32, "n_frames": 32,
                                                                "hop_length": 2068}}})
    assert history[0]["epoch"] == 1 and torch.isfinite(torch.tensor(history[0]["train_loss"]))

    model.eval()
    batch = next(iter(torch.utils.data.DataLoader(train, batch_size=4)))
    classes = batch["classes"].clone()
    classes[:, 1] = -1  # padding
    out = model.localize(batch["image"], batch["spec"], classes=classes)
    maps = out["maps"]
    assert maps.dim() == 4 and maps.shape[:2] == (4, 2) and out["scores"].shape == (4, 2)
    assert out["classes"].shape == (4, 2) and out["classes"].dtype == torch.int64
    assert (maps[:, 1] == 0).all() and (out["scores"][:, 1] == 0).all()
    if model.class_aware:
        assert torch.equal(out["classes"], classes) and out["class_probs"].shape == (4, C)
    else:
        assert (out["classes"] == -1).all() and "class_probs" not in out
    free = model.localize(batch["image"], batch["spec"], num_sources=2)
    assert free["maps"].shape[:2] == (4, 2) and free["classes"].shape == (4, 2)

    loaded = inference.load_model(tmp_path / "run" / "last.pt", device="cpu")
    assert loaded.method == name and type(loaded.model) is type(model)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key


def test_every_method_has_its_own_config_dataclass():
    for method in MODELS.values():
        assert method.config.__module__ == method.build.__module__
