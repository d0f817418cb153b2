"""Per-id means of an instance map: hand-computed cases."""

import numpy as np

from simgan_histo.postprocess import raster


def test_id_means_averages_each_id_and_gives_absent_ids_zero():
    ids = np.array([[0, 1, 1], [3, 3, 3]])
    values = np.array([[5.0, 2.0, 4.0], [1.0, 2.0, 6.0]])
    means = raster.id_means(ids, values)
    np.testing.assert_allclose(means, [5.0, 3.0, 0.0, 3.0])  # id 2 has no pixel
    # A larger size pads with zeros; the flat and 2-D inputs agree.
    np.testing.assert_allclose(raster.id_means(ids.ravel(), values.ravel(), 6),
                               [5.0, 3.0, 0.0, 3.0, 0.0, 0.0])


def test_id_means_of_no_pixels_is_one_zero():
    np.testing.assert_array_equal(raster.id_means(np.zeros(0, int), np.zeros(0)), [0.0])


def test_centroids_are_the_mean_row_and_column():
    labels = np.zeros((5, 6), np.uint16)
    labels[1:4, 0:2] = 1  # rows 1..3, cols 0..1: centre (2, 0.5)
    labels[4, 3:6] = 7  # one row, cols 3..5: centre (4, 4)
    rows, cols = raster.centroids(labels)
    assert len(rows) == len(cols) == 8
    assert (rows[1], cols[1]) == (2.0, 0.5)
    assert (rows[7], cols[7]) == (4.0, 4.0)
    assert rows[3] == cols[3] == 0.0  # absent
