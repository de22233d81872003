"""The synthetic benchmark: determinism, disjoint splits, and ground truth that matches the pixels."""

from __future__ import annotations

import re

import numpy as np
import pytest

from videoxai import Clip, InputError
from videoxai.data.synthetic import COLOURS, SHAPES, SyntheticVideos, chance_rates, class_grid


@pytest.fixture(scope="module")
def ds():
    return SyntheticVideos(64, split="test", seed=3)


def test_same_seed_and_index_give_identical_clips(ds):
    again = SyntheticVideos(64, split="test", seed=3)
    for i in (0, 7, 63):
        a, b = ds[i], again[i]
        assert np.array_equal(a.frames, b.frames)
        assert np.array_equal(a.masks, b.masks)
        assert np.array_equal(a.boxes, b.boxes)
        assert (a.label, a.window) == (b.label, b.window)
    # a clip depends on its index, not on the dataset's size or on what was rendered before
    assert np.array_equal(SyntheticVideos(1000, split="test", seed=3)[63].frames, ds[63].frames)
    assert np.array_equal(ds[-1].frames, ds[63].frames)


def test_seeds_and_splits_give_different_clips():
    train = SyntheticVideos(20, split="train", seed=0).arrays(range(20))[0]
    test = SyntheticVideos(20, split="test", seed=0).arrays(range(20))[0]
    other_seed = SyntheticVideos(20, split="train", seed=1).arrays(range(20))[0]
    flat = lambda x: {c.tobytes() for c in x}  # noqa: E731
    assert not flat(train) & flat(test)
    assert not flat(train) & flat(other_seed)
    assert len(flat(train)) == 20


def test_shapes_dtypes_and_clip(ds):
    s = ds[5]
    assert s.frames.shape == (8, 64, 64, 3) and s.frames.dtype == np.uint8
    assert s.masks.shape == (8, 64, 64) and s.masks.dtype == bool
    assert s.boxes.shape == (8, 4)
    clip = s.clip
    assert isinstance(clip, Clip) and clip.fps == 8.0 and clip.source == "synthetic:test/5"
    assert np.array_equal(clip.frames, s.frames)
    other = SyntheticVideos(3, split="val", num_frames=12, frame_size=(48, 48), num_classes=9)[2]
    assert other.frames.shape == (12, 48, 48, 3) and 0 <= other.label < 9


def test_window_masks_and_boxes_agree(ds):
    for i in range(len(ds)):
        s = ds[i]
        a, b = s.window
        assert 0 <= a < b <= 8 and 2 <= b - a <= 4
        present = s.masks.any((1, 2))
        assert present[a:b].all() and not present[:a].any() and not present[b:].any()
        assert (s.boxes[~present] == -1).all()
        for t in range(a, b):
            top, left, bottom, right = s.boxes[t]
            ys, xs = np.nonzero(s.masks[t])
            assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == (top, left, bottom, right)
            side = max(bottom - top, right - left)
            assert 0.10 * 64 <= side <= 0.18 * 64  # small: 10-15 % of the frame side


def test_object_pixels_have_the_class_colour(ds):
    for i in range(0, len(ds), 4):
        s = ds[i]
        colour = np.array(COLOURS[ds.labels[s.label].split()[0]], dtype=float)
        a, _ = s.window
        obj = s.frames[a][s.masks[a]].astype(float)
        # jitter (≤ 10 levels) + noise (σ = 5): the object is its nominal colour, everywhere on it
        assert np.abs(obj.mean(0) - colour).max() < 14
        assert np.abs(obj - colour).max() < 40
        # a ring of background just outside the box is not the object's colour
        top, left, bottom, right = s.boxes[a]
        ring = np.zeros((64, 64), bool)
        ring[max(0, top - 2):bottom + 2, max(0, left - 2):right + 2] = True
        ring[top:bottom, left:right] = False
        assert np.abs(s.frames[a][ring].astype(float) - colour).max(1).mean() > 30


def test_the_object_appears_and_vanishes_with_its_window(ds):
    s = ds[2]
    a, b = s.window
    t_in, t_out = a, (b if b < 8 else a - 1)
    changed = np.abs(s.frames[t_in].astype(int) - s.frames[t_out].astype(int)).max(-1) > 60
    # the big change between a frame inside and one outside the window is the object itself
    assert changed[s.masks[t_in]].mean() > 0.9


def test_every_class_appears_and_labels_are_conjunctions():
    ds = SyntheticVideos(48, split="train")
    labels = ds.arrays(range(48))[1]
    assert set(labels.tolist()) == {0, 1, 2, 3}
    assert ds.labels == ["red square", "red triangle", "blue square", "blue triangle"]
    classes, distractors = class_grid(4)
    assert not set(classes) & set(distractors)
    # distractors reuse the classes' colours and shapes: neither alone identifies a class
    assert {c for _, c in classes} <= {c for _, c in distractors}
    assert {s for s, _ in classes} <= {s for s, _ in distractors}
    assert len(set(SyntheticVideos(1, num_classes=9).labels)) == 9


def test_chance_rates(ds):
    rates = chance_rates(ds)
    windows = [ds[i].window for i in range(len(ds))]
    assert rates["temporal"] == pytest.approx(np.mean([(b - a) / 8 for a, b in windows]))
    assert 2 / 8 <= rates["temporal"] <= 4 / 8
    assert 0.005 < rates["spatial"] < 0.03
    assert rates["clips"] == 64


def test_bad_arguments():
    with pytest.raises(InputError):
        SyntheticVideos(10, window=(0, 3))
    with pytest.raises(InputError):
        SyntheticVideos(10, num_frames=4, window=(2, 6))
    with pytest.raises(InputError):
        SyntheticVideos(10, num_classes=40)
    with pytest.raises(InputError):
        SyntheticVideos(10, split="")
    with pytest.raises(IndexError):
        SyntheticVideos(10)[10]
    assert len(SHAPES) == 6


def test_sizes_up_to_10_12_cost_nothing_and_others_are_errors():
    from videoxai.data.synthetic import MAX_SIZE

    big = SyntheticVideos(MAX_SIZE, split="test", seed=3)     # clips are rendered on demand
    assert len(big) == MAX_SIZE == 10**12
    assert np.array_equal(big[63].frames, SyntheticVideos(64, split="test", seed=3)[63].frames)
    assert big[-1].source == f"synthetic:test/{MAX_SIZE - 1}"
    assert len(SyntheticVideos(np.int64(5))) == 5 and len(SyntheticVideos(0)) == 0
    # 10**30 was an OverflowError from len(), 2.5 and True were read as 2 and 1
    for size in (MAX_SIZE + 1, 10**30, -1, 2.5, True, "5"):
        with pytest.raises(InputError, match=rf"^size must be an integer from 0 to 1000000000000 \(10\^12\), "
                                             rf"got {re.escape(repr(size))}$"):
            SyntheticVideos(size)
