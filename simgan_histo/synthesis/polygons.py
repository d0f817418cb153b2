"""Nuclear mask sampler (paper §4.1): random polygons under one quadrilateral transform.

A nucleus is a polygon whose vertices lie on a circle pushed in and out (the release's
`generatePolygon`: angular steps jittered by the irregularity, radii by the spikiness).
All nuclei of a patch are drawn on a larger source canvas and mapped to the patch by one
random perspective ("quad") transform, which correlates the shape and size of neighbours.

Instead of warping a 770² raster with PIL (release), the polygon vertices are mapped through
the homography: a projective map sends straight edges to straight edges, so rasterising the
mapped polygon is the same shape without the nearest-neighbour resampling. Candidates are
drawn in vectorised chunks and accepted in order; overlap is measured in the source canvas
(where nuclei are near-circular) on slightly widened area-equivalent circles, summed over
earlier nuclei, which bounds the overlap with their union from above.
"""

import functools
import math
from typing import Tuple

import cv2
import numpy as np

from simgan_histo.synthesis import draws

RELEASE_CANVAS_PX = 460  # the release synthesises 460² canvases; counts are per that area
SHAPE_BANK_SIZE = 4096  # unit shapes per bank (a patch draws a few dozen)
_SHAPE_SEED = 20190617  # fixed: every worker must build the same banks
# Overlap is measured on circles this much wider than the area-equivalent circle: lobes of
# irregular polygons reach past it. Calibrated on drawn masks: with 1.0, 18 % of nuclei
# exceeded the overlap bound in pixels; with 1.15, < 1 % (tests/synthesis/test_polygons.py).
OVERLAP_RADIUS_FACTOR = 1.15


def polygon_vertices(rng: np.random.Generator, centers: np.ndarray, radii: np.ndarray,
                     irregularity: np.ndarray, spikiness: np.ndarray,
                     num_vertices: np.ndarray) -> np.ndarray:
    """Vertices of M random polygons (release `generatePolygon`), vectorised.

    Args:
      rng: random generator.
      centers: (M, 2) x, y.
      radii: (M,) mean radius.
      irregularity, spikiness: (M,) values, clipped to [0, 1] as in the release.
      num_vertices: (M,) vertex counts; rows are padded to the largest count by repeating
        their last vertex (harmless for filling and for the shoelace area).

    Returns:
      (M, V, 2) float32 vertices, counter-clockwise in image coordinates.
    """
    count = len(radii)
    width = int(num_vertices.max()) if count else 1
    irregularity = np.clip(irregularity, 0.0, 1.0) * 2.0 * math.pi / num_vertices
    spread = np.clip(spikiness, 0.0, 1.0) * radii
    base = 2.0 * math.pi / num_vertices
    steps = rng.uniform(base - irregularity, base + irregularity, (width, count)).T
    valid = np.arange(width)[None, :] < num_vertices[:, None]
    steps = np.where(valid, steps, 0.0)
    steps *= (2.0 * math.pi / steps.sum(axis=1))[:, None]
    angles = rng.uniform(0.0, 2.0 * math.pi, count)[:, None] + np.cumsum(steps, axis=1) - steps
    lengths = np.clip(radii[:, None] + spread[:, None] * rng.standard_normal((count, width)),
                      0.0, 2.0 * radii[:, None])
    last = np.minimum(np.arange(width)[None, :], num_vertices[:, None] - 1)
    angles = np.take_along_axis(angles, last, axis=1)
    lengths = np.take_along_axis(lengths, last, axis=1)
    points = np.stack([np.cos(angles) * lengths, np.sin(angles) * lengths], axis=-1)
    return (points + centers[:, None, :]).astype(np.float32)


def polygon_areas(vertices: np.ndarray) -> np.ndarray:
    """Shoelace areas (M,) of (M, V, 2) polygons."""
    x, y = vertices[..., 0].astype(np.float64), vertices[..., 1].astype(np.float64)
    cross = (x[:, :-1] * y[:, 1:] - x[:, 1:] * y[:, :-1]).sum(axis=1)
    return 0.5 * np.abs(cross + x[:, -1] * y[:, 0] - x[:, 0] * y[:, -1])


def random_quad(rng: np.random.Generator, canvas_px: int,
                inset_fraction: float) -> Tuple[np.ndarray, np.ndarray]:
    """One random quadrilateral (perspective) transform per patch (release `Image.QUAD`).

    The source canvas is canvas·(1 + f) px; each corner coordinate of the quad is inset by
    U(0, f·canvas) and the quad is mapped onto the canvas (release: 770 → 460, f = 310/460),
    i.e. a scale between about 0.6× and 3×.

    Returns:
      (3×3 homography from source to canvas coordinates, the source quad (4, 2): corners
      that map to (0, 0), (c, 0), (c, c), (0, c)).
    """
    source_px = canvas_px * (1.0 + inset_fraction)
    inset = rng.random(8) * (inset_fraction * canvas_px)
    quad = np.array([[inset[0], inset[1]], [source_px - inset[2], inset[3]],
                     [source_px - inset[4], source_px - inset[5]],
                     [inset[6], source_px - inset[7]]], np.float32)
    square = np.array([[0, 0], [canvas_px, 0], [canvas_px, canvas_px], [0, canvas_px]],
                      np.float32)
    return cv2.getPerspectiveTransform(quad, square), quad


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Maps (..., 2) points through a 3×3 homography (float32 out)."""
    x, y = points[..., 0].astype(np.float64), points[..., 1].astype(np.float64)
    (a, b, c), (d, e, f), (g, h, i) = matrix.tolist()
    scale = 1.0 / (g * x + h * y + i)
    out = np.empty(points.shape, np.float32)
    out[..., 0] = (a * x + b * y + c) * scale
    out[..., 1] = (d * x + e * y + f) * scale
    return out


def circle_overlaps(distance: np.ndarray, radius_a: np.ndarray,
                    radius_b: np.ndarray) -> np.ndarray:
    """Intersection areas of circle pairs: a²·α + b²·β − a·d·sin α (α, β the half-angles of
    the lens at each centre). Clipping the cosines also covers the disjoint (area 0) and
    nested (area π·min²) cases."""
    d = np.maximum(distance, 1e-9)
    a, b = radius_a, radius_b
    a2, b2, d2 = a * a, b * b, d * d
    cos_a = np.clip((d2 + a2 - b2) / (2.0 * d * a), -1.0, 1.0)
    cos_b = np.clip((d2 + b2 - a2) / (2.0 * d * b), -1.0, 1.0)
    return a2 * np.arccos(cos_a) + b2 * np.arccos(cos_b) - a * d * np.sqrt(1.0 - cos_a * cos_a)


def nucleus_count(rng: np.random.Generator, config, density: float, canvas_px: int) -> int:
    """Number of nuclei to place (release draw_fake), scaled from a 460² canvas by area."""
    if density <= 1.0 and draws.chance(rng, config.empty_patch_probability):
        return 0
    scale = (canvas_px / RELEASE_CANVAS_PX) ** 2
    mean = (config.count_mean[0] + config.count_mean[1] * density) * scale
    count = rng.normal(mean, config.count_sd * scale)
    return int(np.clip(round(count), 0, round(config.count_max * scale)))


def size_bias(rng: np.random.Generator, config, density: float) -> float:
    """Per-patch radius multiplier `nsize_bias` ~ N(a + b·density, sd), kept >= 0.3."""
    mean = config.size_bias_mean[0] + config.size_bias_mean[1] * density
    return float(max(0.3, rng.normal(mean, config.size_bias_sd)))


def max_vertices(config) -> int:
    """Largest vertex count: int(U(low, high)) in the release, i.e. high − 1."""
    return max(config.vertices_range[0], config.vertices_range[1] - 1)


@functools.lru_cache(maxsize=8)
def _shape_bank(irregularity, spikiness, vertices_range, num_vertices_max):
    """SHAPE_BANK_SIZE unit-radius nucleus shapes drawn once with a fixed seed, and their
    areas.

    The release's polygon is scale-free (radius jitter = spikiness · radius), so a unit
    shape times a fresh radius at a fresh position is a draw from the same distribution;
    a patch then indexes the bank instead of drawing 17 angles and radii per candidate.
    """
    rng = np.random.default_rng(_SHAPE_SEED)
    count = SHAPE_BANK_SIZE
    vertices = rng.integers(vertices_range[0], num_vertices_max + 1, count)
    shapes = polygon_vertices(rng, np.zeros((count, 2)), np.ones(count),
                              irregularity[0] + rng.uniform(0, irregularity[1], count),
                              spikiness[0] + rng.uniform(0, spikiness[1], count), vertices)
    shapes = _pad(shapes, num_vertices_max)
    return shapes, polygon_areas(shapes)


@functools.lru_cache(maxsize=16)
def shape_bank(config) -> Tuple[np.ndarray, np.ndarray]:
    """((SHAPE_BANK_SIZE, V, 2) unit nucleus shapes, their areas) for this config."""
    return _shape_bank(tuple(config.irregularity), tuple(config.spikiness),
                       tuple(config.vertices_range), max_vertices(config))


@functools.lru_cache(maxsize=2)
def star_bank(num_vertices: int = 40) -> Tuple[np.ndarray, np.ndarray]:
    """Unit spiky stars of the release's "noise type 1" (irregularity = spikiness = 1)."""
    rng = np.random.default_rng(_SHAPE_SEED + 1)
    ones = np.ones(SHAPE_BANK_SIZE)
    shapes = polygon_vertices(rng, np.zeros((SHAPE_BANK_SIZE, 2)), ones, ones, ones,
                              np.full(SHAPE_BANK_SIZE, num_vertices, np.int64))
    return shapes, polygon_areas(shapes)


@functools.lru_cache(maxsize=2)
def star_sprites(radius_range: Tuple[float, float], count: int = SHAPE_BANK_SIZE):
    """`count` stars of the star bank at radii U(radius_range), rasterised once (fixed seed):
    (list of uint8 0/255 masks, (count, 2) int offsets of their centres). Stamping a
    sprite costs a slice; filling a 40-vertex polygon per star cost ~6 µs each."""
    rng = np.random.default_rng(_SHAPE_SEED + 2)
    shapes = star_bank()[0][:count] * rng.uniform(*radius_range, count)[:, None, None]
    sprites, offsets = [], np.zeros((count, 2), np.int64)
    for index, shape in enumerate(shapes):
        low = np.floor(shape.min(axis=0)).astype(np.int64)
        side = np.ceil(shape.max(axis=0)).astype(np.int64) - low + 1
        sprite = np.zeros((side[1], side[0]), np.uint8)
        cv2.fillPoly(sprite, [np.round((shape - low) * 16).astype(np.int32)], 255,
                     lineType=cv2.LINE_8, shift=4)
        sprites.append(sprite)
        offsets[index] = low
    return sprites, offsets


def scaled_shapes(rng, bank, centers: np.ndarray, radii: np.ndarray):
    """Random bank shapes scaled by `radii` and moved to `centers`.

    Returns:
      ((M, V, 2) float32 vertices, (M,) areas).
    """
    shapes, areas = bank
    picks = (rng.random(len(centers)) * len(shapes)).astype(np.int64)
    vertices = shapes[picks] * radii.astype(np.float32)[:, None, None]
    return vertices + centers.astype(np.float32)[:, None, :], areas[picks] * radii ** 2


def uniform_in_quad(rng, quad: np.ndarray, count: int) -> np.ndarray:
    """`count` points uniform in a convex quadrilateral (4, 2), corners in order.

    The release drew centres uniformly on the whole source canvas and rejected those
    outside the quad; drawing inside the quad is the same distribution without the waste.
    """
    (ax, ay), (bx, by), (cx, cy), (dx, dy) = quad.tolist()
    first = abs((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))  # 2 × triangle abc
    second = abs((cx - ax) * (dy - ay) - (cy - ay) * (dx - ax))  # 2 × triangle acd
    draws_ = rng.random((3, count))
    use_second = draws_[0] * (first + second) >= first
    u, v = draws_[1], draws_[2]
    fold = u + v > 1.0
    u, v = np.where(fold, 1.0 - u, u), np.where(fold, 1.0 - v, v)
    # Triangle (a, b, c) or (a, c, d): a + u·(p − a) + v·(q − a).
    px, py = np.where(use_second, cx, bx) - ax, np.where(use_second, cy, by) - ay
    qx, qy = np.where(use_second, dx, cx) - ax, np.where(use_second, dy, cy) - ay
    return np.stack([ax + u * px + v * qx, ay + u * py + v * qy], axis=1)


def _candidates(rng, config, count, bias, homography, quad, tissue, full_tissue):
    """A chunk of valid candidates: (source centres, source areas, mapped polygons).

    Valid: every vertex inside the canvas and on tissue, mapped area above
    `min_nucleus_area_px`.
    """
    size = tissue.shape[0]
    centers = uniform_in_quad(rng, quad, count)
    low, high = config.nucleus_radius_range
    radii = (low + (high - low) * rng.random(count)) * bias
    source, areas = scaled_shapes(rng, shape_bank(config), centers, radii)
    mapped = apply_homography(homography, source)
    flat = mapped.reshape(count, -1)
    valid = (flat.min(axis=1) >= 0) & (flat.max(axis=1) <= size - 1)
    if not full_tissue:
        pixels = np.clip(mapped, 0, size - 1).astype(np.int32)
        valid &= tissue[pixels[..., 1], pixels[..., 0]].min(axis=1) > 0
    valid &= polygon_areas(mapped) > config.min_nucleus_area_px
    return centers[valid], areas[valid], mapped[valid]


@functools.lru_cache(maxsize=256)
def _earlier(new: int, total: int, num_old: int) -> np.ndarray:
    """(new, total) bool: entry (i, j) is True when candidate j comes before new one i."""
    return np.tri(new, total, num_old - 1, dtype=bool)


def _accept(centers, radii, areas, num_old, max_overlap, budget, patience):
    """Sequential acceptance, vectorised: x_i = [Σ_{j<i} overlap_ij·x_j <= limit_i].

    The recurrence is triangular, so iterating it from "all accepted" reaches its unique
    solution (the sequential result) in at most (chain length) steps. The first `num_old`
    entries are already accepted. Returns (indices of accepted new entries, stopped early).
    """
    total, new = len(centers), len(centers) - num_old
    dx = centers[num_old:, 0:1] - centers[:, 0]
    dy = centers[num_old:, 1:2] - centers[:, 1]
    distance = np.sqrt(dx * dx + dy * dy)
    close = (distance < radii[num_old:, None] + radii) & _earlier(new, total, num_old)
    rows, cols = np.nonzero(close)
    overlap = np.zeros((new, total))
    overlap[rows, cols] = circle_overlaps(distance[rows, cols], radii[rows + num_old],
                                          radii[cols])
    limits = max_overlap * areas[num_old:]
    accepted = np.ones(total)
    for _ in range(new + 1):
        step = (overlap @ accepted <= limits).astype(np.float64)
        if np.array_equal(step, accepted[num_old:]):
            break
        accepted[num_old:] = step
    chosen = np.flatnonzero(accepted[num_old:])
    if new - len(chosen) < patience:  # too few rejections for a stalled run
        return chosen[:budget], False
    # A run of `patience` rejections before the next acceptance ends the drawing.
    gaps = np.diff(chosen, prepend=-1) - 1
    stalled = np.flatnonzero(gaps >= patience)
    stopped = bool(len(stalled)) or new - 1 - (chosen[-1] if len(chosen) else -1) >= patience
    if len(stalled):
        chosen = chosen[:stalled[0]]
    return chosen[:budget], stopped


def sample_nuclei(rng: np.random.Generator, config, tissue: np.ndarray, count: int,
                  bias: float) -> np.ndarray:
    """Places up to `count` nuclei on a square canvas (release `rand_nucleus`).

    Each nucleus lies entirely inside the canvas and on tissue (checked at its vertices),
    has a mapped area > `min_nucleus_area_px`, and overlaps earlier nuclei by at most
    `max_overlap` of its own area. The release accepted a nucleus anyway after 50 overlap
    redraws; here the bound is kept and a full canvas simply gets fewer nuclei: drawing
    stops after `overlap_redraws` consecutive overlap rejections, or when the candidate
    budget (max(`placement_tries`, 8·count)) is spent.

    Args:
      rng: the patch's random generator.
      config: a SynthesisConfig.
      tissue: (S, S) uint8/bool, non-zero where nuclei may lie.
      count: nuclei wanted.
      bias: radius multiplier (`size_bias`).

    Returns:
      (K, V, 2) float32 vertices in canvas coordinates, K <= count, in drawing order.
    """
    size = tissue.shape[0]
    homography, quad = random_quad(rng, size, config.quad_inset_fraction)
    if count <= 0:
        return np.zeros((0, max_vertices(config), 2), np.float32)
    centers, areas, mapped = (np.zeros((0, 2)), np.zeros(0),
                              np.zeros((0, max_vertices(config), 2), np.float32))
    budget, chunk, drawn = max(config.placement_tries, 8 * count), 3 * count + 32, 0
    full_tissue = cv2.countNonZero(tissue) == tissue.size
    while drawn < budget and len(mapped) < count:
        new_centers, new_areas, new_mapped = _candidates(rng, config, chunk, bias, homography,
                                                         quad, tissue, full_tissue)
        drawn += chunk
        all_centers = np.concatenate([centers, new_centers])
        all_areas = np.concatenate([areas, new_areas])
        reach = OVERLAP_RADIUS_FACTOR * np.sqrt(all_areas / math.pi)
        chosen, stopped = _accept(all_centers, reach, all_areas,
                                  len(centers), config.max_overlap, count - len(mapped),
                                  config.overlap_redraws)
        centers = np.concatenate([centers, new_centers[chosen]])
        areas = np.concatenate([areas, new_areas[chosen]])
        mapped = np.concatenate([mapped, new_mapped[chosen]])
        if stopped:
            break
    return mapped


def _pad(vertices: np.ndarray, width: int) -> np.ndarray:
    if vertices.shape[1] >= width:
        return vertices
    extra = np.repeat(vertices[:, -1:, :], width - vertices.shape[1], axis=1)
    return np.concatenate([vertices, extra], axis=1)
