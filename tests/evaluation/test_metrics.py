"""Every metric on hand-computed toy cases, and against a brute-force loop of the definitions."""

import numpy as np
import pytest
from scipy import optimize

from simgan_histo.evaluation import metrics


def _image(*boxes, shape=(6, 12)):
    """Label image with box i = (r0, r1, c0, c1) filled with id i + 1."""
    labels = np.zeros(shape, np.int32)
    for index, (r0, r1, c0, c1) in enumerate(boxes):
        labels[r0:r1, c0:c1] = index + 1
    return labels


def _check(scores, expected):
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, abs=1e-9), name


def test_perfect_match_scores_one():
    gt = _image((0, 2, 0, 4), (3, 5, 5, 9))
    scores = metrics.image_metrics(gt, gt)
    _check(scores, {name: 1.0 for name in metrics.METRICS})
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 0, 0)


def test_ids_need_not_be_consecutive_or_equal():
    gt = _image((0, 2, 0, 4), (3, 5, 5, 9))
    pred = np.where(gt == 1, 65535, np.where(gt == 2, 7, 0)).astype(np.uint16)
    _check(metrics.image_metrics(gt, pred), {name: 1.0 for name in metrics.METRICS})


def test_split_one_nucleus_in_two_fragments():
    # g: 8 px (2×4). Fragments: s1 = 6 px (2×3), s2 = 2 px (2×1).
    gt = _image((0, 2, 0, 4))
    pred = _image((0, 2, 0, 3), (0, 2, 3, 4))
    _check(metrics.image_metrics(gt, pred), {
        "dice1": 1.0,
        "dice2": 2 * (6 + 2) / ((8 + 6) + (8 + 2)),  # 2/3: each fragment adds |g| again
        "aji": 6 / (8 + 2),  # g takes s1 (IoU 0.75); s2 unpaired joins U
        "aji_plus": 6 / (8 + 2),
        "dq": 1 / (1 + 0.5 * 1 + 0.5 * 0),  # TP 1, FP 1 (s2)
        "sq": 0.75,
        "pq": 0.75 * 2 / 3,
        "dice_avg": (1.0 + 2 / 3) / 2,
    })


def test_merge_of_two_nuclei():
    # g1, g2: 4 px each, side by side; one prediction covers both (8 px).
    gt = _image((0, 2, 0, 2), (0, 2, 2, 4))
    pred = _image((0, 2, 0, 4))
    scores = metrics.image_metrics(gt, pred)
    _check(scores, {
        "dice1": 1.0,
        "dice2": 2 * (4 + 4) / ((4 + 8) + (4 + 8)),
        "aji": (4 + 4) / (8 + 8),  # both g reuse s: its area counts twice in U
        "aji_plus": 4 / (8 + 4),  # one-to-one: the other g is unpaired
        "pq": 0.0, "dq": 0.0, "sq": 0.0,  # IoU 0.5 is not > 0.5
    })
    assert (scores["tp"], scores["fp"], scores["fn"]) == (0, 1, 2)


def test_missed_nucleus():
    gt = _image((0, 2, 0, 2), (3, 5, 5, 7))
    pred = _image((0, 2, 0, 2))
    _check(metrics.image_metrics(gt, pred), {
        "dice1": 2 * 4 / (8 + 4),
        "dice2": 1.0,  # ensemble Dice only sums over overlapping pairs (HoVer-Net)
        "aji": 4 / (4 + 4),
        "aji_plus": 4 / (4 + 4),
        "dq": 1 / (1 + 0.5), "sq": 1.0, "pq": 2 / 3,
    })


def test_false_positive():
    gt = _image((0, 2, 0, 2))
    pred = _image((0, 2, 0, 2), (4, 5, 8, 10))
    _check(metrics.image_metrics(gt, pred), {
        "dice1": 2 * 4 / (4 + 6),
        "dice2": 1.0,
        "aji": 4 / (4 + 2),
        "aji_plus": 4 / (4 + 2),
        "dq": 2 / 3, "sq": 1.0, "pq": 2 / 3,
    })


def test_aji_picks_highest_iou_and_plus_is_one_to_one():
    # g1 = cols 0..3 (8 px), g2 = cols 4..5 (4 px); s = cols 1..5 (10 px) overlaps both,
    # t = col 0 (2 px) overlaps g1 only.
    gt = _image((0, 2, 0, 4), (0, 2, 4, 6))
    pred = _image((0, 2, 1, 6), (0, 2, 0, 1))
    # IoU(g1, s) = 6/12, IoU(g1, t) = 2/8, IoU(g2, s) = 4/10.
    aji = (6 + 4) / (12 + 10 + 2)  # both take s; t is never taken
    # Hungarian maximises total IoU: g1-s + nothing (0.5) < g1-t + g2-s (0.25 + 0.4).
    aji_plus = (2 + 4) / (8 + 10)
    _check(metrics.image_metrics(gt, pred), {"aji": aji, "aji_plus": aji_plus})


@pytest.mark.parametrize("gt_empty, pred_empty, expected", [
    (True, True, 1.0), (True, False, 0.0), (False, True, 0.0)])
def test_empty_images(gt_empty, pred_empty, expected):
    full = _image((1, 3, 1, 4))
    empty = np.zeros_like(full)
    scores = metrics.image_metrics(empty if gt_empty else full, empty if pred_empty else full)
    _check(scores, {name: expected for name in metrics.METRICS})


def test_no_overlapping_pair_gives_zero():
    scores = metrics.image_metrics(_image((0, 2, 0, 2)), _image((4, 6, 8, 10)))
    _check(scores, {"dice1": 0.0, "dice2": 0.0, "aji": 0.0, "aji_plus": 0.0, "pq": 0.0})


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="one shape"):
        metrics.image_metrics(np.zeros((4, 4), int), np.zeros((4, 5), int))
    with pytest.raises(ValueError, match="integers"):
        metrics.image_metrics(np.zeros((4, 4), float), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="non-negative"):
        metrics.image_metrics(-np.ones((4, 4), int), np.zeros((4, 4), int))
    with pytest.raises(ValueError, match="no images"):
        metrics.summarize({})


def _brute_force(gt, pred):
    """The definitions written as plain loops over instance masks (slow, obvious)."""
    g_ids, p_ids = [i for i in np.unique(gt) if i], [j for j in np.unique(pred) if j]
    inter = np.array([[np.sum((gt == g) & (pred == p)) for p in p_ids] for g in g_ids], float)
    union = np.array([[np.sum((gt == g) | (pred == p)) for p in p_ids] for g in g_ids], float)
    g_area, p_area = [np.sum(gt == g) for g in g_ids], [np.sum(pred == p) for p in p_ids]
    iou = inter / union
    out = {"dice1": 2 * np.sum((gt > 0) & (pred > 0)) / (np.sum(gt > 0) + np.sum(pred > 0))}
    pairs = np.argwhere(inter > 0)
    out["dice2"] = 2 * sum(inter[i, j] for i, j in pairs) / sum(
        g_area[i] + p_area[j] for i, j in pairs)
    c = u = 0.0
    used = set()
    for i in range(len(g_ids)):
        if iou[i].max() > 0:
            j = int(np.argmax(iou[i]))
            c, u = c + inter[i, j], u + union[i, j]
            used.add(j)
        else:
            u += g_area[i]
    out["aji"] = c / (u + sum(p_area[j] for j in range(len(p_ids)) if j not in used))
    rows, cols = optimize.linear_sum_assignment(-iou)
    keep = iou[rows, cols] > 0
    rows, cols = rows[keep], cols[keep]
    u = union[rows, cols].sum() + sum(g_area[i] for i in range(len(g_ids)) if i not in rows)
    u += sum(p_area[j] for j in range(len(p_ids)) if j not in cols)
    out["aji_plus"] = inter[rows, cols].sum() / u
    tp = int((iou > 0.5).sum())
    out["dq"] = tp / (tp + 0.5 * (len(p_ids) - tp) + 0.5 * (len(g_ids) - tp))
    out["sq"] = iou[iou > 0.5].mean()
    return out


def test_matches_brute_force_on_random_blobs():
    rng = np.random.default_rng(3)
    gt = np.zeros((60, 60), np.int32)
    pred = np.zeros((60, 60), np.int32)
    for index in range(12):  # overlapping boxes: later ones cut earlier ones
        r, c = rng.integers(0, 52, 2)
        h, w = rng.integers(3, 9, 2)
        gt[r:r + h, c:c + w] = index + 1
        r, c = np.clip([r + rng.integers(-1, 2), c + rng.integers(-1, 2)], 0, 59)
        pred[r:r + h + rng.integers(-1, 2), c:c + w + rng.integers(-1, 2)] = 100 + index
    pred[pred == 105] = 0  # a miss
    pred[55:58, 0:4] = 300  # a false positive
    scores = metrics.image_metrics(gt, pred)
    assert 0 < scores["tp"] < 12 and scores["aji"] != scores["aji_plus"]
    for name, value in _brute_force(gt, pred).items():
        assert scores[name] == pytest.approx(value, abs=1e-12), name


def test_summary_means_pooled_dice_and_table():
    a = metrics.image_metrics(_image((0, 2, 0, 2)), _image((0, 2, 0, 2)))  # 4 px, perfect
    b = metrics.image_metrics(_image((0, 2, 0, 4)), np.zeros((6, 12), int))  # 8 px missed
    summary = metrics.summarize({"b": b, "a": a})
    assert summary["n_images"] == 2
    assert list(summary["per_image"]) == ["a", "b"]
    assert summary["mean"]["dice1"] == pytest.approx(0.5)
    assert summary["pooled"]["dice1"] == pytest.approx(2 * 4 / (4 + 4 + 8))
    assert set(summary["mean"]) == set(metrics.METRICS)
    table = metrics.format_table(summary)
    assert "pooled dice1   0.5000" in table and table.count("\n") == 5
