"""Nuclear mask sampler (paper §4.1): random polygons under one quadrilateral transform.

A nucleus is a polygon whose vertices lie on a circle pushed in and out (the release's
`generatePolygon`: angular steps jittered by the irregularity, radii by the spikiness).
All nuclei of a patch are drawn on a larger source canvas and mapped to the patch by one
random perspective ("quad") transform, which correlates the shape and size of neighbours.

Instead of warping a 770² raster with PIL (release), the polygon vertices are mapped through
the homography: a projective map sends straight edges to straight edges, so rasterising the
mapped polygon is the same shape without the nearest-neighbour resampling. This module holds
the geometry; `placement.py` places a batch's nuclei with it.
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
    cos_a = np.minimum(np.maximum((d2 + a2 - b2) / (2.0 * d * a), -1.0), 1.0)
    cos_b = np.minimum(np.maximum((d2 + b2 - a2) / (2.0 * d * b), -1.0), 1.0)
    return a2 * np.arccos(cos_a) + b2 * np.arccos(cos_b) - a * d * np.sqrt(1.0 - cos_a * cos_a)


def nucleus_count(rng: np.random.Generator, config, density: float, canvas_px: int) -> int:
    """Number of nuclei to place (release draw_fake), scaled from a 460² canvas by area."""
    if density <= 1.0 and draws.chance(rng, config.empty_patch_probability):
        return 0
    scale = (canvas_px / RELEASE_CANVAS_PX) ** 2
    mean = (config.count_mean[0] + config.count_mean[1] * density) * scale
    count = rng.normal(mean, config.count_sd * scale)
    return int(min(max(round(count), 0), round(config.count_max * scale)))


def classical_count(rng: np.random.Generator, config, found: int, canvas_px: int) -> int:
    """Number of nuclei to place when `config.count_source == "classical"`: Poisson with the
    mean `found`, the classical baseline's count on the same canvas of the tile."""
    cap = round(config.count_max * (canvas_px / RELEASE_CANVAS_PX) ** 2)
    return int(min(rng.poisson(found), cap))


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


def _pad(vertices: np.ndarray, width: int) -> np.ndarray:
    if vertices.shape[1] >= width:
        return vertices
    extra = np.repeat(vertices[:, -1:, :], width - vertices.shape[1], axis=1)
    return np.concatenate([vertices, extra], axis=1)
