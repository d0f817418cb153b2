"""Folder I/O of predict/evaluate: reading, pairing, writing, and clear errors on bad input."""

import json

import cv2
import numpy as np
import pytest
import tifffile

from simgan_histo.evaluation import predict_lib


def _write_rgb(path, rgb):
    cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]))


def _labels(shape=(20, 30)):
    labels = np.zeros(shape, np.uint16)
    labels[2:8, 2:9], labels[10:18, 12:20] = 1, 300
    return labels


def test_read_rgb_keeps_channel_order_and_drops_opaque_alpha(tmp_path):
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[..., 0] = 200  # red
    _write_rgb(tmp_path / "a.png", rgb)
    np.testing.assert_array_equal(predict_lib.read_rgb(tmp_path / "a.png"), rgb)
    tifffile.imwrite(tmp_path / "b.tif", rgb)
    np.testing.assert_array_equal(predict_lib.read_rgb(tmp_path / "b.tif"), rgb)
    rgba = np.dstack([rgb[..., ::-1], np.full((6, 7), 255, np.uint8)])
    cv2.imwrite(str(tmp_path / "c.png"), rgba)
    np.testing.assert_array_equal(predict_lib.read_rgb(tmp_path / "c.png"), rgb)


@pytest.mark.parametrize("array, message", [
    (np.zeros((6, 7), np.uint8), "RGB"),
    (np.zeros((6, 7, 3), np.uint16), "8-bit"),
    (np.zeros((6, 7, 4), np.uint8), "transparent"),
])
def test_read_rgb_rejects_non_rgb(tmp_path, array, message):
    cv2.imwrite(str(tmp_path / "x.png"), array)
    with pytest.raises(ValueError, match=message):
        predict_lib.read_rgb(tmp_path / "x.png")


def test_unreadable_file_and_empty_or_missing_folder(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="not a readable image"):
        predict_lib.read_rgb(tmp_path / "broken.png")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match="no images"):
        predict_lib.list_files(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        predict_lib.list_files(tmp_path / "missing")


def test_write_labels_round_trip_and_limit(tmp_path):
    labels = _labels()
    predict_lib.write_labels(tmp_path / "out" / "a.png", labels)
    back = predict_lib.read_labels(tmp_path / "out" / "a.png")
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, labels)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]  # no temporary left
    with pytest.raises(ValueError, match="uint16"):
        predict_lib.write_labels(tmp_path / "b.png", np.full((2, 2), 70000, np.uint32))


def test_predict_folder_writes_one_mask_per_image(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        _write_rgb(images / f"{name}.png", np.full((20, 30, 3), 128, np.uint8))
    seen = []

    def segment(rgb, mpp):
        seen.append((rgb.shape, mpp))
        return _labels(rgb.shape[:2])

    summary = predict_lib.predict_folder(segment, images, tmp_path / "pred", mpp=0.5)
    assert summary == {"images": 2, "nuclei": {"a": 2, "b": 2}}
    assert seen == [((20, 30, 3), 0.5)] * 2
    assert sorted(p.name for p in (tmp_path / "pred").iterdir()) == ["a.png", "b.png"]
    with pytest.raises(ValueError, match="segmentation has shape"):
        predict_lib.predict_folder(lambda rgb, mpp: np.zeros((3, 3), int), images, tmp_path / "x")


def _label_folders(tmp_path, pred_names=("a", "b"), gt_names=("a", "b")):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    for folder, names in ((pred, pred_names), (gt, gt_names)):
        folder.mkdir()
        for name in names:
            predict_lib.write_labels(folder / f"{name}.png", _labels())
    return pred, gt


def test_evaluate_folder_perfect_predictions(tmp_path):
    pred, gt = _label_folders(tmp_path)
    summary = predict_lib.evaluate_folder(pred, gt)
    assert summary["n_images"] == 2 and list(summary["per_image"]) == ["a", "b"]
    assert all(value == pytest.approx(1.0) for value in summary["mean"].values())
    assert summary["pooled"]["dice1"] == pytest.approx(1.0)
    predict_lib.write_json(tmp_path / "m.json", summary)
    assert json.loads((tmp_path / "m.json").read_text())["n_images"] == 2


def test_evaluate_folder_missing_partners(tmp_path):
    pred, gt = _label_folders(tmp_path, pred_names=("a", "b", "c"))
    with pytest.raises(ValueError, match=r"missing ground-truth labels .*\['c'\]"):
        predict_lib.evaluate_folder(pred, gt)
    (tmp_path / "2").mkdir()
    pred, gt = _label_folders(tmp_path / "2", pred_names=("a",))
    with pytest.raises(ValueError, match=r"missing predictions .*\['b'\]"):
        predict_lib.evaluate_folder(pred, gt)


def test_evaluate_folder_size_mismatch_and_non_label_file(tmp_path):
    pred, gt = _label_folders(tmp_path)
    predict_lib.write_labels(pred / "b.png", _labels((20, 31)))
    with pytest.raises(ValueError, match="b.png: size"):
        predict_lib.evaluate_folder(pred, gt)
    _write_rgb(pred / "b.png", np.zeros((20, 30, 3), np.uint8))
    with pytest.raises(ValueError, match="2-D integer instance-label"):
        predict_lib.evaluate_folder(pred, gt)
