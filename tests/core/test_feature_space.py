"""Feature space against independent references: the inspector's own activations, a
brute-force distance table, scikit-learn run twice, and the model's own layers."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torchvision
from models import zf_like
from torch.utils.data import DataLoader, Subset, TensorDataset

from zfwidgets import Inspector, demo
from zfwidgets.core import feature_space
from zfwidgets.core.feature_space import (
    FeatureSpaceCancelled,
    default_feature_layer,
    embed,
    features,
    label_share,
    nearest,
    pixel_values,
)


@pytest.fixture(scope="module")
def digits():
    d = demo.load()
    return d, Inspector(d.model, device="cpu"), Subset(d.dataset, range(150))


@pytest.fixture(autouse=True)
def fresh_cache():
    feature_space.clear_feature_cache()
    yield
    feature_space.clear_feature_cache()


# ----- features ------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [None, "conv2", "fc5"])
def test_features_equal_the_inspectors_activations_per_image(digits, layer):
    d, insp, data = digits
    f = features(insp, data, layer=layer, batch_size=32, progress=False)
    expected_layer = layer or "fc4"
    assert f.layer == expected_layer and f.values.dtype == torch.float32
    assert f.values.device.type == "cpu" and f.values.shape[0] == len(data)
    for i in (0, 31, 32, 77, 149):  # batch edges included
        reference = insp.activations(data[i][0], expected_layer).flatten()
        torch.testing.assert_close(f.values[i], reference, rtol=1e-5, atol=1e-5)


def test_features_on_a_graph_model_equal_its_activations():
    model = torchvision.models.resnet18(num_classes=7).eval()
    insp = Inspector(model, device="cpu")
    images = torch.randn(10, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    f = features(insp, images, batch_size=4, progress=False)
    assert f.layer == "avgpool" and f.values.shape == (10, 512) and f.labels is None
    # independent: the real model's own trunk
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(model.children())[:-1])
        torch.testing.assert_close(f.values, trunk(images).flatten(1), rtol=1e-4, atol=1e-4)


def test_features_carry_the_labels_of_the_data(digits):
    d, insp, data = digits
    f = features(insp, data, progress=False)
    assert torch.equal(f.labels, d.dataset.labels[:150])
    loader = DataLoader(TensorDataset(d.dataset.images[:20], d.dataset.labels[:20]), batch_size=8)
    g = features(insp, loader, progress=False)
    assert torch.equal(g.labels, d.dataset.labels[:20])
    torch.testing.assert_close(g.values, f.values[:20])


def test_a_second_call_comes_from_the_cache(digits, monkeypatch):
    d, insp, data = digits
    first = features(insp, data, progress=False)
    calls = []
    original = Inspector.run_batch
    monkeypatch.setattr(Inspector, "run_batch", lambda *a, **k: calls.append(1) or original(*a))
    assert features(insp, data, layer="fc4", progress=False) is first  # alias or not: one key
    assert features(insp, data, layer="classifier.2", progress=False).values is first.values
    assert calls == []
    features(insp, data, layer="conv3", progress=False)
    assert calls  # another layer is computed


def test_new_weights_are_not_served_from_the_cache():
    model = zf_like()
    insp = Inspector(model, device="cpu")
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    before = features(insp, images, progress=False)
    with torch.no_grad():
        model[0].weight.mul_(2.0)
    after = features(insp, images, progress=False)
    assert not torch.allclose(before.values, after.values)
    torch.testing.assert_close(after.values[3], insp.activations(images[3], after.layer).flatten())


def test_progress_callback_and_cancellation(digits):
    d, insp, data = digits
    seen = []
    features(
        insp, data, layer="conv1", batch_size=64, progress=False, callback=lambda *a: seen.append(a)
    )
    assert seen == [(64, 150), (128, 150), (150, 150)]
    with pytest.raises(FeatureSpaceCancelled, match="after 64 of 150"):
        features(insp, data, layer="conv2", batch_size=64, progress=False, should_stop=lambda: True)
    # nothing half-done was cached
    assert features(insp, data, layer="conv2", progress=False).values.shape[0] == 150


def test_the_model_is_untouched(digits):
    model = zf_like()
    model.train()
    state = copy.deepcopy(model.state_dict())
    insp = Inspector(model, device="cpu")
    features(insp, torch.randn(5, 3, 32, 32), progress=False)
    assert model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert all(p.grad is None for p in model.parameters())


def test_pixel_values_are_the_flattened_images(digits):
    d, insp, data = digits
    p = pixel_values(data)
    assert p.layer == "pixels" and p.values.shape == (150, 28 * 28)
    torch.testing.assert_close(p.values[42], d.dataset.images[42].flatten())
    assert pixel_values(data) is p


def test_bad_input_is_refused_by_name(digits):
    d, insp, data = digits
    with pytest.raises(ValueError, match="empty"):
        features(insp, torch.zeros(0, 1, 28, 28), progress=False)
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        features(insp, data, layer="fc9", progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        features(insp, data, batch_size=0, progress=False)


# ----- the default layer ---------------------------------------------------------------------


def test_default_layer_is_what_feeds_the_last_linear_layer():
    alexnet = Inspector(torchvision.models.alexnet().eval(), device="cpu")
    name = default_feature_layer(alexnet, (3, 224, 224))
    assert name == "fc7" and alexnet.layer_name(name) == "classifier.5"  # fc7's ReLU
    resnet = Inspector(torchvision.models.resnet18().eval(), device="cpu")
    assert default_feature_layer(resnet, (3, 224, 224)) == "avgpool"
    digits_model = Inspector(demo.load().model, device="cpu")
    layer = default_feature_layer(digits_model, (1, 28, 28))
    # independent: the last Linear's in_features is the size of that layer's output
    last_linear = [m for m in digits_model.model.modules() if isinstance(m, torch.nn.Linear)][-1]
    width = digits_model.shapes((1, 28, 28))[digits_model.layer_index(layer)][-1]
    assert layer == "fc4" and width == last_linear.in_features


def test_default_layer_refuses_an_input_that_does_not_fit():
    with pytest.raises(ValueError):
        default_feature_layer(Inspector(demo.load().model, device="cpu"), (1, 5, 5))


# ----- nearest neighbours --------------------------------------------------------------------


def _brute_force(values: torch.Tensor, query: torch.Tensor, k: int, exclude=()):
    """The full distance table in float64 numpy, ranked by (distance, index)."""
    table = np.sqrt(((values.double().numpy() - query.double().numpy()) ** 2).sum(axis=1))
    table[list(exclude)] = np.inf
    order = np.lexsort((np.arange(len(table)), table))[:k]
    return order, table[order]


@pytest.mark.parametrize("chunk", [4096, 7])
def test_nearest_equals_a_brute_force_distance_table(monkeypatch, chunk):
    monkeypatch.setattr(feature_space, "_CHUNK_ROWS", chunk)
    values = torch.randn(60, 9, generator=torch.Generator().manual_seed(3))
    values[40] = values[12]  # an exact tie: the lower index comes first
    for q in (0, 12, 59):
        index, dist = nearest(values, values[q], k=8, exclude=q)
        ref_index, ref_dist = _brute_force(values, values[q], 8, exclude=[q])
        assert index.tolist() == ref_index.tolist()
        np.testing.assert_allclose(dist.numpy(), ref_dist, rtol=1e-5)
    index, _ = nearest(values, values[5], k=3)  # without exclude the query is its own nearest
    assert index[0] == 5
    many, _ = nearest(values, values[[1, 2]], k=4, exclude=[1, 2])
    assert many.shape == (2, 4)
    assert many[0].tolist() == _brute_force(values, values[1], 4, exclude=[1, 2])[0].tolist()


def test_nearest_in_pixel_space_of_real_images(digits):
    d, insp, data = digits
    p = pixel_values(data)
    index, dist = nearest(p.values, p.values[7], k=5, exclude=7)
    ref_index, ref_dist = _brute_force(p.values, p.values[7], 5, exclude=[7])
    assert index.tolist() == ref_index.tolist()
    np.testing.assert_allclose(dist.numpy(), ref_dist, rtol=1e-5)


def test_nearest_refuses_bad_arguments():
    values = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"k must be an int in 1\.\.3"):
        nearest(values, values[0], k=4, exclude=0)
    with pytest.raises(ValueError, match="D = 3"):
        nearest(values, torch.zeros(5), k=1)
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        nearest(torch.zeros(3), torch.zeros(3), k=1)


def test_label_share_counts_matching_labels():
    labels = torch.tensor([3, 3, 1, 3, 2])
    assert label_share(labels, 0, torch.tensor([1, 2, 3, 4])) == pytest.approx(0.5)


# ----- embeddings ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_embedding_is_reproducible_with_one_point_per_image(method):
    values = torch.randn(40, 60, generator=torch.Generator().manual_seed(4))
    first = embed(values, method, seed=3)
    assert first.shape == (40, 2) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, embed(values.clone(), method, seed=3))


def test_pca_embedding_spans_the_two_principal_directions():
    # independent reference: numpy's SVD of the centred data
    values = torch.randn(30, 5, generator=torch.Generator().manual_seed(5)).double()
    points = embed(values, "pca")
    centred = values.numpy() - values.numpy().mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    reference = centred @ vt[:2].T
    np.testing.assert_allclose(np.abs(points), np.abs(reference), atol=1e-8)


def test_tsne_works_for_a_handful_of_points():
    assert embed(torch.randn(4, 3), "tsne").shape == (4, 2)


def test_embedding_refuses_bad_input():
    with pytest.raises(ValueError, match="unknown embedding 'umap'; choose one of pca, tsne"):
        embed(torch.randn(5, 2), "umap")
    with pytest.raises(ValueError, match="at least 3 rows"):
        embed(torch.randn(2, 4), "pca")
    with pytest.raises(ValueError, match="NaN"):
        embed(torch.full((4, 2), float("nan")), "pca")


# ----- reliability: caches over all of the data, non-finite and degenerate input -------------


@pytest.mark.parametrize("wrap", [lambda x: x, TensorDataset, lambda x: list(x)])
def test_an_image_changed_in_place_is_not_served_from_the_cache(wrap):
    insp = Inspector(zf_like(), device="cpu")
    images = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    data = wrap(images)
    before = features(insp, data, progress=False).values.clone()
    pixels = pixel_values(data).values.clone()
    images[4].mul_(-1.0)  # in place: the same objects, one image changed
    after = features(insp, data, progress=False)
    torch.testing.assert_close(after.values[4], insp.activations(images[4], after.layer).flatten())
    torch.testing.assert_close(after.values[:4], before[:4])
    assert not torch.equal(after.values[4], before[4])
    assert not torch.equal(pixel_values(data).values[4], pixels[4])


def test_non_finite_or_integer_images_are_refused_with_the_image_named(digits):
    d, insp, data = digits
    images = d.dataset.images[:80].clone()
    images[70, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="image 70 of the data set has 1 NaN"):
        features(insp, images, batch_size=32, progress=False)
    with pytest.raises(ValueError, match="image 70 of the data set"):
        pixel_values(images, batch_size=32)
    with pytest.raises(TypeError, match=r"torch.uint8 .*x.float\(\) / 255"):
        features(insp, (d.dataset.images[:8] * 255).to(torch.uint8), progress=False)


def test_nearest_refuses_a_non_finite_query_or_table():
    values = torch.randn(5, 3)
    with pytest.raises(ValueError, match="query holds NaN"):
        nearest(values, torch.tensor([float("nan"), 0.0, 0.0]), k=2, exclude=0)
    values[3, 1] = float("inf")
    with pytest.raises(ValueError, match=r"values holds NaN or infinite entries \(row 3\)"):
        nearest(values, torch.zeros(3), k=2)


def test_tsne_of_identical_rows_is_refused_before_scikit_learn_runs(monkeypatch):
    # scikit-learn's t-SNE segfaults on these rows: it must never be called
    import sklearn.manifold

    monkeypatch.setattr(sklearn.manifold, "TSNE", None)
    dead = torch.full((30, 8), 0.25)
    with pytest.raises(ValueError, match="all 30 rows are identical"):
        embed(dead, "tsne")
    np.testing.assert_array_equal(embed(dead, "pca"), np.zeros((30, 2)))


def test_an_excluded_row_never_comes_back_even_at_infinite_distances():
    values = torch.tensor([[1e30, 0.0], [-1e30, 0.0], [2e30, 0.0]])
    index, dist = nearest(values, torch.tensor([-3e30, 0.0]), k=2, exclude=1)
    assert 1 not in index.tolist() and index.tolist() == [0, 2]
