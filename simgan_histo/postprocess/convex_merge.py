"""Convex merge: touching instances whose union is convex are one nucleus.

The marker watershed cuts a nucleus wherever its detection map has two peaks. On large or
elongated real nuclei (Kumar colon, bladder) the detection head, trained on synthetic
nuclei, fires weakly at several places, and the flood cuts the nucleus across its short
axis (BENCHMARKS.md, "convex merge"). Two truly touching nuclei leave a notch where their
outlines meet, so their union is less convex than either; a nucleus cut in two is not.

A pair of 4-adjacent instances is merged when the solidity of their union (its pixels ÷
the pixels of its filled convex hull) is at least `min_solidity`; pairs are taken in order
of decreasing solidity, each instance at most once per round, and rounds repeat (a nucleus
cut in three needs two) until no pair qualifies.
"""

import cv2
import numpy as np
from scipy import ndimage

MAX_ROUNDS = 8


def adjacent_pairs(labels: np.ndarray) -> np.ndarray:
    """(P, 2) int64 sorted unique id pairs (i < j, both > 0) that touch 4-adjacently."""
    labels = np.asarray(labels).astype(np.int64, copy=False)
    pairs = np.concatenate([
        np.stack([labels[:, :-1].ravel(), labels[:, 1:].ravel()], axis=1),
        np.stack([labels[:-1, :].ravel(), labels[1:, :].ravel()], axis=1)])
    pairs = pairs[(pairs[:, 0] > 0) & (pairs[:, 1] > 0) & (pairs[:, 0] != pairs[:, 1])]
    return np.unique(np.sort(pairs, axis=1), axis=0).reshape(-1, 2)


def solidity(mask: np.ndarray) -> float:
    """Pixels of a binary mask ÷ pixels of its filled convex hull (1 for a convex shape)."""
    points = cv2.findNonZero(mask.astype(np.uint8))
    if points is None:
        return 0.0
    hull = np.zeros(mask.shape, np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(points), 1)
    return float(np.count_nonzero(mask)) / float(np.count_nonzero(hull | (mask > 0)))


def merge_convex(labels: np.ndarray, min_solidity: float) -> np.ndarray:
    """`labels` with every touching pair whose union has solidity >= `min_solidity`
    merged (module docstring); 0 = off. Ids of the result are those of `labels` (a merged
    pair keeps the smaller), not renumbered."""
    if min_solidity <= 0:
        return labels
    labels = np.array(labels, copy=True)
    for _ in range(MAX_ROUNDS):
        pairs = adjacent_pairs(labels)
        if not len(pairs):
            break
        boxes = ndimage.find_objects(labels)
        scores = np.array([_union_solidity(labels, boxes, i, j) for i, j in pairs.tolist()])
        order = np.argsort(-scores, kind="stable")
        lookup = np.arange(int(labels.max()) + 1, dtype=labels.dtype)
        used = set()
        for k in order[scores[order] >= min_solidity].tolist():
            i, j = pairs[k].tolist()
            if i not in used and j not in used:
                lookup[j] = i
                used.update((i, j))
        if not used:
            break
        labels = lookup[labels]
    return labels


def _union_solidity(labels: np.ndarray, boxes, i: int, j: int) -> float:
    (ri, ci), (rj, cj) = boxes[i - 1], boxes[j - 1]
    box = (slice(min(ri.start, rj.start), max(ri.stop, rj.stop)),
           slice(min(ci.start, cj.start), max(ci.stop, cj.stop)))
    crop = labels[box]
    return solidity((crop == i) | (crop == j))
