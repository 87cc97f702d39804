"""Image loader on generated files of every mode, plus corrupt inputs."""
import numpy as np
import pytest
import torch
from PIL import Image

from avgn_lib.data.image import IMAGENET_MEAN, IMAGENET_STD, load_image, load_rgba, to_tensor


@pytest.mark.parametrize("mode", ["RGB", "L", "P", "CMYK", "I;16", "LA"])
def test_modes_become_rgb(tmp_path, mode):
    rgb = np.zeros((8, 6, 3), dtype=np.uint8)
    rgb[:, :3] = 200
    img = Image.fromarray(rgb).convert(mode) if mode != "I;16" else \
        Image.fromarray((rgb[..., 0].astype(np.uint16) * 257))
    suffix = "tif" if mode in ("CMYK", "I;16") else "png"
    path = tmp_path / f"img.{suffix}"
    img.save(path)
    out = load_image(path)
    assert out.shape == (8, 6, 3) and out.dtype == np.uint8
    assert out[:, :3].mean() > out[:, 3:].mean() + 100


def test_rgba_composited_on_white_and_alpha_kept(tmp_path):
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[:2, :, :3] = [255, 0, 0]
    arr[:2, :, 3] = 255  # top half opaque red, bottom half fully transparent black
    path = tmp_path / "a.png"
    Image.fromarray(arr, "RGBA").save(path)
    rgb = load_image(path)
    assert rgb[0, 0].tolist() == [255, 0, 0] and rgb[3, 0].tolist() == [255, 255, 255]
    rgba = load_rgba(path)
    assert rgba.shape == (4, 4, 4) and rgba[3, 0, 3] == 0 and rgba[0, 0, 3] == 255


def test_svg_rendered_at_requested_size(tmp_path):
    path = tmp_path / "c.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="40" height="20">'
                    '<rect x="0" y="0" width="20" height="20" fill="blue"/></svg>')
    rgba = load_rgba(path, svg_size=80)
    assert rgba.shape == (40, 80, 4)
    assert rgba[20, 10, 3] == 255 and rgba[20, 70, 3] == 0


def test_bad_inputs_raise_naming_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        load_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="empty.png"):
        load_image(empty)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"\xff\xd8\xff not a jpeg at all" * 4)
    with pytest.raises(ValueError, match="junk.jpg"):
        load_image(junk)
    good = tmp_path / "good.png"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(good)
    truncated = tmp_path / "trunc.png"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match="trunc.png"):
        load_image(truncated)
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (1, 1)).save(tiny)
    with pytest.raises(ValueError, match="tiny.png"):
        load_image(tiny)
    bad_svg = tmp_path / "bad.svg"
    bad_svg.write_text("<svg this is not xml")
    with pytest.raises(ValueError, match="bad.svg"):
        load_image(bad_svg)


def test_to_tensor_normalizes_single_and_batch():
    img = np.full((5, 7, 3), 255, dtype=np.uint8)
    t = to_tensor(img)
    assert t.shape == (3, 5, 7) and t.dtype == torch.float32
    expected = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(t[:, 0, 0], expected)
    batch = to_tensor(np.stack([img, img * 0]))
    assert batch.shape == (2, 3, 5, 7)
    torch.testing.assert_close(batch[0], t)
    with pytest.raises(ValueError):
        to_tensor(img.astype(np.float32))


def test_svg_with_point_units_is_rendered(tmp_path):
    # Old Inkscape files give the root size in pt with trailing zeros; resvg alone rejects some.
    path = tmp_path / "pt.svg"
    path.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="30.00000pt" height="15.000pt">'
                    '<rect width="20" height="20" fill="red"/></svg>')
    rgba = load_rgba(path, svg_size=40)
    assert rgba.shape[1] == 40 and abs(rgba.shape[0] - 20) <= 1
