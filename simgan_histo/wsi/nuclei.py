"""One tile's nuclei: instances → keep the tile's own (seams) → outlines and measurements, level 0.

Frames. Processing px are level-0 px divided by `downsample` (= model mpp ÷ slide mpp). In the
corner frame pixel (i, j) covers [i, i+1) × [j, j+1), so a corner-frame point p at processing
resolution is p · downsample at level 0. Outline vertices are boundary-pixel centres
(`postprocess.polygons`): index (c, r) → corner (c + 0.5, r + 0.5). Every coordinate a
`NucleusTable` holds is level-0, corner frame (QuPath's); the TCGA CSV subtracts 0.5 to give
the release's pixel-index frame.

A nucleus is kept by the tile whose core holds its centroid (`tiling.Tile.is_responsible`)
and only if the centroid lies in the tissue mask. Kept nuclei that touch the trusted border of
the read window break the tiling assumption (nucleus larger than the overlap): they are kept,
counted and reported, never silently cut.
"""

import dataclasses
import hashlib
import uuid
from typing import Dict, List, Optional

import numpy as np
import shapely

from simgan_histo.postprocess import morphometry, polygons as polygons_lib

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/simgan_histo/nuclei")
_NAMESPACE_BYTES = NAMESPACE.bytes
COORD_DECIMALS = 3  # level-0 px; 1/1000 px is far below any scanner's precision


@dataclasses.dataclass
class NucleusTable:
    """The nuclei a tile keeps, sorted by centroid (y, then x); level-0 corner frame.

    Attributes:
      ids: uuid5(slide name, centroid) strings.
      polygons: (K, 2) float64 outline per nucleus, valid (shapely), not closed.
      columns: `postprocess.morphometry` columns (area_px at processing resolution) plus
        `centroid_x`, `centroid_y` (level-0 px), `area_um2`, `perimeter_um`.
      tile: (row, col) of the tile that kept them.
      stats: counters for the run report.
    """

    ids: List[str]
    polygons: List[np.ndarray]
    columns: Dict[str, np.ndarray]
    tile: tuple = (0, 0)
    stats: Dict[str, int] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def nucleus_id(slide_name: str, x: float, y: float) -> str:
    """uuid5 of the slide and the level-0 centroid (0.01 px): stable across runs and engines.

    `str(uuid.uuid5(NAMESPACE, name))` spelled out (SHA-1, version and variant bits, hex):
    3× faster than building `uuid.UUID` objects, and a slide has millions of nuclei.
    """
    digest = bytearray(hashlib.sha1(_NAMESPACE_BYTES + f"{slide_name}:{x:.2f}:{y:.2f}"
                                    .encode("utf-8")).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = digest.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def _split_rows(arrays: List[np.ndarray], function) -> List[np.ndarray]:
    """`[function(a) for a in arrays]` for an elementwise `function` of (K, 2) arrays, as one
    call on their concatenation (views into one result)."""
    if not arrays:
        return []
    arrays = [np.asarray(points, np.float64).reshape(-1, 2) for points in arrays]
    return np.split(function(np.concatenate(arrays)), np.cumsum([len(a) for a in arrays])[:-1])


def valid_outlines(outlines: List[np.ndarray]) -> List[Optional[np.ndarray]]:
    """Each outline as a shapely-valid polygon ring (None if nothing valid remains).

    Contour tracing yields zero-width spurs and self-touching rings where a nucleus has a
    one-pixel neck; GEOS `make_valid` ("structure") splits those and we keep the largest
    polygon, as `instance_polygons` keeps an instance's largest piece. Vectorised: only the
    invalid rings are handled one by one.
    """
    rounded = _split_rows(outlines, lambda points: np.round(points, COORD_DECIMALS))
    result: List[Optional[np.ndarray]] = [None] * len(rounded)
    usable = [i for i, points in enumerate(rounded) if len(points) >= 3]
    if not usable:
        return result
    counts = [len(rounded[i]) for i in usable]
    rings = shapely.linearrings(np.concatenate([rounded[i] for i in usable]),
                                indices=np.repeat(np.arange(len(usable)), counts))
    polygons = shapely.polygons(rings)
    valid = shapely.is_valid(polygons) & (shapely.area(polygons) > 0)
    for position, index in enumerate(usable):
        if valid[position]:
            result[index] = rounded[index]
    invalid = np.nonzero(~valid)[0]
    repaired = shapely.make_valid(polygons[invalid], method="structure", keep_collapsed=False)
    for position, geometry in zip(invalid, repaired):
        parts = [part for part in shapely.get_parts(geometry) if part.geom_type == "Polygon"]
        if parts:
            largest = max(parts, key=lambda part: part.area)
            ring = np.round(np.asarray(largest.exterior.coords)[:-1], COORD_DECIMALS)
            if len(ring) >= 3 and shapely.Polygon(ring).is_valid:
                result[usable[position]] = ring
    return result


def _owned_ids(labels: np.ndarray, tile, tissue, read_origin, downsample: float):
    """Ids whose centroid the tile owns and the tissue mask holds; also the counts dropped."""
    rows, cols = np.nonzero(labels)
    owner = labels[rows, cols].astype(np.int64)
    area = np.bincount(owner)
    ids = np.nonzero(area)[0]
    ids = ids[ids > 0]
    if len(ids) == 0:
        return ids, 0
    # Centroids as the mean pixel index, then the corner frame (+0.5), region px.
    region_x = np.bincount(owner, cols)[ids] / area[ids] + 0.5 + tile.read[0]
    region_y = np.bincount(owner, rows)[ids] / area[ids] + 0.5 + tile.read[1]
    owned = tile.is_responsible(region_x, region_y)
    level0_x = (region_x + read_origin[0]) * downsample
    level0_y = (region_y + read_origin[1]) * downsample
    in_tissue = tissue.contains(level0_x, level0_y) if tissue is not None else True
    keep = owned & in_tissue
    return ids[keep], int((owned & ~in_tissue).sum())


def _touches_border(labels: np.ndarray, margin: int) -> np.ndarray:
    """Ids with a pixel within `margin` (at least 1) px of the read window's edge."""
    margin = max(1, margin)
    strips = [labels[:margin], labels[-margin:], labels[:, :margin], labels[:, -margin:]]
    found = np.unique(np.concatenate([strip.ravel() for strip in strips]))
    return found[found > 0]


def tile_nuclei(labels: np.ndarray, rgb: np.ndarray, segmentation: np.ndarray, tile,
                region_origin, downsample: float, model_mpp: float, slide_name: str,
                tissue=None, context_px: int = 0) -> NucleusTable:
    """The nuclei tile `tile` is responsible for, in level-0 coordinates.

    Args:
      labels: (H, W) instance ids over the tile's read window (processing px).
      rgb: (H, W, 3) the (normalised) pixels the model saw, for the H/E means.
      segmentation: (H, W) segmentation probability, for the mean probability.
      tile: the `tiling.Tile` (read/write windows in region px).
      region_origin: (x, y) of the region's corner, processing px of the whole slide.
      downsample: level-0 px per processing px.
      model_mpp: µm per processing px.
      slide_name: for the nucleus ids.
      tissue: a `tissue.TissueMask` (None: keep nuclei anywhere).
      context_px: the read window's untrusted border.
    """
    keep, outside = _owned_ids(labels, tile, tissue, region_origin, downsample)
    lookup = np.zeros(int(labels.max()) + 1, labels.dtype)
    lookup[keep] = keep
    labels = lookup[labels]
    cut = np.intersect1d(_touches_border(labels, context_px), keep)
    origin_x = tile.read[0] + region_origin[0]  # read window corner, slide processing px
    origin_y = tile.read[1] + region_origin[1]
    local = polygons_lib.instance_polygons(labels)
    # Vertex index (c, r) -> corner frame (c + 0.5, r + 0.5) -> level 0 (× downsample).
    outlines = dict(zip(local, _split_rows(
        list(local.values()), lambda points: (points + (origin_x + 0.5, origin_y + 0.5))
        * downsample)))
    columns = morphometry.measure_nuclei(labels, rgb, segmentation, mpp=model_mpp,
                                         polygons=local)
    columns["centroid_x"] = (columns["centroid_x"] + 0.5 + origin_x) * downsample
    columns["centroid_y"] = (columns["centroid_y"] + 0.5 + origin_y) * downsample
    return _finish(columns, outlines, slide_name, tile, dict(
        nuclei_outside_tissue=outside, nuclei_touching_read_edge=len(cut)))


def _count_changed(rings, traced) -> int:
    """Rings that differ from their traced outline beyond the coordinate rounding.

    `np.allclose(ring, points, atol=10**-COORD_DECIMALS)` for every pair, in one vectorised
    comparison over the pairs of equal length (a different length is a change).
    """
    same_length = [i for i, ring in enumerate(rings)
                   if ring is not None and len(ring) == len(traced[i])]
    changed = sum(1 for ring in rings if ring is not None) - len(same_length)
    if same_length:
        ours = np.concatenate([rings[i] for i in same_length]).ravel()
        theirs = np.concatenate([np.asarray(traced[i], np.float64)
                                 for i in same_length]).ravel()
        close = np.isclose(ours, theirs, atol=10 ** -COORD_DECIMALS)
        starts = np.cumsum([0] + [2 * len(rings[i]) for i in same_length[:-1]])
        changed += int((~np.logical_and.reduceat(close, starts)).sum())
    return changed


def _finish(columns, outlines, slide_name, tile, stats) -> NucleusTable:
    """Validates outlines, drops the unrepairable, sorts by centroid, assigns ids."""
    traced = [outlines.get(int(instance_id)) for instance_id in columns["label"]]
    traced = [np.zeros((0, 2)) if points is None else points for points in traced]
    rings = valid_outlines(traced)
    good = np.array([ring is not None for ring in rings], bool)
    repaired = _count_changed(rings, traced)
    columns = {name: np.asarray(values)[good] for name, values in columns.items()}
    rings = [ring for ring in rings if ring is not None]
    order = np.lexsort((columns["centroid_x"], columns["centroid_y"]))
    columns = {name: values[order] for name, values in columns.items()}
    rings = [rings[i] for i in order]
    ids = [nucleus_id(slide_name, x, y)
           for x, y in zip(columns["centroid_x"], columns["centroid_y"])]
    stats = dict(stats, polygons_repaired=repaired, polygons_dropped=int((~good).sum()))
    return NucleusTable(ids, rings, columns, tile=tile.index, stats=stats)
