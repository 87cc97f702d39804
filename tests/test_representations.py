"""Tests for avgn_lib.representations: embeddings of tiny real models, the cluster numbers,
the projections and the Fig. 4 analogue figure."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from avgn_lib.models import build_model
from avgn_lib.representations import embeddings, figure, knn_accuracy, project, silhouette

def _in_child(fn):
    """Run a UMAP test in a forked process: a UMAP fit (numba's threads) after torch has run
    leaves torch's LAPACK broken in that process (later ``lu_solve`` calls of other tests fail
    with bad pivots), so it must not share the test process."""
    import functools
    import multiprocessing
    import traceback

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        def child():
            try:
                fn(*args, **kwargs)
            except BaseException:
                traceback.print_exc()
                raise SystemExit(1)
            raise SystemExit(0)

        proc = multiprocessing.get_context("fork").Process(target=child)
        proc.start()
        proc.join(600)
        assert proc.exitcode == 0, f"{fn.__name__} failed in its child process (traceback above)"
    return wrapper


C = 3
SIZE = 64  # stride 16 -> a 4 x 4 feature grid
TINY_AVGN = dict(width=8, dim=32, heads=2, depth=1)
TINY_ENC = dict(width=8, dim=32)


def sample(classes, masks=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    cls = torch.tensor(classes, dtype=torch.long)
    labels = torch.zeros(C)
    labels[cls[cls >= 0]] = 1
    if masks is None:
        masks = torch.zeros(len(classes), SIZE, SIZE, dtype=torch.uint8)
        for s in range(len(classes)):
            if classes[s] >= 0:
                masks[s, 8 * s:8 * s + 24, 10:40] = 1
    return {"image": torch.randn(3, SIZE, SIZE, generator=g),
            "spec": torch.randn(1, 48, 40, generator=g), "labels": labels, "classes": cls,
            "masks": masks, "has_source": torch.tensor(bool((cls >= 0).any()))}


def dataset():
    """Single-source samples 0, 1, 4, 5 (classes 0, 2, 1, 0); 2 is silent, 3 a mixture."""
    rows = [[0, -1], [2, -1], [-1, -1], [1, 2], [1, -1], [0, -1]]
    return [sample(c, seed=i) for i, c in enumerate(rows)]


def clusters(n=10, dim=8, seed=0):
    """Three tight clusters along orthogonal axes, labels 0, 1, 2."""
    rng = np.random.default_rng(seed)
    centres = np.eye(dim)[:3] * 5
    x = np.concatenate([c + rng.normal(scale=0.1, size=(n, dim)) for c in centres])
    return x.astype(np.float32), np.repeat(np.arange(3), n)


def test_knn_and_silhouette_on_clusters():
    x, y = clusters()
    assert knn_accuracy(x, y, k=5) == 1.0
    assert silhouette(x, y) > 0.9
    shuffled = np.random.default_rng(1).permutation(y)
    assert knn_accuracy(x, shuffled, k=5) < 0.6
    assert silhouette(x, shuffled) < 0.1
    assert math.isnan(knn_accuracy(x, np.zeros(len(x)))) and math.isnan(silhouette(x, np.zeros(len(x))))


def test_knn_leaves_the_sample_out_and_breaks_ties_by_the_nearest():
    # Each point's own label would always win if it were its own neighbour.
    x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert knn_accuracy(x, np.array([0, 1, 0, 1]), k=1) == 0.0
    assert knn_accuracy(x, np.array([0, 0, 1, 1]), k=1) == 1.0
    # k = 2: points 0 and 1 each see the other (class 1, nearer) and point 2 (class 2), a tie
    # that the nearer one decides (right); point 2 sees two of class 1 (wrong).
    x = np.array([[1.0, 0.0], [0.95, 0.05], [0.0, 1.0]])
    assert knn_accuracy(x, np.array([1, 1, 2]), k=2) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="k must be"):
        knn_accuracy(x, np.array([0, 0, 1]), k=0)


def test_embeddings_of_a_tiny_avgn():
    torch.manual_seed(0)
    model = build_model("avgn", C, {**TINY_AVGN, "visual_stride": 16})
    data = dataset()
    emb = embeddings(model, data, batch_size=4)
    assert emb["audio"].shape == emb["visual"].shape == (4, 32)
    assert emb["audio"].dtype == emb["visual"].dtype == np.float32
    assert emb["classes"].dtype == np.int64
    assert emb["classes"].tolist() == [0, 2, 1, 0]
    batch = {k: torch.stack([d[k] for d in data]) for k in ("image", "spec")}
    with torch.no_grad():
        out = model.eval()(batch)
    for row, (i, k) in enumerate(zip([0, 1, 4, 5], [0, 2, 1, 0])):
        np.testing.assert_allclose(emb["audio"][row], out["class_a"][i, k].numpy(), atol=1e-5)
        np.testing.assert_allclose(emb["visual"][row], out["class_v"][i, k].numpy(), atol=1e-5)
    first = embeddings(model, data, batch_size=4, max_samples=3)
    assert first["classes"].tolist() == [0, 2, 1]
    np.testing.assert_array_equal(first["audio"], emb["audio"][:3])


def test_embeddings_of_a_tiny_ezvsl_pool_the_bag_over_the_mask_by_area():
    torch.manual_seed(0)
    model = build_model("ezvsl", C, {**TINY_ENC, "visual_stride": 16})
    masks = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    masks[0, 0:24, 0:16] = 1  # cell (0, 0) fully, cell (1, 0) half: rows 16..23 of 16..31
    data = [sample([1, -1], masks, seed=0),
            sample([2, -1], torch.zeros(2, SIZE, SIZE, dtype=torch.uint8), seed=1),  # empty mask
            sample([-1, -1], seed=2)]
    emb = embeddings(model, data, batch_size=8)
    assert emb["classes"].tolist() == [1, 2]
    batch = {k: torch.stack([d[k] for d in data]) for k in ("image", "spec")}
    with torch.no_grad():
        out = model.eval()(batch)
    fv = out["feat_v"]  # (3, 16, 32), location p = 4 * row + col
    assert fv.shape == (3, 16, 32)
    np.testing.assert_allclose(emb["audio"], out["feat_a"][:2].numpy(), atol=1e-6)
    np.testing.assert_allclose(emb["visual"][0], ((fv[0, 0] + 0.5 * fv[0, 4]) / 1.5).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(emb["visual"][1], fv[1].mean(0).numpy(), atol=1e-6)


def cell_data():
    """Single-source samples 0 (class 1, cells 0 and 4 of the 4 x 4 grid) and 2 (class 2, cells
    5, 6, 7), a mixture and a silent sample; the masks follow the 16 px cell borders."""
    m0 = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    m0[0, 0:32, 0:16] = 1
    m2 = torch.zeros(2, SIZE, SIZE, dtype=torch.uint8)
    m2[0, 16:32, 16:64] = 1
    return [sample([1, -1], m0, seed=0), sample([0, 1], seed=1), sample([2, -1], m2, seed=2),
            sample([-1, -1], seed=3)], {0: [0, 4], 2: [5, 6, 7]}


def stacked(data):
    return {k: torch.stack([d[k] for d in data]) for k in ("image", "spec")}


def test_embeddings_of_a_tiny_mix_localize_take_the_head_on_the_sounding_region():
    torch.manual_seed(0)
    model = build_model("mix_localize", C, {**TINY_ENC, "visual_stride": 16, "num_sources": 3})
    data, cells = cell_data()
    emb = embeddings(model, data, batch_size=8)
    assert emb["audio"].shape == emb["visual"].shape == (2, 32)
    assert emb["audio"].dtype == emb["visual"].dtype == np.float32
    assert emb["classes"].tolist() == [1, 2]
    with torch.no_grad():
        out = model.eval()(stacked(data))
    fa, fv = out["feat_a"], out["feat_v"]  # (4, 3, 32) source nodes, (4, 16, 32) region nodes
    assert fa.shape == (4, 3, 32) and fv.shape == (4, 16, 32)
    for row, (i, p) in enumerate(cells.items()):
        np.testing.assert_allclose(emb["visual"][row], fv[i, p].mean(0).numpy(), atol=1e-6)
        inside = (fa[i] @ fv[i, p].t()).mean(1)  # (K,): each head's mean map over the mask
        np.testing.assert_allclose(emb["audio"][row], fa[i, inside.argmax()].numpy(), atol=1e-6)
    # the head is picked by what it matches, not by its index
    model.heads = torch.nn.ModuleList(list(model.heads)[::-1])
    again = embeddings(model, data, batch_size=8)
    np.testing.assert_allclose(again["audio"], emb["audio"], atol=1e-6)
    np.testing.assert_allclose(again["visual"], emb["visual"], atol=1e-6)
    assert embeddings(model, dataset(), batch_size=4)["classes"].tolist() == [0, 2, 1, 0]


@pytest.mark.parametrize("pseudo_labels", ["kmeans", "labels"])
def test_embeddings_of_a_tiny_dsol_are_its_encoders_pair_in_both_stages(pseudo_labels):
    torch.manual_seed(0)
    model = build_model("dsol", C, {**TINY_ENC, "visual_stride": 16, "stage1_steps": 2,
                                    "cluster_start": 0, "pseudo_labels": pseudo_labels})
    data, cells = cell_data()
    emb = embeddings(model, data, batch_size=8)
    assert emb["audio"].shape == emb["visual"].shape == (2, 32)
    assert emb["audio"].dtype == emb["visual"].dtype == np.float32
    assert emb["classes"].tolist() == [1, 2]
    batch = stacked(data)
    with torch.no_grad():
        model.eval()
        fa = torch.nn.functional.normalize(model.audio(batch["spec"]), dim=-1)  # (4, 32)
        bag = model.visual(batch["image"]).flatten(2).transpose(1, 2)
        fv = torch.nn.functional.normalize(bag, dim=-1)  # (4, 16, 32)
        own = model(batch)
    for row, (i, p) in enumerate(cells.items()):
        np.testing.assert_allclose(emb["audio"][row], fa[i].numpy(), atol=1e-6)
        np.testing.assert_allclose(emb["visual"][row], fv[i, p].mean(0).numpy(), atol=1e-6)
        # the vectors DSOL's own map is computed from: m_i(p) = sigmoid(w cos(f^a_i, f^v_ip))
        map_i = torch.sigmoid(model.scale.detach() * (fv[i] @ torch.from_numpy(emb["audio"][row])))
        np.testing.assert_allclose(own["map"][i].numpy(), map_i.numpy(), atol=1e-5)
    # stage 2 with no dictionary formed: DSOL's own forward refuses, the pair is the same
    model.steps_done.fill_(2)
    assert model.stage == 2
    with pytest.raises(ValueError, match="dictionary"):
        with torch.no_grad():
            model(batch)
    late = embeddings(model, data, batch_size=8)
    np.testing.assert_array_equal(late["audio"], emb["audio"])
    np.testing.assert_array_equal(late["visual"], emb["visual"])
    assert embeddings(model, dataset(), batch_size=4)["classes"].tolist() == [0, 2, 1, 0]


def test_embeddings_refuse_unusable_models_and_data():
    torch.manual_seed(0)
    model = build_model("dmc", C, TINY_ENC)  # feat_a is (B, P_a, D): per-position audio
    with pytest.raises(ValueError, match="DMC: no per-sample"):
        embeddings(model, dataset())
    model = build_model("attention10k", C, TINY_ENC)  # an attended vector, no visual bag
    with pytest.raises(ValueError, match="no per-sample"):
        embeddings(model, dataset())
    with pytest.raises(ValueError, match="no single-source sample"):
        embeddings(build_model("ezvsl", C, TINY_ENC), [sample([-1, -1]), sample([0, 1])])


def test_project_tsne_shape_and_determinism():
    x, _ = clusters(n=7)
    a, b = project(x, "tsne", seed=3), project(x, "tsne", seed=3)
    assert a.shape == (21, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="projection method"):
        project(x, "pca", seed=0)
    with pytest.raises(ValueError, match="N >= 3"):
        project(x[:2], "tsne", seed=0)


@_in_child
def test_project_umap_shape_and_determinism():
    x, _ = clusters(n=7)
    a, b = project(x, "umap", seed=0), project(x, "umap", seed=0)
    assert a.shape == (21, 2) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)


@_in_child
def test_figure_writes_a_png_and_the_table(tmp_path):
    x, y = clusters(n=6)
    rows = {"AVGN": {"audio": x, "visual": x[::-1].copy(), "classes": y},
            "EZ-VSL": {"audio": x[:9], "visual": x[:9], "classes": y[:9]}}
    out = tmp_path / "fig4.png"
    table = figure(rows, ["violin", "flute", "drum"], out, seed=0)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] > 100
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["run", "modality", "kNN_acc", "silhouette", "N"]
    assert list(zip(table["run"], table["modality"], table["N"])) == [
        ("AVGN", "audio", 18), ("AVGN", "visual", 18), ("EZ-VSL", "audio", 9),
        ("EZ-VSL", "visual", 9)]
    assert table.loc[0, "kNN_acc"] == 1.0 and table.loc[0, "silhouette"] > 0.9
    assert table.loc[0, "kNN_acc"] == knn_accuracy(x, y, 5)
    with pytest.raises(ValueError, match="methods"):
        figure(rows, ["violin", "flute", "drum"], out, methods=("pca",))
