"""Error analysis of an instance prediction: false nuclei, misses, merges, splits, pale misses.

What a metric table cannot say: *why* AJI is low. All counts come from the same sparse
overlap table as the metrics (`metrics.overlap`), so no loop runs over nuclei.

Definitions (fractions of pixel areas; thresholds chosen to be unambiguous, not tuned):
- **false**: a predicted object with < 20 % of its pixels on any true nucleus.
- **missed**: a true nucleus with < 20 % of its pixels on any predicted object.
- **merge**: a predicted object holding >= 50 % of each of two or more true nuclei.
- **split**: a true nucleus holding >= 50 % of each of two or more predicted objects.
- **pale**: the third of an image's true nuclei with the lowest mean hematoxylin optical
  density; `pale_recall` / `dark_recall` are the fractions not missed in each group.
- **area_ratio**: median predicted / true area over IoU > 0.5 pairs (> 1: boundaries drawn
  outside the nucleus).
"""

from typing import Dict, Mapping, Optional, Sequence

import numpy as np

from simgan_histo import stain
from simgan_histo.evaluation import metrics, predict_lib
from simgan_histo.postprocess import raster

FALSE_MAX_INSIDE = 0.2
MISSED_MAX_COVERED = 0.2
MAJORITY = 0.5

COUNTS = ("n_true", "n_pred", "false", "missed", "merges", "merged_true", "splits")
RATES = ("pixel_precision", "pixel_recall", "pale_recall", "dark_recall", "area_ratio")


def _hematoxylin_means(gt: np.ndarray, rgb: np.ndarray, n_true: int) -> np.ndarray:
    """Mean hematoxylin OD of each true nucleus (compact order, as in `metrics.overlap`)."""
    index, _ = metrics._compact(gt)  # pylint: disable=protected-access
    inside = index >= 0
    h = stain.hed(rgb)[..., 0]
    return raster.id_means(index[inside], h[inside], n_true)


def image_errors(gt: np.ndarray, pred: np.ndarray, rgb: Optional[np.ndarray] = None) -> dict:
    """Error counts and rates of one image (see the module docstring).

    Args:
      gt, pred: (H, W) instance labels (0 = background).
      rgb: the (H, W, 3) uint8 image; without it the pale/dark recalls are NaN.
    """
    table = metrics.overlap(gt, pred)
    n_true, n_pred = len(table.gt_area), len(table.pred_area)
    inter = table.pair_inter.astype(np.float64)
    pred_inside = np.bincount(table.pair_pred, inter, n_pred) / np.maximum(table.pred_area, 1)
    true_covered = np.bincount(table.pair_gt, inter, n_true) / np.maximum(table.gt_area, 1)
    missed = true_covered < MISSED_MAX_COVERED

    holds_true = inter / table.gt_area[table.pair_gt] >= MAJORITY
    per_pred = np.bincount(table.pair_pred[holds_true], minlength=n_pred)
    holds_pred = inter / table.pred_area[table.pair_pred] >= MAJORITY
    per_true = np.bincount(table.pair_gt[holds_pred], minlength=n_true)

    matched = table.pair_iou > metrics.PQ_IOU
    ratio = (table.pred_area[table.pair_pred[matched]] / table.gt_area[table.pair_gt[matched]])
    result = {
        "n_true": n_true, "n_pred": n_pred,
        "false": int((pred_inside < FALSE_MAX_INSIDE).sum()), "missed": int(missed.sum()),
        "merges": int((per_pred >= 2).sum()), "merged_true": int(per_pred[per_pred >= 2].sum()),
        "splits": int((per_true >= 2).sum()),
        "pixel_precision": float(inter.sum() / max(table.pred_area.sum(), 1)),
        "pixel_recall": float(inter.sum() / max(table.gt_area.sum(), 1)),
        "area_ratio": float(np.median(ratio)) if ratio.size else float("nan"),
        "pale_recall": float("nan"), "dark_recall": float("nan"),
    }
    if rgb is not None and n_true >= 3:
        h_mean = _hematoxylin_means(gt, rgb, n_true)
        pale = h_mean <= np.quantile(h_mean, 1 / 3)
        result["pale_recall"] = float(1 - missed[pale].mean())
        result["dark_recall"] = float(1 - missed[~pale].mean())
    return result


def group_errors(per_image: Mapping[str, dict], groups: Mapping[str, str]) -> Dict[str, dict]:
    """Counts summed and rates averaged per group (e.g. organ) and over "all".

    Args:
      per_image: {image id: `image_errors` output}.
      groups: {image id: group name}; ids missing from it go to "unknown".
    """
    members: Dict[str, list] = {}
    for key in per_image:
        members.setdefault(groups.get(key, "unknown"), []).append(key)
    members["all"] = list(per_image)
    summary = {}
    for name, keys in sorted(members.items()):
        rows = [per_image[key] for key in keys]
        entry = {"images": len(rows)}
        entry.update({count: int(sum(row[count] for row in rows)) for count in COUNTS})
        entry.update({rate: _nanmean([row[rate] for row in rows]) for rate in RATES})
        summary[name] = entry
    return summary


def _nanmean(values: Sequence[float]) -> float:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else float("nan")


def format_groups(summary: Mapping[str, dict]) -> str:
    """A fixed-width table: one row per group."""
    columns = ("images",) + COUNTS + RATES
    width = max(len(name) for name in summary)
    lines = [" ".join([f"{'group':<{width}}"] + [f"{c[:12]:>12}" for c in columns])]
    for name, entry in summary.items():
        cells = [f"{entry[c]:12d}" if isinstance(entry[c], int) else f"{entry[c]:12.3f}"
                 for c in columns]
        lines.append(" ".join([f"{name:<{width}}"] + cells))
    return "\n".join(lines)


def analyse_folders(pred_dir, gt_dir, images_dir=None) -> Dict[str, dict]:
    """{image id: `image_errors`} for two folders of label images (RGB from `images_dir`).

    Raises:
      ValueError: for missing partners or a size mismatch (as `predict_lib.evaluate_folder`).
    """
    images = ({path.stem: path for path in predict_lib.list_files(images_dir)}
              if images_dir is not None else {})
    per_image = {}
    for stem, (pred_path, gt_path) in predict_lib.pair_files(pred_dir, gt_dir).items():
        prediction, truth = predict_lib.read_labels(pred_path), predict_lib.read_labels(gt_path)
        if prediction.shape != truth.shape:
            raise ValueError(f"{pred_path}: size {prediction.shape} differs from the ground "
                             f"truth {gt_path} {truth.shape}")
        rgb = predict_lib.read_rgb(images[stem]) if stem in images else None
        per_image[stem] = image_errors(truth, prediction, rgb)
    return per_image
