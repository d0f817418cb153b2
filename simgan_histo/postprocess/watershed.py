"""Marker watershed: instance labels from the task net's segmentation and detection maps.

The release's `seg_with_watershed.py` (released-code-notes §1(d)), vectorised:

1. Seeds (`seeds.py`): Gaussian(σ = det_sigma) of the detection map > det_threshold,
   connected components (8-connected); each component's seed is its bounding-box centre
   (as in the release).
   With `seed_h` > 0, "distance seeds" instead: the same centres of the h-maxima (height
   `seed_h` px) of the foreground's distance transform (Gaussian σ 1), the classical rule,
   which ignores the detection map: one seed per convex blob, however weak its detection.
2. Foreground: Gaussian(σ = seg_sigma) of the segmentation map > seg_threshold.
3. Seed recall: every foreground component that holds no seed (and is smaller than
   max_area_px) gets one at its segmentation maximum, so no nucleus is lost for want of a
   detection.
4. Markers = connected components of the seeds dilated 3×3; skimage
   `watershed(−seg, markers, mask=foreground, compactness)`, run one foreground component at
   a time (`flood`): a component holding one marker is that marker's, the others are
   flooded on their bounding-box crop. With `flood_on="detection"` the smoothed detection
   map is flooded instead (for a net whose detection head learned the inner distance);
   with "distance", the foreground's smoothed distance transform (classical);
   with "hv", the smoothed segmentation map × (1 − the hv maps' boundary energy), so
   touching nuclei are cut where the hv maps fall (`training/hv_target.py`).
   With `distance_fill_holes`, the distance transform (of distance seeds and the
   "distance" flood) is taken of the foreground with its holes filled, as the classical
   rule fills them: a vesicular nucleus's pale interior dips below the threshold, and its
   holes would give the transform several maxima, so distance seeds would split it. The
   mask keeps its holes, so a gap enclosed by several nuclei stays background.
5. Holes inside one instance are filled; with `merge_solidity`, touching instances whose
   union is convex are merged (`convex_merge.py`); instances outside [min_area_px,
   max_area_px] are dropped, and with `min_hematoxylin` those whose mean hematoxylin optical
   density on the model's input image is below it (pale false objects on stroma,
   `drop_pale`); ids are made consecutive.

No step loops over nuclei in Python, except the distance seeds' h-maxima of components with
several local maxima (`seeds.distance_seeds`): per-component quantities come from labelled
reductions and numpy lookup tables.
"""

import dataclasses
from typing import Optional

import numpy as np
from scipy import ndimage
from skimage import segmentation as sk_segmentation

from simgan_histo import stain
from simgan_histo.config import FLOOD_SURFACES
from simgan_histo.postprocess import convex_merge, raster
from simgan_histo.postprocess import seeds as seed_rules
from simgan_histo.postprocess.raster import gaussian
from simgan_histo.training import hv_target


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Watershed settings; defaults are the release's `run_wsi_seg_nuclei.sh` values."""

    seg_threshold: float = 0.33  # foreground probability (release seg_thres)
    det_threshold: float = 0.07  # seed probability after smoothing (release det_thres)
    det_sigma: float = 1.0  # Gaussian σ on the detection map, px (release)
    seg_sigma: float = 0.5  # Gaussian σ on the segmentation map, px (release)
    min_area_px: int = 20  # release min_nucleus_size
    max_area_px: int = 65536  # release max_nucleus_size
    compactness: float = 1.0  # skimage watershed compactness (release)
    flood_on: str = "segmentation"  # the map whose valleys split touching nuclei (release)
    min_hematoxylin: float = 0.0  # least mean H optical density of an instance; 0 = off
    merge_solidity: float = 0.0  # merge touching instances with a union this convex; 0 = off
    seed_h: float = 0.0  # > 0: seeds at distance-transform h-maxima of this height, px
    distance_fill_holes: bool = False  # distance transform of the hole-filled foreground

    def __post_init__(self):
        for name in ("seg_threshold", "det_threshold", "merge_solidity"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"Thresholds.{name}={value!r}: expected in [0, 1]")
        for name in ("det_sigma", "seg_sigma", "min_area_px", "compactness", "min_hematoxylin",
                     "seed_h"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"Thresholds.{name}={value!r}: expected >= 0")
        if not isinstance(self.distance_fill_holes, (bool, np.bool_)):
            raise ValueError(f"Thresholds.distance_fill_holes={self.distance_fill_holes!r}: "
                             f"expected true or false")
        if self.flood_on not in FLOOD_SURFACES:
            raise ValueError(f"Thresholds.flood_on={self.flood_on!r}: expected one of "
                             f"{FLOOD_SURFACES}")
        if self.max_area_px <= self.min_area_px:
            raise ValueError(f"Thresholds.max_area_px={self.max_area_px!r}: expected > "
                             f"min_area_px ({self.min_area_px})")

    @classmethod
    def from_task_config(cls, task_config) -> "Thresholds":
        """The thresholds held by a `config.TaskConfig`."""
        return cls(**{f.name: getattr(task_config, f.name) for f in dataclasses.fields(cls)})

    @classmethod
    def from_json(cls, data: dict) -> "Thresholds":
        """From the `thresholds` object of `inference.json`; missing keys keep the defaults."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"thresholds: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**data)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def reads_detection(self) -> bool:
        """Whether the detection map (and so det_threshold, det_sigma) affects the labels:
        distance seeds ignore it unless it is the flooded map."""
        return self.seed_h == 0 or self.flood_on == "detection"

    def replace(self, **overrides) -> "Thresholds":
        """A copy with the non-None `overrides` applied."""
        return dataclasses.replace(
            self, **{k: v for k, v in overrides.items() if v is not None})


def _smooth(probability: np.ndarray, sigma: float) -> np.ndarray:
    return gaussian(probability, sigma)


def flood(seg: np.ndarray, foreground: np.ndarray, markers: np.ndarray,
          compactness: float) -> np.ndarray:
    """skimage's `watershed(−seg, markers, mask=foreground, compactness)`, component-wise.

    The flood moves between 4-neighbours inside the mask only, so each 4-connected
    foreground component is flooded by the markers inside it alone: one holding no marker
    stays 0, one holding a single marker id becomes that id (every pixel is reachable from
    it), and only those with several markers (about 40 % of the foreground on dense H&E) need
    the priority-queue flood, on their own bounding-box crop. About 3× faster than one call
    on the whole tile. Equal to it except where two markers' fronts reach a pixel at exactly
    equal priority: skimage breaks such ties by its heap's history, which here holds one
    component instead of the whole tile (so a nucleus's split no longer depends on the rest
    of the tile).
    """
    components, count = raster.components(foreground, 4)  # skimage's connectivity=1
    pixels = np.flatnonzero(foreground.ravel() & (markers.ravel() > 0))
    base = int(markers.max()) + 1
    pairs = np.unique(components.ravel()[pixels].astype(np.int64) * base
                      + markers.ravel()[pixels])
    owner, marker = np.divmod(pairs, base)
    per_component = np.bincount(owner, minlength=count + 1)
    single = np.zeros(count + 1, np.int32)
    alone = per_component[owner] == 1
    single[owner[alone]] = marker[alone]
    out = single[components]
    crowded = np.nonzero(per_component >= 2)[0]
    boxes = ndimage.find_objects(components) if len(crowded) else []
    for component in crowded:
        box = boxes[component - 1]
        inside = components[box] == component
        flooded = sk_segmentation.watershed(-seg[box], markers[box], mask=inside,
                                            compactness=compactness)
        out[box][inside] = flooded[inside]
    return out


def fill_instance_holes(labels: np.ndarray) -> np.ndarray:
    """Fills every hole that lies wholly inside one instance with that instance's id.

    A hole (a 4-connected background region off the image border) is filled only if every
    pixel around it belongs to the same instance; gaps enclosed by several touching nuclei
    stay background, as with the release's per-nucleus `binary_fill_holes`.
    """
    background, count = raster.components(labels == 0, 4)
    if count == 0:
        return labels
    is_hole = np.ones(count + 1, bool)
    is_hole[0] = False
    is_hole[np.concatenate([background[0], background[-1], background[:, 0],
                            background[:, -1]])] = False
    hole_pixels = np.flatnonzero(is_hole[background])
    if len(hole_pixels) == 0:
        return labels
    rows, cols = np.unravel_index(hole_pixels, labels.shape)
    owner = background[rows, cols]
    # A hole's 4-neighbours are hole pixels or instance pixels (holes never touch the border).
    low = np.full(count + 1, np.iinfo(np.int64).max)
    high = np.zeros(count + 1, np.int64)
    for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        around = labels[rows + d_row, cols + d_col].astype(np.int64)
        rim = around > 0
        np.minimum.at(low, owner[rim], around[rim])
        np.maximum.at(high, owner[rim], around[rim])
    fill = np.where(low == high, high, 0).astype(labels.dtype)
    out = labels.copy()
    out.ravel()[hole_pixels] = fill[owner]
    return out


def filter_by_area(labels: np.ndarray, min_area_px: int, max_area_px: int) -> np.ndarray:
    """Drops instances with area outside [min_area_px, max_area_px]; ids become 1..N (uint32)."""
    areas = np.bincount(labels.ravel())
    return _keep(labels, (areas >= min_area_px) & (areas <= max_area_px))


def _keep(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """The instances whose `keep[id]` is True, renumbered 1..N (uint32)."""
    keep[0] = False
    lookup = np.zeros(len(keep), np.uint32)
    lookup[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.uint32)
    return lookup[labels]


def hematoxylin(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 hematoxylin optical density of a uint8 RGB image (`stain.hed`)."""
    return stain.hed(np.asarray(rgb, np.uint8))[..., 0]


def mean_hematoxylin(labels: np.ndarray, density: np.ndarray) -> np.ndarray:
    """(N + 1,) mean of `density` (`hematoxylin(rgb)`) over ids 0..N (0 = background)."""
    labels = np.asarray(labels)
    if np.shape(density) != labels.shape:
        raise ValueError(f"mean_hematoxylin: density {np.shape(density)} and labels "
                         f"{labels.shape} differ in size")
    return raster.id_means(labels, density, int(labels.max()) + 1)


def drop_pale(labels: np.ndarray, density: np.ndarray, min_hematoxylin: float) -> np.ndarray:
    """Drops instances whose mean hematoxylin density (`density`, `hematoxylin(rgb)`) is
    below `min_hematoxylin`; ids become 1..N (uint32)."""
    return _keep(labels, mean_hematoxylin(labels, density) >= min_hematoxylin)


def instances_from_maps(segmentation: np.ndarray, detection: np.ndarray,
                        thresholds: Optional[Thresholds] = None,
                        hv: Optional[np.ndarray] = None,
                        image: Optional[np.ndarray] = None) -> np.ndarray:
    """Instance labels from the two probability maps (module docstring for the steps).

    Args:
      segmentation: (H, W) nuclear-pixel probability in [0, 1] (a trailing 1-channel axis
        is accepted).
      detection: (H, W) nucleus-centre probability in [0, 1], same shape.
      thresholds: watershed settings; default the release's.
      hv: (H, W, 2) horizontal and vertical maps of a net with the hv head; needed (and
        only read) when `thresholds.flood_on` is "hv".
      image: (H, W, 3) uint8 RGB the maps were predicted from (after stain normalisation);
        needed (and only read) when `thresholds.min_hematoxylin` > 0.

    Returns:
      (H, W) uint32 instance ids, 0 = background, 1..N consecutive.

    Raises:
      ValueError: if the maps are not 2-D or differ in shape, "hv" is flooded without hv
        maps, or pale instances are to be dropped without the image.
    """
    thresholds = thresholds or Thresholds()
    segmentation, detection = (np.squeeze(np.asarray(m), axis=-1) if np.ndim(m) == 3
                               and np.shape(m)[-1] == 1 else np.asarray(m)
                               for m in (segmentation, detection))
    if segmentation.ndim != 2 or segmentation.shape != detection.shape:
        raise ValueError(f"instances_from_maps: expected two (H, W) maps of one shape, got "
                         f"{segmentation.shape} and {detection.shape}")
    seg = _smooth(segmentation, thresholds.seg_sigma)
    det = _smooth(detection, thresholds.det_sigma) if thresholds.reads_detection else None
    foreground = seg > thresholds.seg_threshold
    distance = None
    if thresholds.seed_h > 0 or thresholds.flood_on == "distance":
        distance = seed_rules.distance_map(ndimage.binary_fill_holes(foreground)
                                           if thresholds.distance_fill_holes else foreground)
    if thresholds.seed_h > 0:
        seeds = seed_rules.distance_seeds(distance, foreground, thresholds.seed_h)
    else:
        seeds = seed_rules.detection_seeds(det, thresholds.det_threshold)
    seeds = seeds[foreground[seeds[:, 0], seeds[:, 1]]]  # a seed off the mask floods nothing
    seeds = np.concatenate(
        [seeds, seed_rules.recalled_seeds(seg, foreground, seeds, thresholds.max_area_px)])
    markers = seed_rules.markers(seg.shape, seeds)
    if thresholds.flood_on == "hv":
        if hv is None or np.shape(hv) != seg.shape + (2,):
            raise ValueError(f"instances_from_maps: flood_on='hv' needs (H, W, 2) hv maps of "
                             f"the segmentation's {seg.shape}, got "
                             f"{None if hv is None else np.shape(hv)}")
        surface = seg * (1.0 - hv_target.boundary_energy(hv))
    else:
        surface = {"segmentation": seg, "detection": det,
                   "distance": distance}[thresholds.flood_on]
    labels = flood(surface, foreground, markers, thresholds.compactness)
    labels = fill_instance_holes(labels.astype(np.uint32))
    labels = convex_merge.merge_convex(labels, thresholds.merge_solidity)
    labels = filter_by_area(labels, thresholds.min_area_px, thresholds.max_area_px)
    if thresholds.min_hematoxylin > 0:
        if image is None:
            raise ValueError("instances_from_maps: min_hematoxylin > 0 needs the RGB image "
                             "the maps were predicted from")
        labels = drop_pale(labels, hematoxylin(image), thresholds.min_hematoxylin)
    return labels
