"""Convex merge: solidity by hand, which touching pairs merge, and its place in the watershed."""

import cv2
import numpy as np
import pytest

from simgan_histo.postprocess import convex_merge
from simgan_histo.postprocess import watershed


def test_solidity_by_hand():
    square = np.ones((4, 4), bool)
    assert convex_merge.solidity(square) == 1.0
    corner = square.copy()
    corner[2:, 2:] = False  # 12 pixels; the hull of their centres also covers (2, 2)
    assert convex_merge.solidity(corner) == pytest.approx(12 / 13)
    assert convex_merge.solidity(np.zeros((3, 3), bool)) == 0.0


def test_adjacent_pairs_are_four_connected_and_unique():
    labels = np.array([[1, 1, 2, 0],
                       [1, 3, 2, 0],
                       [0, 0, 0, 4]])  # 4 touches 2 only diagonally
    np.testing.assert_array_equal(convex_merge.adjacent_pairs(labels), [[1, 2], [1, 3], [2, 3]])


def test_a_bar_cut_in_three_becomes_one_and_touching_discs_stay_two():
    labels = np.zeros((40, 70), np.int32)
    labels[5:13, 5:20], labels[5:13, 20:35], labels[5:13, 35:50] = 3, 5, 7  # one bar, cut twice
    cv2.circle(labels, (15, 28), 7, 1, -1)
    cv2.circle(labels, (29, 28), 7, 2, -1)  # two discs whose outlines meet: a notch each side
    merged = convex_merge.merge_convex(labels, 0.9)
    bar = merged[5:13, 5:50]
    assert (bar == 3).all()  # two rounds: the smaller id survives
    np.testing.assert_array_equal(merged[labels <= 2], labels[labels <= 2])
    union = (labels == 1) | (labels == 2)
    assert convex_merge.solidity(union) < 0.9  # why they stay apart
    np.testing.assert_array_equal(convex_merge.merge_convex(labels, 0.0), labels)
    assert len(np.unique(convex_merge.merge_convex(labels, 0.5))) == 3  # 0, bar, discs


def test_watershed_merges_an_elongated_nucleus_split_between_two_seeds():
    """One ellipse whose detection map has two peaks 16 px apart: the marker watershed cuts
    it in two; with merge_solidity 0.9 the halves (their union is the convex ellipse) are
    one instance again."""
    truth = np.zeros((64, 64), np.uint8)
    cv2.ellipse(truth, (32, 32), (18, 7), 0, 0, 360, 1, -1)
    segmentation = truth.astype(np.float32)
    detection = np.zeros((64, 64), np.float32)
    detection[32, 24] = detection[32, 40] = 1.0
    split = watershed.instances_from_maps(segmentation, detection, watershed.Thresholds(
        seg_threshold=0.5, compactness=0.0))
    joined = watershed.instances_from_maps(segmentation, detection, watershed.Thresholds(
        seg_threshold=0.5, compactness=0.0, merge_solidity=0.9))
    assert split.max() == 2
    assert joined.max() == 1 and ((joined > 0) == (truth > 0)).all()
    with pytest.raises(ValueError, match="merge_solidity"):
        watershed.Thresholds(merge_solidity=1.5)
