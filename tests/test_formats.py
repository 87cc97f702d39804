"""Public-dataset readers on tiny fixture files written by the tests."""
import json
import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from avgn_lib.data.audio import SpecConfig
from avgn_lib.data.formats import (PublicDataset, boxes_to_mask, load_mask_pickle,
                                   music_audio_stem, read_flickr, read_music, read_vggss,
                                   read_vggsound_duet, read_vgginstruments, snake_class,
                                   xywh_to_xyxy)

SIZE = 8


def _media(root, names, rate=8000):
    """Write <root>/frames/<name>.jpg (12x10 RGB) and <root>/audio/<stem>.wav (0.25 s tone)."""
    (root / "frames").mkdir(exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    for image_name, audio_name in names:
        Image.new("RGB", (12, 10), (200, 30, 30)).save(root / "frames" / f"{image_name}.jpg")
        t = np.arange(rate // 4) / rate
        sf.write(root / "audio" / f"{audio_name}.wav", 0.3 * np.sin(2 * np.pi * 440 * t), rate)
    return root / "frames", root / "audio"


def test_snake_class_matches_csv_spelling():
    assert snake_class("female speech, woman speaking") == "female_speech_woman_speaking"
    assert snake_class("Playing Bass Drum") == "playing_bass_drum"


# ---------------------------------------------------------------- VGG-SS / VGGSound-Duet


def _vggss_json(path):
    path.write_text(json.dumps([
        {"file": "a", "class": "playing cello", "bbox": [[0.25, 0.5, 0.75, 1.0]]},
        {"file": "b", "class": "dog barking", "bbox": [[-0.1, 0.0, 0.5, 1.2], [0.75, 0.0, 1.0, 0.25]]},
    ]))
    return path


def test_read_vggss_boxes_and_union_mask(tmp_path):
    frames, audio = _media(tmp_path, [("a", "a"), ("b", "b")])
    recs = read_vggss(_vggss_json(tmp_path / "vggss.json"), frames, audio, size=SIZE)
    a, b = recs
    assert a.classes == ("playing_cello",)
    # [0.25, 0.5, 0.75, 1.0] * 8 -> x1 2, y1 4, x2 6, y2 8
    assert a.boxes[0].tolist() == [[2, 4, 6, 8]]
    # clipped to [0, 1]: [0, 0, 4, 8]; second box [6, 0, 8, 2]
    assert b.boxes[0].tolist() == [[0, 0, 4, 8], [6, 0, 8, 2]]
    m = b.masks()
    assert m.shape == (1, SIZE, SIZE) and m.sum() == 4 * 8 + 2 * 2
    assert m[0, 0, 6] == 1 and m[0, 3, 6] == 0
    assert read_vggss(tmp_path / "vggss.json", frames, audio, SIZE, names=["b"])[0].name == "b"
    with pytest.raises(ValueError, match="'zz'"):
        read_vggss(tmp_path / "vggss.json", frames, audio, SIZE, names=["zz"])


def test_read_vggsound_duet_places_second_source_in_right_frame(tmp_path):
    frames, audio = _media(tmp_path, [("a", "a"), ("b", "b")])
    csv_path = tmp_path / "duet.csv"
    csv_path.write_text("a,playing_cello,b,dog_barking\n")
    (rec,) = read_vggsound_duet(csv_path, _vggss_json(tmp_path / "vggss.json"), frames, audio,
                                size=SIZE)
    assert rec.classes == ("playing_cello", "dog_barking") and len(rec.image_paths) == 2
    assert rec.boxes[1].tolist() == [[8, 0, 12, 8], [14, 0, 16, 2]]    # x + 8
    m = rec.masks()
    assert m.shape == (2, SIZE, 2 * SIZE)
    assert m[0, :, SIZE:].sum() == 0 and m[1, :, :SIZE].sum() == 0


# ---------------------------------------------------------------- MUSIC


def test_xywh_conversion():
    assert xywh_to_xyxy([0.25, 0.125, 0.5, 0.25]) == [0.25, 0.125, 0.75, 0.375]


def test_read_music_solo_and_duet_use_xywh(tmp_path):
    frames, audio = _media(tmp_path, [("vidA_000_00007", "vidA"), ("vid_B_001_00014", "vid_B")])
    solo = tmp_path / "music_solo.json"
    solo.write_text(json.dumps([{"file": "vidA_000_00007", "class": "cello",
                                 "bbox": [0.25, 0.125, 0.5, 0.25]}]))
    (rec,) = read_music(solo, frames, audio, size=SIZE)
    # x 2, y 1, w 4, h 2 -> [2, 1, 6, 3]; read as x1y1x2y2 it would be the empty box [2, 1, 4, 2]
    assert rec.boxes[0].tolist() == [[2, 1, 6, 3]]
    assert rec.masks().sum() == 4 * 2
    assert rec.audio_paths[0].name == "vidA.wav"

    duet = tmp_path / "music_duet.json"
    duet.write_text(json.dumps([{"file": "vid_B_001_00014",
                                 "class_src1": "cello", "bbox_src1": [0.0, 0.0, 0.5, 1.0],
                                 "class_src2": "acoustic guitar", "bbox_src2": [0.5, 0.5, 0.5, 0.5]}]))
    (rec,) = read_music(duet, frames, audio, size=SIZE)
    assert rec.classes == ("cello", "acoustic_guitar")
    assert [b.tolist() for b in rec.boxes] == [[[0, 0, 4, 8]], [[4, 4, 8, 8]]]
    assert rec.masks().reshape(2, -1).sum(1).tolist() == [32, 16]
    assert rec.audio_paths[0].name == "vid_B.wav"


def test_music_audio_stem_rejects_unknown_names():
    assert music_audio_stem("-_-TDDxoaAc_000_00000") == "-_-TDDxoaAc"
    with pytest.raises(ValueError, match="<video>_<clip>_<frame>"):
        music_audio_stem("plainname")


# ---------------------------------------------------------------- Flickr-SoundNet


FLICKR_XML = """<annotation><file>x</file>
<object><bbox><annotator>1</annotator><xmin>0</xmin><ymin>0</ymin><xmax>128</xmax><ymax>128</ymax></bbox></object>
<object><bbox><annotator>2</annotator><xmin>0</xmin><ymin>0</ymin><xmax>128</xmax><ymax>128</ymax></bbox></object>
<object><bbox><annotator>3</annotator><xmin>128</xmin><ymin>128</ymin><xmax>256</xmax><ymax>256</ymax></bbox></object>
</annotation>"""


def test_read_flickr_consensus(tmp_path):
    frames, audio = _media(tmp_path, [("clip1", "clip1"), ("clip2", "clip2")])
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "clip1.xml").write_text(FLICKR_XML)
    # positional layout (first child skipped, like the reference), unknown tag names
    (ann / "clip2.xml").write_text("<a><o><bbox><id>1</id><p>64</p><p>0</p><p>256</p><p>64</p>"
                                   "</bbox></o></a>")
    c1, c2 = read_flickr(ann, frames, audio, size=SIZE)
    # 128 px of 256 -> int(8 * 128 / 256) = 4
    assert c1.boxes[0].tolist() == [[0, 0, 4, 4], [0, 0, 4, 4], [4, 4, 8, 8]]
    m = c1.masks()[0]
    assert m[0, 0] == 1.0        # two annotators: 2 / 2
    assert m[5, 5] == 0.5        # one annotator: 1 / 2
    assert m[0, 6] == 0.0
    assert c2.boxes[0].tolist() == [[2, 0, 8, 2]] and c2.masks()[0].max() == 0.5


def test_read_flickr_errors_name_the_file(tmp_path):
    frames, audio = _media(tmp_path, [("clip1", "clip1")])
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "clip1.xml").write_text("<annotation><object/></annotation>")
    with pytest.raises(ValueError, match="clip1.xml: no <bbox>"):
        read_flickr(ann, frames, audio, size=SIZE)
    with pytest.raises(FileNotFoundError, match="nope.xml"):
        read_flickr(ann, frames, audio, size=SIZE, names=["nope"])


# ---------------------------------------------------------------- VGGSound-Instruments


def _pickle(path, obj):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def test_read_vgginstruments_single_and_pairs(tmp_path):
    frames, audio = _media(tmp_path, [("sample0000", "sample0000"), ("sample0001", "sample0001")])
    masks = tmp_path / "masks"
    masks.mkdir()
    m0 = np.zeros((4, 4), np.uint8)
    m0[0, 0] = 1                                   # top-left source pixel
    _pickle(masks / "sample0000.pkl", m0)
    _pickle(masks / "sample0001.pkl", np.ones((4, 4), bool))
    single = tmp_path / "single.csv"
    single.write_text("sample0000,accordion\nsample0001,banjo\n")
    recs = read_vgginstruments(single, masks, frames, audio, size=SIZE)
    # nearest 4 -> 8: source pixel floor(i / 2) -> the top-left 2 x 2 block
    assert recs[0].masks()[0].sum() == 4 and recs[0].masks()[0, 1, 1] == 1
    pair = tmp_path / "multi.csv"
    pair.write_text("sample0000,accordion,sample0001,steel guitar\n")
    (rec,) = read_vgginstruments(pair, masks, frames, audio, size=SIZE)
    assert rec.classes == ("accordion", "steel_guitar")
    m = rec.masks()
    assert m.shape == (2, SIZE, 2 * SIZE)
    assert m[0].sum() == 4 and m[1, :, SIZE:].all() and m[1, :, :SIZE].sum() == 0


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_mask_pickle_is_restricted(tmp_path):
    bad = tmp_path / "evil.pkl"
    _pickle(bad, _Evil())
    with pytest.raises(ValueError, match="evil.pkl.*refusing"):
        load_mask_pickle(bad, SIZE)
    _pickle(tmp_path / "d.pkl", {"mask": [1, 2]})
    with pytest.raises(ValueError, match="d.pkl: pickle holds dict"):
        load_mask_pickle(tmp_path / "d.pkl", SIZE)
    with pytest.raises(FileNotFoundError, match="absent.pkl"):
        load_mask_pickle(tmp_path / "absent.pkl", SIZE)


# ---------------------------------------------------------------- missing media, dataset


def test_missing_media_names_the_file(tmp_path):
    frames, audio = _media(tmp_path, [("a", "a")])      # no media for "b"
    js = _vggss_json(tmp_path / "vggss.json")
    with pytest.raises(FileNotFoundError, match=r"b\.jpg.*sample 'b'"):
        read_vggss(js, frames, audio, size=SIZE)
    with pytest.warns(UserWarning, match="skipped 1 of 2"):
        recs = read_vggss(js, frames, audio, size=SIZE, skip_missing=True)
    assert [r.name for r in recs] == ["a"]


def test_boxes_to_mask_consensus_clips():
    boxes = np.array([[0, 0, 2, 2]] * 3)
    assert boxes_to_mask(boxes, 4, 4, consensus=True).max() == 1.0
    assert boxes_to_mask(boxes[:1], 4, 4, consensus=True).max() == 0.5
    assert boxes_to_mask(boxes, 4, 4).sum() == 4


def test_public_dataset_duet_item_follows_batch_contract(tmp_path):
    frames, audio = _media(tmp_path, [("a", "a"), ("b", "b")])
    csv_path = tmp_path / "duet.csv"
    csv_path.write_text("a,playing cello,b,dog barking\n")
    recs = read_vggsound_duet(csv_path, _vggss_json(tmp_path / "vggss.json"), frames, audio,
                              size=SIZE)
    cfg = SpecConfig(sample_rate=8000, seconds=0.5, n_fft=128, win_length=128, hop_length=64,
                     n_frames=20, n_mels=0)
    ds = PublicDataset(recs, SIZE, cfg, ["dog barking", "other", "playing_cello"])
    item = ds[0]
    assert item["image"].shape == (3, SIZE, 2 * SIZE) and item["image"].dtype == torch.float32
    assert item["spec"].shape == (1, 65, 20) and torch.isfinite(item["spec"]).all()
    assert item["labels"].tolist() == [1.0, 0.0, 1.0]
    assert item["classes"].tolist() == [2, 0]
    assert item["masks"].shape == (2, SIZE, 2 * SIZE) and item["masks"].dtype == torch.uint8
    assert bool(item["has_source"]) and int(item["index"]) == 0
    batch = torch.utils.data.default_collate([ds[0], ds[0]])
    assert batch["masks"].shape == (2, 2, SIZE, 2 * SIZE)
    with pytest.raises(ValueError, match="outside class_names"):
        PublicDataset(recs, SIZE, cfg, ["other"])
    with pytest.raises(ValueError, match="size=16"):
        PublicDataset(recs, 16, cfg, ["dog barking", "playing cello"])


def test_public_dataset_flickr_masks_keep_consensus(tmp_path):
    frames, audio = _media(tmp_path, [("clip1", "clip1")])
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "clip1.xml").write_text(FLICKR_XML)
    cfg = SpecConfig(sample_rate=8000, seconds=0.25, n_fft=128, win_length=128, hop_length=64,
                     n_frames=10, n_mels=0)
    item = PublicDataset(read_flickr(ann, frames, audio, size=SIZE), SIZE, cfg, ["x"])[0]
    assert item["masks"].dtype == torch.float32 and item["masks"].max() == 1.0
    assert item["classes"].tolist() == [-1] and item["labels"].sum() == 0
    assert sorted(torch.unique(item["masks"]).tolist()) == [0.0, 0.5, 1.0]
