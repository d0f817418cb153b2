"""Nucleus placement for a batch of patches (release `rand_nucleus`), vectorised over the batch.

Every patch draws its random numbers from its own generator in a fixed order (its quad, then
one block of uniforms per round of candidates), so its nuclei do not depend on which other
patches share the batch; the geometry (bank shapes, homographies, canvas and tissue bounds,
areas) and the overlap test then run on all candidates of the batch at once, which removes
the per-patch cost of ~100 small numpy calls. A patch usually needs one round; the few that
need more draw again while the others are done.

Overlap is measured in the source canvas (where nuclei are near-circular) on slightly widened
area-equivalent circles, summed over the earlier nuclei, which bounds the overlap with their
union from above (see `polygons.OVERLAP_RADIUS_FACTOR`).
"""

import functools
import math
from typing import List, Sequence

import numpy as np

from simgan_histo.synthesis import polygons

def first_portion(wanted: int) -> int:
    """Candidates of a new chunk examined first. Examining a chunk in portions gives the
    same nuclei (acceptance is sequential and rejection runs carry over), and a patch that
    has its nuclei after the first portion skips the rest (typically half the chunk)."""
    return 2 * int(wanted) + 8


def sample_nuclei(rng: np.random.Generator, config, tissue: np.ndarray, count: int,
                  bias: float) -> np.ndarray:
    """Places up to `count` nuclei on one square canvas: `place_nuclei` for one patch."""
    return place_nuclei([rng], config, np.asarray(tissue)[None], [count], [bias])[0]


def place_nuclei(rngs: Sequence[np.random.Generator], config, tissues: np.ndarray,
                 counts: Sequence[int], biases: Sequence[float]) -> List[np.ndarray]:
    """Nuclei of B patches (release `rand_nucleus`), each a pure function of its generator.

    Each nucleus lies entirely inside its canvas and on tissue (checked at its vertices), has
    a mapped area > `min_nucleus_area_px`, and overlaps earlier nuclei by at most
    `max_overlap` of its own area. The release accepted a nucleus anyway after 50 overlap
    redraws; here the bound is kept and a full canvas simply gets fewer nuclei: drawing stops
    after `overlap_redraws` consecutive overlap rejections, or when the candidate budget
    (max(`placement_tries`, 8·count)) is spent. Candidates come in rounds of 3·count + 32.

    Args:
      rngs: one generator per patch (each patch's draws come only from its own).
      config: a SynthesisConfig.
      tissues: (B, S, S) uint8/bool, non-zero where nuclei may lie.
      counts: nuclei wanted per patch.
      biases: radius multipliers (`polygons.size_bias`).

    Returns:
      B arrays (K_b, V, 2) float32 of vertices in canvas coordinates, K_b <= counts[b], in
      drawing order.
    """
    batch, size = len(rngs), tissues.shape[1]
    quads = np.empty((batch, 4, 2))
    homographies = np.empty((batch, 3, 3))
    for b, rng in enumerate(rngs):  # drawn for every patch, as the release did
        homographies[b], quads[b] = polygons.random_quad(rng, size, config.quad_inset_fraction)
    counts = np.asarray(counts, np.int64)
    biases = np.asarray(biases, np.float64)
    chunks, budgets = 3 * counts + 32, np.maximum(config.placement_tries, 8 * counts)
    drawn, have, runs = (np.zeros(batch, np.int64) for _ in range(3))
    pending = [np.zeros((5, 0))] * batch  # drawn, not yet examined uniforms
    stopped = counts <= 0
    kept = _Entries.empty(polygons.max_vertices(config))
    while True:
        waiting = np.array([block.shape[1] for block in pending])
        active = np.flatnonzero(~stopped & (have < counts) & ((waiting > 0) | (drawn < budgets)))
        if not len(active):
            break
        blocks = []
        for b in active.tolist():
            take = pending[b].shape[1]  # the rest of the chunk
            if not take:  # a new chunk; a rejection run does not span chunks
                pending[b] = rngs[b].random((5, chunks[b]))
                drawn[b] += chunks[b]
                runs[b] = 0
                take = first_portion(counts[b] - have[b])
            blocks.append(pending[b][:, :take])
            pending[b] = pending[b][:, take:]
        new = _candidates(blocks, active, config, quads, homographies, biases, tissues)
        accepted, stalled, runs = _accept(kept.select(active), new, counts - have, runs,
                                          config.max_overlap, config.overlap_redraws)
        stopped |= stalled
        have += np.bincount(accepted.owner, minlength=batch)
        kept = kept.merge(accepted)
    splits = np.cumsum(np.bincount(kept.owner, minlength=batch))[:-1]
    return np.split(kept.mapped, splits)


class _Entries:
    """Nuclei or candidates as flat arrays, grouped by patch (`owner`) in drawing order."""

    def __init__(self, owner, centers, areas, mapped):
        self.owner, self.centers, self.areas, self.mapped = owner, centers, areas, mapped

    @classmethod
    def empty(cls, width: int) -> "_Entries":
        return cls(np.zeros(0, np.int64), np.zeros((0, 2)), np.zeros(0),
                   np.zeros((0, width, 2), np.float32))

    def __len__(self):
        return len(self.owner)

    def take(self, index) -> "_Entries":
        return _Entries(self.owner[index], self.centers[index], self.areas[index],
                        self.mapped[index])

    def select(self, owners: np.ndarray) -> "_Entries":
        return self.take(np.isin(self.owner, owners))

    def merge(self, other: "_Entries") -> "_Entries":
        """Both sets, grouped by owner; within an owner, self's entries come first."""
        owner = np.concatenate([self.owner, other.owner])
        order = np.argsort(owner, kind="stable")
        return _Entries(owner[order], np.concatenate([self.centers, other.centers])[order],
                        np.concatenate([self.areas, other.areas])[order],
                        np.concatenate([self.mapped, other.mapped])[order])


def _in_quads(quads: np.ndarray, pick: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Points uniform in convex quads (N, 4, 2) from three uniforms each (N,): a triangle
    (abc or acd, by area), then a folded point of the unit square in it. The release drew
    centres on the whole source canvas and rejected those outside the quad; this is the same
    distribution without the waste."""
    a, b, c, d = (quads[:, k] for k in range(4))
    ab, ac, ad = b - a, c - a, d - a
    first = np.abs(ab[:, 0] * ac[:, 1] - ab[:, 1] * ac[:, 0])  # 2 × area of abc
    second = np.abs(ac[:, 0] * ad[:, 1] - ac[:, 1] * ad[:, 0])  # 2 × area of acd
    use_second = (pick * (first + second) >= first)[:, None]
    fold = u + v > 1.0
    u, v = np.where(fold, 1.0 - u, u)[:, None], np.where(fold, 1.0 - v, v)[:, None]
    return a + u * np.where(use_second, ac, ab) + v * np.where(use_second, ad, ac)


def _map(homographies: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Points (N, V) x and y through per-row 3×3 homographies (N, 3, 3); float32 out."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    h = homographies.reshape(-1, 9).T[:, :, None]  # 9 × (N, 1)
    scale = 1.0 / (h[6] * x + h[7] * y + h[8])
    return (((h[0] * x + h[1] * y + h[2]) * scale).astype(np.float32),
            ((h[3] * x + h[4] * y + h[5]) * scale).astype(np.float32))


def _areas(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shoelace areas (`polygons.polygon_areas`) of polygons given as (N, V) x and y."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    cross = (x[:, :-1] * y[:, 1:] - x[:, 1:] * y[:, :-1]).sum(axis=1)
    return 0.5 * np.abs(cross + x[:, -1] * y[:, 0] - x[:, 0] * y[:, -1])


@functools.lru_cache(maxsize=4)
def _bank_xy(config):
    """The config's shape bank as contiguous (M, V) x and y (reductions over the vertex
    axis of an (M, V, 2) array are ~10× slower) and its areas."""
    shapes, areas = polygons.shape_bank(config)
    return np.ascontiguousarray(shapes[..., 0]), np.ascontiguousarray(shapes[..., 1]), areas


def _candidates(blocks, active, config, quads, homographies, biases, tissues) -> _Entries:
    """Candidates of the `active` patches from their (5, n) blocks of uniforms, the invalid
    ones dropped. Valid: every vertex inside the canvas and on tissue, mapped area above
    `min_nucleus_area_px`."""
    uniforms = np.concatenate(blocks, axis=1)
    owner = np.repeat(active, [block.shape[1] for block in blocks])
    centers = _in_quads(quads[owner], uniforms[0], uniforms[1], uniforms[2])
    low, high = config.nucleus_radius_range
    radii = (low + (high - low) * uniforms[3]) * biases[owner]
    bank_x, bank_y, bank_areas = _bank_xy(config)
    picks = (uniforms[4] * len(bank_x)).astype(np.int64)
    scale = radii.astype(np.float32)[:, None]
    center = centers.astype(np.float32)
    x, y = _map(homographies[owner], bank_x[picks] * scale + center[:, :1],
                bank_y[picks] * scale + center[:, 1:])
    last = tissues.shape[1] - 1
    valid = ((x.min(axis=1) >= 0) & (y.min(axis=1) >= 0) & (x.max(axis=1) <= last)
             & (y.max(axis=1) <= last))
    x, y, owner = x[valid], y[valid], owner[valid]
    flat = (owner[:, None] * (last + 1) + y.astype(np.int64)) * (last + 1) + x.astype(np.int64)
    inside = (np.take(tissues, flat).min(axis=1) > 0) & (_areas(x, y)
                                                          > config.min_nucleus_area_px)
    kept = np.flatnonzero(valid)[inside]
    return _Entries(owner[inside], centers[kept], bank_areas[picks[kept]] * radii[kept] ** 2,
                    np.stack([x[inside], y[inside]], axis=-1))


def _ranks(owner: np.ndarray, num: int):
    """(rank of each entry within its owner's group, group sizes) for owner-grouped entries."""
    sizes = np.bincount(owner, minlength=num)
    starts = np.cumsum(sizes) - sizes
    return np.arange(len(owner)) - starts[owner], sizes


def _close_pairs(centers: np.ndarray, reach: np.ndarray, owner: np.ndarray):
    """(i, j) entry index pairs, j before i in the same patch, whose circles meet, sorted
    by (i, j) (a canonical order: the overlap sums then do not depend on the batch).

    A sweep along x: per patch, entries sorted by x; entry i's partners lie within
    reach_i + max(reach) of x_i (`searchsorted` ranges), tested exactly afterwards.
    """
    if not len(owner):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    widest = float(reach.max())
    span = float(np.ptp(centers[:, 0])) + 4.0 * widest + 1.0  # separates the patches
    key = owner * span + centers[:, 0]
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    low = np.searchsorted(ordered, key - (reach + widest), side="left")
    counts = np.searchsorted(ordered, key + (reach + widest), side="right") - low
    total = int(counts.sum())
    rows = np.repeat(np.arange(len(owner)), counts)
    cols = order[np.repeat(low - (np.cumsum(counts) - counts), counts) + np.arange(total)]
    earlier = cols < rows  # entries are in drawing order within their patch
    rows, cols = rows[earlier], cols[earlier]
    delta = centers[rows] - centers[cols]
    close = np.sqrt((delta * delta).sum(axis=1)) < reach[rows] + reach[cols]
    rows, cols = rows[close], cols[close]
    canonical = np.lexsort((cols, rows))
    return rows[canonical], cols[canonical]


def _accept(old: _Entries, new: _Entries, wanted: np.ndarray, runs: np.ndarray,
            max_overlap: float, patience: int):
    """Sequential acceptance of `new` after the already accepted `old`, all patches at once.

    x_i = [Σ_{j<i} overlap_ij·x_j <= max_overlap·area_i] is triangular, so iterating it from
    "all accepted" reaches its unique solution (the sequential result) in at most (chain
    length) steps. Then `_cut` applies the per-patch limits.

    Returns:
      (the accepted new entries, per patch: stalled, rejection run at the end).
    """
    entries = old.merge(new)
    is_new = np.concatenate([np.zeros(len(old), bool), np.ones(len(new), bool)])
    is_new = is_new[np.argsort(np.concatenate([old.owner, new.owner]), kind="stable")]
    reach = polygons.OVERLAP_RADIUS_FACTOR * np.sqrt(entries.areas / math.pi)
    rows, cols = _close_pairs(entries.centers, reach, entries.owner)
    later = is_new[rows]
    rows, cols = rows[later], cols[later]
    delta = entries.centers[rows] - entries.centers[cols]
    overlap = polygons.circle_overlaps(np.sqrt((delta * delta).sum(axis=1)), reach[rows],
                                       reach[cols])
    limits = max_overlap * entries.areas
    accepted = np.ones(len(entries))
    for _ in range(len(entries) + 1):
        summed = np.bincount(rows, weights=overlap * accepted[cols], minlength=len(entries))
        step = np.where(is_new, summed <= limits, 1.0)
        if np.array_equal(step, accepted):
            break
        accepted = step
    return _cut(entries, is_new, accepted > 0, wanted, runs, patience)


def _cut(entries: _Entries, is_new, accepted, wanted, runs, patience):
    """Per patch: the accepted new entries before the first run of `patience` consecutive
    rejections (counting the `runs` carried in), at most `wanted`; whether such a run
    occurred (drawing stops); the rejection run at the end."""
    owner, accepted = entries.owner[is_new], accepted[is_new]
    index, sizes = _ranks(owner, len(wanted))
    width = max(1, int(sizes.max()))
    grid = np.zeros((len(wanted), width), bool)
    grid[owner, index] = accepted
    position = np.arange(width)
    before = (-1 - runs)[:, None]  # where the last acceptance was, as a position
    marks = np.where(grid, position, before)
    previous = np.maximum.accumulate(np.concatenate([before, marks[:, :-1]], axis=1), axis=1)
    stall = grid & (position - previous - 1 >= patience)
    first_stall = np.where(stall.any(axis=1), stall.argmax(axis=1), width)
    trailing = sizes - 1 - marks.max(axis=1)
    keep = grid & (position < first_stall[:, None])
    keep &= np.cumsum(keep, axis=1) <= wanted[:, None]
    chosen = keep[owner, index]
    return (entries.take(np.flatnonzero(is_new)[chosen]),
            stall.any(axis=1) | (trailing >= patience), trailing)
