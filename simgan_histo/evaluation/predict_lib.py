"""Folders in, folders out: instance masks for a folder of images, metrics of a folder.

The library behind `predict.py` and `evaluate.py`. Instance masks are written as uint16 PNG
(0 = background), one per image, with the image's file stem; ground truth and predictions
are paired by file stem. Every file is written atomically (temporary name, then rename).
"""

import json
import os
import pathlib
import tempfile
from typing import Callable, Dict, List, Optional

import cv2
import numpy as np
import tifffile
from absl import logging
from tqdm import tqdm

from simgan_histo.evaluation import metrics

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LABEL_SUFFIXES = (".png", ".tif", ".tiff")
# (H, W, 3) uint8 RGB, its µm/px or None -> (H, W) integer instance labels.
SegmentFn = Callable[[np.ndarray, Optional[float]], np.ndarray]


def list_files(folder, suffixes=IMAGE_SUFFIXES, what: str = "images") -> List[pathlib.Path]:
    """The files of `folder` with one of `suffixes`, sorted by name.

    Raises:
      FileNotFoundError: if `folder` is not a directory.
      ValueError: if it holds no such file, or two files share a stem.
    """
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a directory")
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in suffixes and not p.name.startswith("."))
    if not files:
        raise ValueError(f"{folder}: no {what} ({', '.join(suffixes)})")
    stems = [p.stem for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f"{folder}: several files share the name(s) {duplicates}")
    return files


def _read_any(path: pathlib.Path) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        return tifffile.imread(path)
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise ValueError(f"{path}: not a readable image")
    if array.ndim == 3:  # OpenCV decodes colour as BGR(A)
        array = array[..., [2, 1, 0] + ([3] if array.shape[-1] == 4 else [])]
    return array


def read_rgb(path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; an opaque alpha channel is dropped.

    Raises:
      ValueError: unreadable, not 8-bit, grayscale, or with a non-opaque alpha channel.
    """
    path = pathlib.Path(path)
    array = _read_any(path)
    if array.dtype != np.uint8:
        raise ValueError(f"{path}: expected 8-bit RGB, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 4:
        if array[..., 3].min() < 255:
            raise ValueError(f"{path}: has a transparent alpha channel; expected RGB")
        array = array[..., :3]
    if array.ndim != 3 or array.shape[-1] != 3:
        raise ValueError(f"{path}: expected an RGB image (H, W, 3), got shape {array.shape}")
    return np.ascontiguousarray(array)


def read_labels(path) -> np.ndarray:
    """An instance-label file as a 2-D integer array (0 = background).

    Raises:
      ValueError: unreadable, not 2-D, or not integer.
    """
    path = pathlib.Path(path)
    array = _read_any(path)
    if array.ndim != 2 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: expected a 2-D integer instance-label image, got "
                         f"{array.dtype} {array.shape}")
    return array


def atomic_write(path: pathlib.Path, write: Callable[[str], None], suffix: str) -> None:
    """Calls `write(temporary path)` beside `path`, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def write_labels(path, labels: np.ndarray) -> None:
    """Writes labels as a uint16 PNG, atomically.

    Raises:
      ValueError: if an id exceeds 65535 (uint16).
    """
    labels = np.asarray(labels)
    if labels.size and int(labels.max()) > np.iinfo(np.uint16).max:
        raise ValueError(f"{path}: {int(labels.max())} instances do not fit a uint16 PNG")

    def write(tmp):
        if not cv2.imwrite(tmp, labels.astype(np.uint16)):
            raise OSError(f"{path}: could not write PNG")

    atomic_write(pathlib.Path(path), write, ".png")


def write_json(path, data) -> None:
    """Writes `data` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, sort_keys=True)
    atomic_write(pathlib.Path(path),
                  lambda tmp: pathlib.Path(tmp).write_text(text, encoding="utf-8"), ".json")


def predict_folder(segment: SegmentFn, images_dir, out_dir, mpp: Optional[float] = None) -> Dict:
    """Writes `<out_dir>/<stem>.png` (uint16 instance ids) for every image of `images_dir`.

    Args:
      segment: (rgb, mpp) -> labels, e.g. `api.NucleusModel.predict_labels` or
        `baseline.segment`.
      images_dir: folder of RGB images (png, tif, jpg, bmp).
      out_dir: created if needed.
      mpp: µm per pixel of the images (None: passed on as None).

    Returns:
      {"images": N, "nuclei": {stem: count}}.

    Raises:
      ValueError: for an empty folder, a non-RGB image, or labels of the wrong shape.
    """
    files = list_files(images_dir)
    out_dir = pathlib.Path(out_dir)
    counts = {}
    for path in tqdm(files, desc="predict", unit="image", disable=len(files) < 2):
        rgb = read_rgb(path)
        labels = np.asarray(segment(rgb, mpp))
        if labels.shape != rgb.shape[:2]:
            raise ValueError(f"{path}: segmentation has shape {labels.shape}, image "
                             f"{rgb.shape[:2]}")
        write_labels(out_dir / f"{path.stem}.png", labels)
        counts[path.stem] = int(len(np.unique(labels)) - (labels.min() == 0))
        logging.info("%s: %d nuclei", path.name, counts[path.stem])
    return {"images": len(files), "nuclei": counts}


def pair_files(pred_dir, gt_dir) -> Dict[str, tuple]:
    """{stem: (prediction path, ground-truth path)} for two folders of label images.

    Raises:
      ValueError: if either folder is empty or a file in one has no partner in the other.
    """
    predictions = {p.stem: p for p in list_files(pred_dir, LABEL_SUFFIXES, "label images")}
    truths = {p.stem: p for p in list_files(gt_dir, LABEL_SUFFIXES, "label images")}
    no_truth = sorted(set(predictions) - set(truths))
    no_prediction = sorted(set(truths) - set(predictions))
    if no_truth:
        raise ValueError(f"{gt_dir}: missing ground-truth labels for {len(no_truth)} "
                         f"prediction(s): {no_truth[:10]}")
    if no_prediction:
        raise ValueError(f"{pred_dir}: missing predictions for {len(no_prediction)} "
                         f"ground-truth image(s): {no_prediction[:10]}")
    return {stem: (predictions[stem], truths[stem]) for stem in sorted(truths)}


def evaluate_folder(pred_dir, gt_dir) -> dict:
    """The DESIGN §3 metrics JSON of the predictions in `pred_dir` against `gt_dir`.

    Raises:
      ValueError: for missing partners, unreadable labels, or a size mismatch.
    """
    per_image = {}
    pairs = pair_files(pred_dir, gt_dir)
    for stem, (pred_path, gt_path) in tqdm(pairs.items(), desc="evaluate", unit="image",
                                           disable=len(pairs) < 2):
        prediction, truth = read_labels(pred_path), read_labels(gt_path)
        if prediction.shape != truth.shape:
            raise ValueError(f"{pred_path}: size {prediction.shape} differs from the ground "
                             f"truth {gt_path} {truth.shape}")
        per_image[stem] = metrics.image_metrics(truth, prediction)
    return metrics.summarize(per_image)
