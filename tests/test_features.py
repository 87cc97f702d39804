"""Precomputed frozen-trunk features must equal the trunk's own output, flips included."""
import pytest
import torch

from avgn_lib.data.features import cache_trunk_features
from avgn_lib.models import build_model

from test_engine import ToyDataset

CFG = {"visual_trunk": "efficientnet_lite0", "trunk_trainable": "none", "width": 8, "dim": 16,
       "depth": 1, "heads": 2}


def test_cached_features_equal_the_trunk_and_follow_the_flip():
    torch.manual_seed(0)
    model = build_model("avgn", 3, CFG).train()
    data = ToyDataset(n=6, size=32, sources=2)
    cached = cache_trunk_features(data, model.visual.trunk, hflip=True, batch_size=4)
    torch.manual_seed(1)
    flips = 0
    for i in range(len(data)):
        item, plain = cached[i], data[i]
        flipped = not torch.equal(item["image"], plain["image"])
        flips += flipped
        assert torch.equal(item["masks"], plain["masks"].flip(-1) if flipped else plain["masks"])
        with torch.no_grad():
            direct = model.visual.trunk(item["image"][None])[0]
        torch.testing.assert_close(item["trunk_feat"], direct, atol=2e-2, rtol=1e-2)  # float16 store
    assert 0 < flips < len(data)
    items = [cached[i] for i in range(4)]  # each access draws its own flip
    batch = {k: torch.stack([it[k] for it in items]) for k in ("image", "spec", "trunk_feat")}
    with torch.no_grad():
        a = model.eval()({"image": batch["image"], "spec": batch["spec"]})["feat_v"]
        b = model({**batch})["feat_v"]
    torch.testing.assert_close(a, b, atol=1e-2, rtol=1e-2)


def test_cache_refuses_a_trainable_trunk():
    model = build_model("avgn", 3, {**CFG, "trunk_trainable": "late"})
    with pytest.raises(ValueError, match="frozen"):
        cache_trunk_features(ToyDataset(n=2, size=32), model.visual.trunk, hflip=False)
    with pytest.raises(ValueError, match="trainable"):
        model.visual(torch.zeros(1, 3, 32, 32), trunk_feat=torch.zeros(1, 112, 2, 2))


def test_disk_cache_is_keyed_by_data_and_trunk(tmp_path):
    from avgn_lib.data.features import feature_key

    torch.manual_seed(0)
    model = build_model("avgn", 3, CFG)
    data = ToyDataset(n=4, size=32)
    (tmp_path / "split").mkdir()
    (tmp_path / "split" / "meta.json").write_text('{"classes": ["a"]}')
    data.dir = tmp_path / "split"
    first = cache_trunk_features(data, model.visual.trunk, hflip=True, cache_dir=tmp_path / "c")
    assert len(list((tmp_path / "c").glob("*.pt"))) == 1
    again = cache_trunk_features(data, model.visual.trunk, hflip=True, cache_dir=tmp_path / "c")
    assert torch.equal(first.feats, again.feats)
    key = feature_key(data, model.visual.trunk, True)
    assert key != feature_key(data, model.visual.trunk, False)
    with torch.no_grad():
        next(model.visual.trunk.parameters()).add_(1.0)
    assert key != feature_key(data, model.visual.trunk, True)
    (tmp_path / "split" / "meta.json").write_text('{"classes": ["b"]}')
    with torch.no_grad():
        next(model.visual.trunk.parameters()).sub_(1.0)
    assert key != feature_key(data, model.visual.trunk, True)
    with pytest.raises(ValueError, match="cannot identify"):
        cache_trunk_features(ToyDataset(n=2, size=32), model.visual.trunk, hflip=False,
                             cache_dir=tmp_path / "c")


def test_has_frozen_trunk_only_for_a_frozen_pretrained_trunk():
    from avgn_lib.data.features import has_frozen_trunk, with_trunk_features

    assert has_frozen_trunk(build_model("avgn", 3, CFG))
    assert not has_frozen_trunk(build_model("avgn", 3, {**CFG, "trunk_trainable": "late"}))
    assert not has_frozen_trunk(build_model("avgn", 3, {**CFG, "visual_trunk": "resnet18"}))  # random init
    assert not has_frozen_trunk(torch.nn.Linear(2, 2))  # no visual encoder at all
    data = ToyDataset(n=2, size=32)
    assert with_trunk_features(data, build_model("avgn", 3, {**CFG, "trunk_trainable": "late"}), None) is data
