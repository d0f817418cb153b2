"""Instance-segmentation metrics: Dice1, Dice2, AJI, AJI+, PQ/DQ/SQ (field-notes §3c).

Definitions follow HoVer-Net's `metrics/stats_utils.py` (the field's reference code); G are
the ground-truth instances, S the predicted ones:

- **dice1** (pixel Dice): 2|G∪ ∩ S∪| / (|G∪| + |S∪|).
- **dice2** (ensemble Dice, `get_fast_dice_2`): over every pair (g, s) that overlaps,
  2·Σ|g∩s| / Σ(|g| + |s|); a nucleus split in k fragments counts k times.
- **aji** (Kumar et al. 2017, MoNuSeg): each g takes the s of highest IoU (an s may be taken
  by several g); C = Σ|g∩s*|, U = Σ|g∪s*| + the areas of GT that overlap nothing and of
  predictions never taken. AJI = C / U.
- **aji_plus**: as AJI with a one-to-one (Hungarian, max total IoU) pairing.
- **pq, dq, sq** (Kirillov et al. 2019): pairs with IoU > 0.5 (unique by construction),
  DQ = TP / (TP + FP/2 + FN/2), SQ = mean IoU of those pairs, PQ = DQ·SQ.
- **dice_avg** = (dice1 + dice2) / 2, the paper's "average of two Dice definitions".

Empty images: when both G and S are empty every score is 1 (nothing to find, nothing found);
when only one is empty every score is 0. Dice2 of two non-empty images with no overlapping
pair is 0.

All of them come from ONE sparse contingency table per image: the (gt id, pred id) pairs of
the overlapping pixels, counted with `np.unique`. No loop runs over instances' pixel masks.
"""

import dataclasses
from typing import Dict, Iterable, Mapping

import numpy as np
from scipy import optimize

METRICS = ("dice1", "dice2", "dice_avg", "aji", "aji_plus", "pq", "dq", "sq")
PQ_IOU = 0.5  # strict >, as HoVer-Net's get_fast_pq


@dataclasses.dataclass(frozen=True)
class Overlap:
    """The contingency table of one image, on compact indices 0..n-1 per side.

    Attributes:
      gt_area, pred_area: pixel count of each instance.
      pair_gt, pair_pred, pair_inter: one entry per overlapping (gt, pred) pair.
    """

    gt_area: np.ndarray
    pred_area: np.ndarray
    pair_gt: np.ndarray
    pair_pred: np.ndarray
    pair_inter: np.ndarray

    @property
    def pair_union(self) -> np.ndarray:
        return self.gt_area[self.pair_gt] + self.pred_area[self.pair_pred] - self.pair_inter

    @property
    def pair_iou(self) -> np.ndarray:
        return self.pair_inter / self.pair_union


def _compact(labels: np.ndarray):
    """Maps the ids present to 0..n-1 (background -> -1); returns (index image, areas)."""
    if labels.size and int(labels.max()) > 4 * labels.size:
        # Sparse huge ids (e.g. hashed): a bincount would be larger than the image.
        ids, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        index = inverse.reshape(labels.shape) - (1 if ids[0] == 0 else 0)
        return index, counts[ids > 0].astype(np.int64)
    counts = np.bincount(labels.ravel())
    present = np.nonzero(counts)[0]
    present = present[present > 0]
    lookup = np.full(len(counts), -1, np.int64)
    lookup[present] = np.arange(len(present))
    return lookup[labels], counts[present].astype(np.int64)


def overlap(gt: np.ndarray, pred: np.ndarray) -> Overlap:
    """The sparse contingency table of two instance-label images.

    Raises:
      ValueError: if the shapes differ, an image is not 2-D, or labels are not integers >= 0.
    """
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape or gt.ndim != 2:
        raise ValueError(f"overlap: expected two (H, W) label images of one shape, got "
                         f"{gt.shape} and {pred.shape}")
    for name, labels in (("ground truth", gt), ("prediction", pred)):
        if not np.issubdtype(labels.dtype, np.integer) or (labels.size and labels.min() < 0):
            raise ValueError(f"overlap: {name} labels must be non-negative integers, got "
                             f"{labels.dtype}")
    gt_index, gt_area = _compact(gt)
    pred_index, pred_area = _compact(pred)
    both = (gt_index >= 0) & (pred_index >= 0)
    keys = gt_index[both] * max(len(pred_area), 1) + pred_index[both]
    keys, inter = np.unique(keys, return_counts=True)
    return Overlap(gt_area, pred_area, keys // max(len(pred_area), 1),
                   keys % max(len(pred_area), 1), inter.astype(np.int64))


def _empty_case(table: Overlap):
    """1.0 if both sides are empty, 0.0 if exactly one is, None otherwise."""
    empty_gt, empty_pred = len(table.gt_area) == 0, len(table.pred_area) == 0
    if empty_gt and empty_pred:
        return 1.0
    return 0.0 if (empty_gt or empty_pred) else None


def dice1(table: Overlap) -> float:
    total = table.gt_area.sum() + table.pred_area.sum()
    return 1.0 if total == 0 else float(2 * table.pair_inter.sum() / total)


def dice2(table: Overlap) -> float:
    empty = _empty_case(table)
    if empty is not None:
        return empty
    total = (table.gt_area[table.pair_gt] + table.pred_area[table.pair_pred]).sum()
    return 0.0 if total == 0 else float(2 * table.pair_inter.sum() / total)


def _aji_from_pairs(table: Overlap, gt_index: np.ndarray, pred_index: np.ndarray,
                    pair_rows: np.ndarray) -> float:
    """C / U for the chosen pairs (rows of the table); the rest is added to U."""
    inter = table.pair_inter[pair_rows].sum()
    union = table.pair_union[pair_rows].sum()
    gt_unpaired = np.ones(len(table.gt_area), bool)
    gt_unpaired[gt_index] = False
    pred_unpaired = np.ones(len(table.pred_area), bool)
    pred_unpaired[pred_index] = False
    union += table.gt_area[gt_unpaired].sum() + table.pred_area[pred_unpaired].sum()
    return float(inter / union)


def aji(table: Overlap) -> float:
    empty = _empty_case(table)
    if empty is not None:
        return empty
    # Best pred per gt: sort pairs by (gt, -IoU, pred) and keep each gt's first pair; ties go
    # to the lower pred id like np.argmax over a dense row.
    order = np.lexsort((table.pair_pred, -table.pair_iou, table.pair_gt))
    first = np.ones(len(order), bool)
    first[1:] = table.pair_gt[order][1:] != table.pair_gt[order][:-1]
    rows = order[first]
    return _aji_from_pairs(table, table.pair_gt[rows], table.pair_pred[rows], rows)


def aji_plus(table: Overlap) -> float:
    empty = _empty_case(table)
    if empty is not None:
        return empty
    if len(table.pair_inter) == 0:
        return _aji_from_pairs(table, np.zeros(0, int), np.zeros(0, int), np.zeros(0, int))
    # Hungarian pairing on the instances that overlap something (the others stay unpaired).
    gt_ids, gt_local = np.unique(table.pair_gt, return_inverse=True)
    pred_ids, pred_local = np.unique(table.pair_pred, return_inverse=True)
    iou = np.zeros((len(gt_ids), len(pred_ids)))
    iou[gt_local, pred_local] = table.pair_iou
    row_of = np.full(iou.shape, -1, np.int64)
    row_of[gt_local, pred_local] = np.arange(len(table.pair_inter))
    g, p = optimize.linear_sum_assignment(iou, maximize=True)
    rows = row_of[g, p]
    rows = rows[rows >= 0]  # an assignment of zero IoU is no pair
    return _aji_from_pairs(table, table.pair_gt[rows], table.pair_pred[rows], rows)


def panoptic_quality(table: Overlap) -> Dict[str, float]:
    """{'pq', 'dq', 'sq', 'tp', 'fp', 'fn'} with matches at IoU > 0.5."""
    iou = table.pair_iou
    matched = iou > PQ_IOU
    tp = int(matched.sum())
    fp = len(table.pred_area) - tp
    fn = len(table.gt_area) - tp
    if tp + fp + fn == 0:
        return {"pq": 1.0, "dq": 1.0, "sq": 1.0, "tp": 0, "fp": 0, "fn": 0}
    dq = tp / (tp + 0.5 * fp + 0.5 * fn)
    sq = float(iou[matched].mean()) if tp else 0.0
    return {"pq": dq * sq, "dq": dq, "sq": sq, "tp": tp, "fp": fp, "fn": fn}


def image_metrics(gt: np.ndarray, pred: np.ndarray) -> Dict[str, float]:
    """Every metric of one image, plus counts (n_true, n_pred, tp, fp, fn) and the pixel sums
    (`inter_px`, `total_px`) that pooled Dice1 needs."""
    table = overlap(gt, pred)
    scores = {"dice1": dice1(table), "dice2": dice2(table), "aji": aji(table),
              "aji_plus": aji_plus(table)}
    scores["dice_avg"] = (scores["dice1"] + scores["dice2"]) / 2
    scores.update(panoptic_quality(table))
    scores.update(n_true=len(table.gt_area), n_pred=len(table.pred_area),
                  inter_px=int(table.pair_inter.sum()),
                  total_px=int(table.gt_area.sum() + table.pred_area.sum()))
    return scores


def summarize(per_image: Mapping[str, Mapping[str, float]]) -> dict:
    """The DESIGN §3 metrics JSON from per-image results (`image_metrics` outputs).

    Returns:
      {"mean": {metric: per-image mean}, "pooled": {"dice1": pixel Dice over all images},
       "per_image": {id: {...}}, "n_images": N}.

    Raises:
      ValueError: if `per_image` is empty.
    """
    if not per_image:
        raise ValueError("summarize: no images to summarise")
    mean = {name: float(np.mean([scores[name] for scores in per_image.values()]))
            for name in METRICS}
    inter = sum(scores["inter_px"] for scores in per_image.values())
    total = sum(scores["total_px"] for scores in per_image.values())
    pooled = {"dice1": 1.0 if total == 0 else 2 * inter / total}
    return {"mean": mean, "pooled": pooled,
            "per_image": {key: dict(value) for key, value in sorted(per_image.items())},
            "n_images": len(per_image)}


def format_table(summary: dict, columns: Iterable[str] = METRICS) -> str:
    """A fixed-width text table: one row per image, then the mean and the pooled Dice1."""
    columns = list(columns)
    ids = list(summary["per_image"])
    width = max([len("pooled dice1")] + [len(key) for key in ids])
    lines = [" ".join([f"{'image':<{width}}"] + [f"{c:>8}" for c in columns]
                      + [f"{'n_true':>7}", f"{'n_pred':>7}"])]
    for key in ids:
        scores = summary["per_image"][key]
        lines.append(" ".join([f"{key:<{width}}"] + [f"{scores[c]:8.4f}" for c in columns]
                              + [f"{scores['n_true']:7d}", f"{scores['n_pred']:7d}"]))
    lines.append(" ".join([f"{'mean':<{width}}"]
                          + [f"{summary['mean'][c]:8.4f}" for c in columns]))
    lines.append(f"{'pooled dice1':<{width}} {summary['pooled']['dice1']:8.4f}")
    lines.append(f"n_images = {summary['n_images']}")
    return "\n".join(lines)
