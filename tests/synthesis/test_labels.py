"""Label encodings: instance map ↔ release bit mask, on hand-made maps."""

import numpy as np

from simgan_histo import patch_file
from simgan_histo.synthesis import labels


def _square_instance(size=9, box=(3, 6)):
    instance = np.zeros((size, size), np.uint16)
    instance[box[0]:box[1], box[0]:box[1]] = 1
    return instance


def test_bits_of_one_square_by_hand():
    mask = labels.labels_to_mask(_square_instance())
    nucleus = (mask & patch_file.MASK_NUCLEUS) > 0
    contour = (mask & patch_file.MASK_CONTOUR) > 0
    centroid = (mask & patch_file.MASK_CENTROID) > 0
    assert nucleus.sum() == 9  # the 3×3 square
    assert contour.sum() == 25 - 9  # the ring outside it (8-neighbourhood)
    assert not (contour & nucleus).any()
    assert np.argwhere(centroid).tolist() == [[4, 4]]  # bbox centre
    assert mask[4, 4] == patch_file.MASK_NUCLEUS | patch_file.MASK_CENTROID


def test_centroid_is_the_bbox_centre_even_off_the_nucleus():
    instance = np.zeros((10, 10), np.uint16)
    instance[2, 2:8] = 1  # an L shape: bbox rows 2..6, cols 2..7
    instance[2:7, 2] = 1
    mask = labels.labels_to_mask(instance)
    assert np.argwhere(mask & patch_file.MASK_CENTROID).tolist() == [[4, 4]]


def test_round_trip_separated_instances():
    rng = np.random.default_rng(0)
    instance = np.zeros((64, 64), np.uint16)
    for k, (row, col) in enumerate(rng.integers(0, 6, (8, 2)) * 10 + 2):
        instance[row:row + 6, col:col + 5] = k + 1
    instance = labels.relabel_sequential(instance)
    recovered = labels.mask_to_labels(labels.labels_to_mask(instance))
    # Same partition: a one-to-one map between ids.
    pairs = set(zip(instance.ravel().tolist(), recovered.ravel().tolist()))
    assert len(pairs) == len(set(instance.ravel().tolist())) == len(set(recovered.ravel().tolist()))


def test_touching_instances_merge_in_bits_but_not_in_ids():
    instance = np.zeros((12, 12), np.uint16)
    instance[3:7, 2:6] = 1
    instance[3:7, 6:10] = 2
    mask = labels.labels_to_mask(instance)
    assert (mask & patch_file.MASK_CENTROID).astype(bool).sum() == 2
    assert labels.mask_to_labels(mask).max() == 1


def test_rasterise_draws_later_polygons_on_top_and_relabel_compacts():
    first = np.array([[2, 2], [12, 2], [12, 12], [2, 12]], np.float32)
    second = first + 5
    drawn = labels.rasterise(np.stack([first, second]), 20)
    assert drawn[10, 10] == 2 and drawn[4, 4] == 1 and drawn[16, 16] == 2
    gappy = np.array([[0, 3], [7, 3]], np.uint16)
    np.testing.assert_array_equal(labels.relabel_sequential(gappy), [[0, 1], [2, 1]])


def test_fill_union_fills_overlaps():
    # cv2.fillPoly given several polygons at once leaves their overlap empty (even-odd).
    first = np.array([[2, 2], [12, 2], [12, 12], [2, 12]], np.float32)
    both = labels.fill_union(np.stack([first, first + 5]), 20)
    assert both[10, 10] == 1 and both.sum() == 2 * 121 - 36
    np.testing.assert_array_equal(both > 0, labels.rasterise(np.stack([first, first + 5]), 20) > 0)


def test_polygons_missing_the_kept_crop_share_one_outside_id():
    inside = np.array([[4, 4], [10, 4], [10, 10], [4, 10]], np.float32)
    outside = inside + [16, 0]  # right of the crop x < 12
    drawn = labels.rasterise(np.stack([outside, inside]), 30, keep=(0, 0, 12, 30))
    assert drawn[6, 6] == 1 and drawn[6, 22] == labels.OUTSIDE_ID
    ids, mask = labels.instances_and_mask(drawn[:, :12])
    assert ids.max() == 1 and (mask & 1).sum() == 49


def test_boxes_by_hand_and_boxed_search_against_a_full_scan():
    square = np.array([[4, 4], [10, 4], [10, 10], [4, 10]], np.float32)
    drawn, boxes = labels.rasterise(np.stack([square, square + [40, 0]]), 60,
                                    keep=(0, 0, 46, 60), with_boxes=True)
    # fillPoly sets exactly the pixels 4..10 of vertices at 4 and 10; the second square
    # (pixels 44..50) meets the crop x < 46.
    np.testing.assert_array_equal(boxes, [[4, 4, 11, 11], [44, 4, 51, 11]])
    assert drawn[4:11, 4:11].all() and drawn[3, 4:11].sum() == 0 and drawn[4:11, 11].sum() == 0
    # On random crowded nuclei the boxed search equals scipy's full scan, bit for bit.
    from tests.synthesis.conftest import small_config
    from simgan_histo.synthesis import placement
    config = small_config()
    tissue = np.ones((128, 128), np.uint8)
    for seed in range(20):
        vertices = placement.sample_nuclei(np.random.default_rng(seed), config, tissue, 60, 1.0)
        drawn, boxes = labels.rasterise(vertices - 6, 116, keep=(10, 10, 106, 106),
                                        with_boxes=True)
        crop = drawn[10:106, 10:106]
        fast = labels.instances_and_mask(crop, np.minimum(np.maximum(boxes - 10, 0), 96))
        full = labels.instances_and_mask(crop)
        for a, b in zip(fast, full):
            np.testing.assert_array_equal(a, b)
