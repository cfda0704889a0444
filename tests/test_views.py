"""Training views: pure functions of (seed, global index, view), cut the same for every model."""

from __future__ import annotations

import pytest
import torch

from dait_edge.data.images import ImageListDataset
from dait_edge.data.views import TrainViews, ViewSpec, view_at, view_order, view_seed
from dait_edge.methods.batch import Batch


@pytest.fixture(scope="module")
def samples(layouts, tmp_path_factory):
    from dait_edge.data import load_dataset

    fixture = layouts.cub(
        tmp_path_factory.mktemp("views"), classes=2, train_per_class=3, test_per_class=1, size=(40, 30)
    )
    return load_dataset("cub", fixture.root).split("train")


def _views(samples, **kw):
    args = {"spec": ViewSpec(24), "seed": 3, "views": 4, "mean": (0.5,) * 3, "std": (0.25,) * 3}
    return TrainViews(ImageListDataset(samples), **{**args, **kw})


def test_a_view_is_the_same_pixels_whatever_the_global_rngs(samples):
    views = _views(samples)
    first = views[(1, 2)]["image"]
    torch.manual_seed(999)  # the global generators do not matter ...
    state = torch.get_rng_state()
    again = views[(1, 2)]["image"]
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert torch.equal(state, torch.get_rng_state())  # ... and are not touched (not even reseeded)
    assert view_seed(3, 1, 1) != view_seed(3, 1, 0) != view_seed(4, 1, 0)
    # a fresh dataset object (another process, another worker) cuts the same pixels
    torch.testing.assert_close(_views(samples)[(1, 2)]["image"], first, rtol=0, atol=0)


def test_views_are_model_independent_only_the_normalisation_differs(samples):
    a = _views(samples, mean=(0.5,) * 3, std=(0.25,) * 3)[(2, 1)]["image"]
    b = _views(samples, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))[(2, 1)]["image"]
    pixels_a = a * 0.25 + 0.5
    pixels_b = b * torch.tensor((0.229, 0.224, 0.225)).view(3, 1, 1) + torch.tensor(
        (0.485, 0.456, 0.406)
    ).view(3, 1, 1)
    torch.testing.assert_close(pixels_a, pixels_b, atol=1e-6, rtol=0)


def test_with_k_views_no_view_repeats_within_k_epochs_and_the_cycle_restarts(samples):
    for index in range(5):
        order = [view_at(7, index, epoch, 4) for epoch in range(8)]
        assert sorted(order[:4]) == [0, 1, 2, 3] and order[4:] == order[:4]
        assert order[:4] == view_order(7, index, 4)
    views = _views(samples)
    distinct = {tuple(views[(0, e)]["image"].flatten()[:64].tolist()) for e in range(4)}
    assert len(distinct) > 1  # different views are different crops / flips


def test_items_carry_global_indices_views_and_the_labelled_mask(samples):
    views = _views(samples, indices=[1, 4, 5], labelled=[4])
    batch = Batch.collate([views[(j, 0)] for j in range(3)])
    assert batch.index.tolist() == [1, 4, 5]
    assert batch.labelled.tolist() == [False, True, False]
    assert batch.labels.tolist() == [-1, samples[4][1], -1]
    assert batch.view.tolist() == [view_at(3, i, 0, 4) for i in (1, 4, 5)]
    assert batch.images.shape == (3, 3, 24, 24)


def test_extra_outputs_are_looked_up_by_index_and_view(samples):
    views = _views(
        samples, extra=lambda index, view: {"vlm_image": torch.tensor([index, view], dtype=torch.float16)}
    )
    batch = Batch.collate([views[(j, 1)] for j in (0, 2)])
    assert batch.extra["vlm_image"].tolist() == [[0, view_at(3, 0, 1, 4)], [2, view_at(3, 2, 1, 4)]]


def test_view_spec_rejects_unknown_interpolation():
    with pytest.raises(ValueError, match="interpolation"):
        ViewSpec(24, interpolation="lanczos")


def test_random_resized_crop_views_are_seeded_pure_and_keep_old_cache_keys(samples):
    """A recipe's RandomResizedCrop (scale in [s, 1]): the same pixels for the same (seed, index, view)
    whatever the global RNG, other pixels for another view; a spec without it describes itself as before,
    so VLM caches built before the setting keep their keys."""
    spec = ViewSpec(24, scale=0.5)
    views = _views(samples, spec=spec)
    torch.manual_seed(0)
    first = views[(1, 2)]["image"]
    torch.manual_seed(99)
    state = torch.get_rng_state()
    assert torch.equal(views[(1, 2)]["image"], first) and torch.equal(torch.get_rng_state(), state)
    assert first.shape == (3, 24, 24)
    assert not torch.equal(views[(1, 3)]["image"], first)
    assert not torch.equal(_views(samples)[(1, 2)]["image"], first)  # the resize-and-crop view differs
    assert ViewSpec(24).to_dict() == {"size": 24, "crop_pct": 0.875, "interpolation": "bilinear", "flip": True}
    assert ViewSpec(**spec.to_dict()) == spec
