"""Nucleus placement for a batch of patches (release `rand_nucleus`), vectorised over the batch.

Every patch draws its random numbers from its own generator in a fixed order and amount (its
quad, then the uniforms of its whole candidate budget), so its nuclei do not depend on which
other patches share the batch; the geometry (bank shapes, homographies, canvas and tissue
bounds, areas) and the overlap test then run on all candidates of the batch at once, which
removes the per-patch cost of ~100 small numpy calls. Candidates are examined in passes: most
patches have their nuclei after the first; the others continue while the rest are done.

Overlap is measured in the source canvas (where nuclei are near-circular) on slightly widened
area-equivalent circles, summed over the earlier nuclei, which bounds the overlap with their
union from above (see `polygons.OVERLAP_RADIUS_FACTOR`).
"""

import functools
import math
from typing import List, Sequence

import numpy as np

from simgan_histo.synthesis import polygons


def first_portion(wanted: np.ndarray) -> np.ndarray:
    """Candidates a patch examines in its first pass (then `first_portion` + 4·patience per
    pass while it still needs nuclei). Examining the candidates in portions gives the same
    nuclei (acceptance is sequential, rejection runs carry over); most patches have their
    nuclei after the first pass, a full canvas usually stalls within the second."""
    return 2 * np.asarray(wanted, np.int64) + 8


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
    after `overlap_redraws` consecutive overlap rejections (within a chunk of 3·count + 32
    candidates), or when the candidate budget (max(`placement_tries`, 8·count), rounded up
    to whole chunks) is spent.

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
    chunks = 3 * counts + 32
    # The whole candidate budget is drawn up front (a fixed amount per patch), so a patch
    # can examine all it still needs in one more pass instead of one pass per chunk.
    totals = -(-np.maximum(config.placement_tries, 8 * counts) // chunks) * chunks
    pools = [rng.random((5, int(total))) if count > 0 else None
             for rng, count, total in zip(rngs, counts.tolist(), totals.tolist())]
    examined, have, runs, run_chunks = (np.zeros(batch, np.int64) for _ in range(4))
    stopped = counts <= 0
    kept = _Entries.empty(polygons.max_vertices(config))
    while True:
        active = np.flatnonzero(~stopped & (have < counts) & (examined < totals))
        if not len(active):
            break
        starts = examined[active]
        wanted = (counts - have)[active]
        stops = np.minimum(starts + first_portion(wanted)
                           + np.where(starts > 0, 4 * config.overlap_redraws, 0), totals[active])
        new = _candidates([pools[b][:, start:stop] for b, start, stop in
                           zip(active.tolist(), starts.tolist(), stops.tolist())],
                          active, starts, chunks, config, quads, homographies, biases, tissues)
        examined[active] = stops
        accepted, stalled, runs, run_chunks = _accept(
            kept.select(active), new, counts - have, (runs, run_chunks), config.max_overlap,
            config.overlap_redraws)
        stopped |= stalled
        have += np.bincount(accepted.owner, minlength=batch)
        kept = kept.merge(accepted)
    splits = np.cumsum(np.bincount(kept.owner, minlength=batch))[:-1]
    return np.split(kept.polygons(), splits)


class _Entries:
    """Nuclei or candidates grouped by patch (`owner`) in drawing order, as flat arrays:
    centres x, y and areas (N,) in the source canvas, mapped vertices x, y (V, N) float32.
    Structure of arrays: numpy reduces an (N, 2) or (N, V, 2) array along a short axis
    ~10× slower than it combines whole rows."""

    def __init__(self, owner, x, y, areas, vx, vy, chunk):
        self.owner, self.x, self.y, self.areas, self.vx, self.vy = owner, x, y, areas, vx, vy
        self.chunk = chunk  # index of the chunk of candidates each came from

    @classmethod
    def empty(cls, width: int) -> "_Entries":
        return cls(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0),
                   np.zeros((width, 0), np.float32), np.zeros((width, 0), np.float32),
                   np.zeros(0, np.int64))

    def __len__(self):
        return len(self.owner)

    def take(self, index) -> "_Entries":
        # np.take keeps (V, N) C-ordered; a[:, index] would return it transposed in memory.
        return _Entries(self.owner[index], self.x[index], self.y[index], self.areas[index],
                        np.take(self.vx, index, axis=1), np.take(self.vy, index, axis=1),
                        self.chunk[index])

    def select(self, owners: np.ndarray) -> "_Entries":
        return self.take(np.flatnonzero(np.isin(self.owner, owners)))

    def merge(self, other: "_Entries") -> "_Entries":
        """Both sets, grouped by owner; within an owner, self's entries come first."""
        owner = np.concatenate([self.owner, other.owner])
        order = np.argsort(owner, kind="stable")
        return _Entries(owner[order], np.concatenate([self.x, other.x])[order],
                        np.concatenate([self.y, other.y])[order],
                        np.concatenate([self.areas, other.areas])[order],
                        np.take(np.concatenate([self.vx, other.vx], axis=1), order, axis=1),
                        np.take(np.concatenate([self.vy, other.vy], axis=1), order, axis=1),
                        np.concatenate([self.chunk, other.chunk])[order])

    def polygons(self) -> np.ndarray:
        """(N, V, 2) float32 vertices, C-ordered."""
        out = np.empty((len(self.owner), self.vx.shape[0], 2), np.float32)
        out[..., 0], out[..., 1] = self.vx.T, self.vy.T
        return out


def _in_quads(quads: np.ndarray, pick: np.ndarray, u: np.ndarray, v: np.ndarray):
    """(x, y) of points uniform in convex quads (N, 4, 2), from three uniforms each (N,): a
    triangle (abc or acd, by area), then a folded point of the unit square in it. The release
    drew centres on the whole source canvas and rejected those outside the quad; this is the
    same distribution without the waste."""
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = (
        (quads[:, k, 0], quads[:, k, 1]) for k in range(4))
    abx, aby, acx, acy, adx, ady = bx - ax, by - ay, cx - ax, cy - ay, dx - ax, dy - ay
    first = np.abs(abx * acy - aby * acx)  # 2 × area of abc
    second = np.abs(acx * ady - acy * adx)  # 2 × area of acd
    use_second = pick * (first + second) >= first
    fold = u + v > 1.0
    u, v = np.where(fold, 1.0 - u, u), np.where(fold, 1.0 - v, v)
    px, py = np.where(use_second, acx, abx), np.where(use_second, acy, aby)
    qx, qy = np.where(use_second, adx, acx), np.where(use_second, ady, acy)
    return ax + u * px + v * qx, ay + u * py + v * qy


def _map(homographies: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Points (V, N) x and y through per-column 3×3 homographies (N, 3, 3); float32 out."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    h = homographies.reshape(-1, 9).T.copy()  # 9 × (N,)
    scale = 1.0 / (h[6] * x + h[7] * y + h[8])
    return (((h[0] * x + h[1] * y + h[2]) * scale).astype(np.float32),
            ((h[3] * x + h[4] * y + h[5]) * scale).astype(np.float32))


def _areas(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Shoelace areas (`polygons.polygon_areas`) of polygons given as (V, N) x and y."""
    x, y = x.astype(np.float64), y.astype(np.float64)
    cross = (x[:-1] * y[1:] - x[1:] * y[:-1]).sum(axis=0)
    return 0.5 * np.abs(cross + x[-1] * y[0] - x[0] * y[-1])


@functools.lru_cache(maxsize=4)
def _bank_xy(config):
    """The config's shape bank as contiguous (V, M) x and y, and its areas."""
    shapes, areas = polygons.shape_bank(config)
    return np.ascontiguousarray(shapes[..., 0].T), np.ascontiguousarray(shapes[..., 1].T), areas


def _candidates(blocks, active, starts, chunks, config, quads, homographies, biases,
                tissues) -> _Entries:
    """Candidates of the `active` patches from their (5, n) blocks of uniforms (candidates
    `starts` onwards of each patch's budget, in chunks of `chunks`), the invalid ones
    dropped. Valid: every vertex inside the canvas and on tissue, mapped area above
    `min_nucleus_area_px`."""
    uniforms = np.concatenate(blocks, axis=1)
    sizes = [block.shape[1] for block in blocks]
    owner = np.repeat(active, sizes)
    number = np.arange(len(owner)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    chunk = (np.repeat(starts, sizes) + number) // chunks[owner]
    x, y = _in_quads(quads[owner], uniforms[0], uniforms[1], uniforms[2])
    low, high = config.nucleus_radius_range
    radii = (low + (high - low) * uniforms[3]) * biases[owner]
    bank_x, bank_y, bank_areas = _bank_xy(config)
    picks = (uniforms[4] * bank_x.shape[1]).astype(np.int64)
    scale = radii.astype(np.float32)
    vx, vy = _map(homographies[owner],
                  np.take(bank_x, picks, axis=1) * scale + x.astype(np.float32),
                  np.take(bank_y, picks, axis=1) * scale + y.astype(np.float32))
    last = tissues.shape[1] - 1
    valid = ((vx.min(axis=0) >= 0) & (vy.min(axis=0) >= 0) & (vx.max(axis=0) <= last)
             & (vy.max(axis=0) <= last))
    index = np.flatnonzero(valid)
    vx, vy, owner = np.take(vx, index, axis=1), np.take(vy, index, axis=1), owner[index]
    flat = (owner * (last + 1) + vy.astype(np.int64)) * (last + 1) + vx.astype(np.int64)
    inside = (np.take(tissues, flat).min(axis=0) > 0) & (_areas(vx, vy)
                                                          > config.min_nucleus_area_px)
    kept = index[inside]
    inside = np.flatnonzero(inside)
    return _Entries(owner[inside], x[kept], y[kept], bank_areas[picks[kept]] * radii[kept] ** 2,
                    np.take(vx, inside, axis=1), np.take(vy, inside, axis=1), chunk[kept])


def _ranks(owner: np.ndarray, num: int):
    """(rank of each entry within its owner's group, group sizes) for owner-grouped entries."""
    sizes = np.bincount(owner, minlength=num)
    starts = np.cumsum(sizes) - sizes
    return np.arange(len(owner)) - starts[owner], sizes


def _meeting(rows: _Entries, cols: _Entries, rows_reach, cols_reach, earlier: bool):
    """(i, j): entries i of `rows` and j of `cols` of the same patch whose circles meet
    (with `earlier`, rows and cols are the same set and j comes before i), sorted by (i, j),
    a canonical order: overlap sums then do not depend on the batch.

    A sweep along x: per patch, `cols` sorted by x; the partners of i lie within
    reach_i + max(reach) of x_i (`searchsorted` ranges), tested exactly afterwards.
    """
    if not len(rows) or not len(cols):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    widest = float(cols_reach.max())
    low_x = min(float(rows.x.min()), float(cols.x.min()))
    high_x = max(float(rows.x.max()), float(cols.x.max()))
    span = high_x - low_x + 2.0 * (float(rows_reach.max()) + widest) + 1.0  # apart patches
    key = cols.owner * span + cols.x
    order = np.argsort(key, kind="stable")
    ordered = key[order]
    row_key, reach = rows.owner * span + rows.x, rows_reach + widest
    low = np.searchsorted(ordered, row_key - reach, side="left")
    counts = np.searchsorted(ordered, row_key + reach, side="right") - low
    i = np.repeat(np.arange(len(rows)), counts)
    j = order[np.repeat(low - (np.cumsum(counts) - counts), counts)
              + np.arange(int(counts.sum()))]
    if earlier:  # entries are in drawing order within a patch
        before = np.flatnonzero(j < i)
        i, j = i[before], j[before]
    dx, dy = rows.x[i] - cols.x[j], rows.y[i] - cols.y[j]
    close = np.flatnonzero(np.sqrt(dx * dx + dy * dy) < rows_reach[i] + cols_reach[j])
    i, j = i[close], j[close]
    canonical = np.lexsort((j, i))
    return i[canonical], j[canonical]


def _overlaps(rows: _Entries, cols: _Entries, rows_reach, cols_reach, earlier: bool):
    """(i, j, lens areas) of the meeting pairs (`_meeting`)."""
    i, j = _meeting(rows, cols, rows_reach, cols_reach, earlier)
    dx, dy = rows.x[i] - cols.x[j], rows.y[i] - cols.y[j]
    return i, j, polygons.circle_overlaps(np.sqrt(dx * dx + dy * dy), rows_reach[i],
                                          cols_reach[j])


def _reach(entries: _Entries) -> np.ndarray:
    return polygons.OVERLAP_RADIUS_FACTOR * np.sqrt(entries.areas / math.pi)


def _accept(old: _Entries, new: _Entries, wanted: np.ndarray, runs, max_overlap: float,
            patience: int):
    """Sequential acceptance of `new` after the already accepted `old`, all patches at once.

    x_i = [Σ_{j<i} overlap_ij·x_j <= max_overlap·area_i]. A candidate already over its limit
    against `old` alone is rejected whatever comes between (full canvases: most of them);
    for the others the rule is triangular, so iterating it from "all accepted" reaches its
    unique solution (the sequential result) in at most (chain length) steps. Then `_cut`
    applies the per-patch limits.

    Returns:
      (the accepted new entries, per patch: stalled, rejection run at the end, its chunk).
    """
    limits = max_overlap * new.areas
    new_reach = _reach(new)
    i, _, lens = _overlaps(new, old, new_reach, _reach(old), earlier=False)
    base = np.bincount(i, weights=lens, minlength=len(new))
    live = np.flatnonzero(base <= limits)
    accepted = np.zeros(len(new), bool)
    contenders = new.take(live)
    i, j, lens = _overlaps(contenders, contenders, new_reach[live], new_reach[live],
                           earlier=True)
    base, limits = base[live], limits[live]
    state = np.ones(len(live))
    for _ in range(len(live) + 1):
        step = (base + np.bincount(i, weights=lens * state[j], minlength=len(live))
                <= limits).astype(np.float64)
        if np.array_equal(step, state):
            break
        state = step
    accepted[live] = state > 0
    return _cut(new, accepted, wanted, runs, patience)


def _cut(new: _Entries, accepted, wanted, runs, patience):
    """Per patch: the accepted new entries before the first `patience` consecutive
    rejections within a chunk (counting the run carried in from the previous pass, `runs` =
    (lengths, chunk indices)), at most `wanted`; whether such a run occurred (drawing
    stops); the run at the end and its chunk.

    The release-style rule "stop after `patience` redraws" is the same as the earlier
    "stop at an acceptance that follows a run of `patience`, or at the end of the chunk".
    """
    owner, chunk = new.owner, new.chunk
    runs, run_chunks = runs
    index, sizes = _ranks(owner, len(wanted))
    width = max(1, int(sizes.max()))
    grid = np.zeros((len(wanted), width), bool)
    grid[owner, index] = accepted
    chunks = np.full((len(wanted), width), -1, np.int64)
    chunks[owner, index] = chunk
    position = np.arange(width)
    valid = position < sizes[:, None]
    # A run restarts at the first candidate of a chunk (as if one were accepted just before).
    fresh = valid & (chunks != np.concatenate([run_chunks[:, None], chunks[:, :-1]], axis=1))
    marks = np.where(grid, position, np.where(fresh, position - 1, -1 - runs[:, None]))
    last = np.maximum.accumulate(marks, axis=1)  # last acceptance (or restart) so far
    stall = valid & ~grid & (position - last >= patience)
    first_stall = np.where(stall.any(axis=1), stall.argmax(axis=1), width)
    keep = grid & (position < first_stall[:, None])
    keep &= np.cumsum(keep, axis=1) <= wanted[:, None]
    chosen = keep[owner, index]
    end = (np.arange(len(wanted)), sizes - 1)
    trailing = np.where(sizes > 0, sizes - 1 - last[end], runs)
    return (new.take(np.flatnonzero(chosen)), stall.any(axis=1), trailing,
            np.where(sizes > 0, chunks[end], run_chunks))
