"""Marker watershed: touching nuclei separated, seed recall, holes, areas, settings."""

import cv2
import numpy as np
import pytest

from simgan_histo import config as config_lib
from simgan_histo.evaluation import metrics
from simgan_histo.postprocess import seeds, watershed


def _disk(shape, centre, radius):
    rows, cols = np.ogrid[:shape[0], :shape[1]]
    return (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius ** 2


def _touching_disks(shape=(64, 80)):
    """Two disks of radius 10 overlapping by 4 px, their seg/det maps and true instances."""
    centres = [(32, 30), (32, 46)]
    union = _disk(shape, centres[0], 10) | _disk(shape, centres[1], 10)
    cols = np.arange(shape[1])[None, :]
    truth = np.where(union, np.where(cols < 38, 1, 2), 0)  # split at the bisector x = 38
    seg = union.astype(np.float32)
    det = (_disk(shape, centres[0], 2) | _disk(shape, centres[1], 2)).astype(np.float32)
    return seg, det, truth


def test_separates_two_touching_disks():
    seg, det, truth = _touching_disks()
    labels = watershed.instances_from_maps(seg, det)
    assert labels.dtype == np.uint32
    assert sorted(np.unique(labels)) == [0, 1, 2]
    scores = metrics.image_metrics(truth, labels)
    assert scores["tp"] == 2 and scores["aji"] > 0.9
    # Without the detection map, the union is one seed-recalled instance.
    merged = watershed.instances_from_maps(seg, np.zeros_like(det))
    assert sorted(np.unique(merged)) == [0, 1]


def test_seed_recall_gives_unseeded_foreground_an_instance():
    shape = (40, 80)
    seg = (_disk(shape, (20, 15), 8) | _disk(shape, (20, 60), 8)).astype(np.float32)
    # A peak of the segmentation map inside the unseeded blob: the recalled seed sits there.
    seg[20, 60] = 1.0
    seg[_disk(shape, (20, 60), 8) & ~_disk(shape, (20, 60), 0)] = 0.9
    det = _disk(shape, (20, 15), 2).astype(np.float32)
    labels = watershed.instances_from_maps(seg, det)
    assert len(np.unique(labels)) == 3
    assert labels[20, 15] != labels[20, 60] and labels[20, 60] > 0
    assert np.sum(labels == labels[20, 60]) == np.sum(_disk(shape, (20, 60), 8))


def test_seeded_blob_gets_no_extra_recalled_seed():
    seg = _disk((40, 40), (20, 20), 9).astype(np.float32)
    det = _disk((40, 40), (20, 20), 2).astype(np.float32)
    assert len(np.unique(watershed.instances_from_maps(seg, det))) == 2


def test_holes_inside_one_instance_are_filled():
    ring = _disk((40, 40), (20, 20), 10) & ~_disk((40, 40), (20, 20), 3)
    det = np.zeros((40, 40), np.float32)
    det[12:15, 19:22] = 1.0  # seed on the ring
    labels = watershed.instances_from_maps(ring.astype(np.float32), det)
    assert labels[20, 20] == labels[12, 20] == 1
    assert np.sum(labels == 1) == np.sum(_disk((40, 40), (20, 20), 10))


def test_fill_instance_holes_leaves_gaps_between_two_instances():
    labels = np.zeros((7, 9), np.uint32)
    labels[1:6, 1:4], labels[1:6, 5:8] = 1, 2
    labels[1, 4], labels[5, 4] = 1, 2  # the gap column is enclosed by both
    labels[3, 2] = 0  # a hole inside instance 1
    filled = watershed.fill_instance_holes(labels)
    assert filled[3, 2] == 1
    assert (filled[2:5, 4] == 0).all()


def test_area_limits_and_consecutive_ids():
    shape = (50, 50)
    seg = (_disk(shape, (10, 10), 2) | _disk(shape, (30, 30), 6)).astype(np.float32)
    det = (_disk(shape, (10, 10), 1) | _disk(shape, (30, 30), 1)).astype(np.float32)
    labels = watershed.instances_from_maps(seg, det)  # the 13-px disk is < min 20 px
    assert sorted(np.unique(labels)) == [0, 1] and labels[30, 30] == 1
    small = watershed.Thresholds(min_area_px=0, max_area_px=50)
    labels = watershed.instances_from_maps(seg, det, small)  # now the 113-px one is too big
    assert sorted(np.unique(labels)) == [0, 1] and labels[10, 10] == 1


def test_empty_maps_and_trailing_channel_axis():
    zeros = np.zeros((16, 16, 1), np.float32)
    labels = watershed.instances_from_maps(zeros, zeros)
    assert labels.shape == (16, 16) and not labels.any()


def test_bad_maps_raise():
    with pytest.raises(ValueError, match="one shape"):
        watershed.instances_from_maps(np.zeros((8, 8)), np.zeros((8, 9)))
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        watershed.instances_from_maps(np.zeros((2, 8, 8)), np.zeros((2, 8, 8)))


def test_thresholds_defaults_json_and_validation():
    release = watershed.Thresholds()
    assert (release.seg_threshold, release.det_threshold, release.det_sigma,
            release.seg_sigma, release.min_area_px, release.compactness) == (
                0.33, 0.07, 1.0, 0.5, 20, 1.0)
    assert watershed.Thresholds.from_task_config(config_lib.TaskConfig()) == release
    assert watershed.Thresholds.from_json(release.to_json()) == release
    assert watershed.Thresholds.from_json({"seg_threshold": 0.5}).det_threshold == 0.07
    assert release.replace(seg_threshold=0.4, det_threshold=None).seg_threshold == 0.4
    with pytest.raises(ValueError, match="unknown key"):
        watershed.Thresholds.from_json({"seg_thresh": 0.5})
    with pytest.raises(ValueError, match="seg_threshold"):
        watershed.Thresholds(seg_threshold=1.5)
    with pytest.raises(ValueError, match="max_area_px"):
        watershed.Thresholds(min_area_px=30, max_area_px=10)
    assert release.flood_on == "segmentation"
    with pytest.raises(ValueError, match="flood_on"):
        watershed.Thresholds(flood_on="contour")
    with pytest.raises(ValueError, match="seed_h"):
        watershed.Thresholds(seed_h=-1.0)
    assert release.reads_detection  # detection seeds
    assert not release.replace(seed_h=1.0).reads_detection
    assert release.replace(seed_h=1.0, flood_on="detection").reads_detection
    assert not release.distance_fill_holes  # the release fills holes per instance only
    with pytest.raises(ValueError, match="distance_fill_holes"):
        watershed.Thresholds.from_json({"distance_fill_holes": "yes"})


def test_distance_seeds_keep_an_elongated_nucleus_whole_and_split_two_discs():
    """Distance seeds ignore the detection map. An ellipse (semi-axes 18 and 7) whose
    detection map has two peaks 16 px apart: detection seeds cut it, its distance transform
    has one maximum. Two discs of radius 10 with centres 16 px apart: the distance transform
    is 10 at each centre and about 6 at the neck (√(10² − 8²)), so h 1 seeds both and h 5
    (more than the 4-px dip) only one."""
    ellipse = np.zeros((64, 64), np.uint8)
    cv2.ellipse(ellipse, (32, 32), (18, 7), 0, 0, 360, 1, -1)
    detection = np.zeros((64, 64), np.float32)
    detection[32, 24] = detection[32, 40] = 1.0
    release = watershed.Thresholds(seg_threshold=0.5, compactness=0.0)
    assert watershed.instances_from_maps(ellipse.astype(np.float32), detection,
                                         release).max() == 2
    whole = watershed.instances_from_maps(ellipse.astype(np.float32), detection,
                                          release.replace(seed_h=1.0))
    assert whole.max() == 1 and ((whole > 0) == (ellipse > 0)).all()
    discs = np.zeros((48, 64), np.int32)
    cv2.circle(discs, (24, 24), 10, 1, -1)
    cv2.circle(discs, (40, 24), 10, 2, -1)
    flat = (discs > 0).astype(np.float32)
    nothing = np.zeros_like(flat)
    for surface in ("segmentation", "distance"):
        two = watershed.instances_from_maps(flat, nothing, release.replace(
            seed_h=1.0, flood_on=surface))
        assert two.max() == 2
        assert two[24, 24] != two[24, 40] and two[24, 24] > 0 and two[24, 40] > 0
    one = watershed.instances_from_maps(flat, nothing, release.replace(seed_h=5.0))
    assert one.max() == 1
    everywhere = np.ones((16, 16), np.float32)  # no background: distances are capped, finite
    assert np.isfinite(seeds.distance_map(everywhere > 0)).all()
    assert watershed.instances_from_maps(everywhere, nothing[:16, :16], release.replace(
        seed_h=1.0)).max() == 1


def test_distance_fill_holes_keeps_a_holed_nucleus_whole_and_can_merge_at_a_holed_neck():
    """An ellipse (semi-axes 20 and 9) with a hole of radius 3 at its centre, as a pale
    vesicular interior leaves in the foreground: its distance transform peaks on the major
    axis either side of the hole (≈ 7.5 at 11 px out) and dips to ≈ 3 around it, so h 1
    seeds it twice. With the hole filled the transform has one maximum, and the instance is
    the whole ellipse. The cost: two discs of radius 10, centres 16 px apart, with a hole of
    radius 2 in their neck, as where two nuclei touch. Around the hole the transform dips
    to ≈ 2 below the discs' 10, so h 5 seeds both; filled, the neck is ≈ 6 deep, a dip of 4,
    and h 5 seeds one: the two are merged."""
    ellipse = np.zeros((48, 64), np.uint8)
    cv2.ellipse(ellipse, (32, 24), (20, 9), 0, 0, 360, 1, -1)
    holed = ellipse.astype(bool) & ~_disk(ellipse.shape, (24, 32), 3)
    nothing = np.zeros(ellipse.shape, np.float32)
    settings = watershed.Thresholds(seg_threshold=0.5, compactness=0.0, seed_h=1.0,
                                    flood_on="distance")
    assert watershed.instances_from_maps(holed.astype(np.float32), nothing,
                                         settings).max() == 2
    whole = watershed.instances_from_maps(holed.astype(np.float32), nothing,
                                          settings.replace(distance_fill_holes=True))
    assert whole.max() == 1 and ((whole > 0) == (ellipse > 0)).all()

    neck = (_disk(ellipse.shape, (24, 24), 10) | _disk(ellipse.shape, (24, 40), 10)) & ~_disk(
        ellipse.shape, (24, 32), 2)
    deep = settings.replace(seed_h=5.0)
    apart = watershed.instances_from_maps(neck.astype(np.float32), nothing, deep)
    merged = watershed.instances_from_maps(neck.astype(np.float32), nothing,
                                           deep.replace(distance_fill_holes=True))
    assert apart.max() == 2 and apart[24, 24] != apart[24, 40]
    assert merged.max() == 1 and merged[24, 24] == merged[24, 40] == 1


def test_flooding_the_detection_map_cuts_along_its_valley():
    """A small disc overlapping a large one under a flat segmentation map; the detection map
    is a cone per nucleus, high at its centre and low at its outline. Seeds at the two
    centres: flooding −segmentation cuts at equal distance from the seeds, 3.5 px inside the
    large nucleus; flooding −detection cuts on the true border, the cones' valley."""
    shape = (64, 80)
    large, small = _disk(shape, (32, 20), 16), _disk(shape, (32, 37), 5)
    truth = np.where(small, 2, np.where(large, 1, 0))
    rows, cols = np.indices(shape)
    cone = np.where(truth == 1, 1 - np.hypot(rows - 32, cols - 20) / 17,
                    np.where(truth == 2, 1 - np.hypot(rows - 32, cols - 37) / 6, 0))
    seg, det = (truth > 0).astype(np.float32), cone.astype(np.float32)
    settings = dict(det_threshold=0.6, compactness=0.0)  # seeds: the two cones' tops
    on_det = watershed.instances_from_maps(
        seg, det, watershed.Thresholds(**settings, flood_on="detection"))
    on_seg = watershed.instances_from_maps(seg, det, watershed.Thresholds(**settings))
    assert metrics.image_metrics(truth, on_det)["aji"] > 0.97
    assert metrics.image_metrics(truth, on_seg)["aji"] < 0.9


def _old_instances(segmentation, detection, thresholds):
    """The definition before the speed work: scipy Gaussians and labels, one skimage call."""
    from scipy import ndimage
    from skimage import segmentation as sk_segmentation

    eight = np.ones((3, 3), bool)
    seg = ndimage.gaussian_filter(segmentation, thresholds.seg_sigma)
    det = ndimage.gaussian_filter(detection, thresholds.det_sigma)
    foreground = seg > thresholds.seg_threshold
    components, count = ndimage.label(det > thresholds.det_threshold, structure=eight)
    boxes = ndimage.find_objects(components)
    seeds = np.array([((b[0].start + b[0].stop - 1) // 2, (b[1].start + b[1].stop - 1) // 2)
                      for b in boxes], np.int64).reshape(-1, 2)
    seeds = seeds[foreground[seeds[:, 0], seeds[:, 1]]]
    blobs, count = ndimage.label(foreground, structure=eight)
    seeded = set(blobs[seeds[:, 0], seeds[:, 1]])
    areas = np.bincount(blobs.ravel())
    recalled = []
    for blob in range(1, count + 1):
        if blob not in seeded and areas[blob] < thresholds.max_area_px:
            inside = np.flatnonzero(blobs.ravel() == blob)
            best = inside[np.argmax(seg.ravel()[inside])]  # first maximum in raster order
            recalled.append(np.unravel_index(best, seg.shape))
    seeds = np.concatenate([seeds, np.array(recalled, np.int64).reshape(-1, 2)])
    points = np.zeros(seg.shape, bool)
    points[seeds[:, 0], seeds[:, 1]] = True
    markers, _ = ndimage.label(ndimage.binary_dilation(points, eight), structure=eight)
    labels = sk_segmentation.watershed(-seg, markers, mask=foreground,
                                       compactness=thresholds.compactness)
    labels = watershed.fill_instance_holes(labels.astype(np.uint32))
    return watershed.filter_by_area(labels, thresholds.min_area_px, thresholds.max_area_px)


@pytest.fixture(scope="module")
def real_maps(monuseg):
    """Maps of a real H&E image: the training-free hematoxylin stand-in of the slide path."""
    import cv2
    from simgan_histo.wsi import model as model_lib

    path = sorted((monuseg / "train" / "images").glob("*.png"))[0]
    rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)[:600, :700]
    segmentation, detection = model_lib.hematoxylin_maps(rgb[None])
    return segmentation[0], detection[0]


@pytest.mark.parametrize("settings", [{}, {"seg_threshold": 0.6, "det_threshold": 0.03}])
def test_instances_equal_the_single_call_definition_on_a_real_image(real_maps, settings):
    thresholds = watershed.Thresholds(**settings)
    labels = watershed.instances_from_maps(*real_maps, thresholds)
    expected = _old_instances(*real_maps, thresholds)
    assert labels.max() > 100  # a real image: many nuclei, many touching
    np.testing.assert_array_equal(labels, expected)


def test_flood_equals_skimage_on_touching_and_unseeded_components():
    from skimage import segmentation as sk_segmentation

    seg, det, _ = _touching_disks()
    seg = watershed.gaussian(seg * np.linspace(0.6, 1.0, seg.shape[1])[None, :], 1.0)
    foreground = seg > 0.3
    foreground[:, 70:] = True  # a component with no marker: stays 0
    markers = np.zeros(seg.shape, np.int32)
    markers[31:34, 29:32], markers[31:34, 45:48] = 4, 9  # two markers in one component
    markers[2:4, 2:4] = 7  # a marker outside the mask floods nothing
    flooded = watershed.flood(seg, foreground, markers, compactness=1.0)
    expected = sk_segmentation.watershed(-seg, markers, mask=foreground, compactness=1.0)
    np.testing.assert_array_equal(flooded, expected)
    assert sorted(np.unique(flooded)) == [0, 4, 9]


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5])
def test_gaussian_matches_scipy(sigma):
    from scipy import ndimage

    image = np.random.default_rng(1).random((50, 70)).astype(np.float32)
    image[:, :10] = 1.0  # saturated edge, as probability maps have
    np.testing.assert_allclose(watershed.gaussian(image, sigma),
                               ndimage.gaussian_filter(image, sigma), rtol=0, atol=5e-7)
    np.testing.assert_array_equal(watershed.gaussian(image, 0), image)
