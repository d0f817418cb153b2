"""One tissue tile prepared for synthesis (paper Fig. 3, left half), done once and cached.

Per tile, once: HED deconvolution; Otsu on the hematoxylin (H) channel; the
*super-segmentation* (a band of high H that contains every nucleus) inpainted away with Telea
into a nucleus-free background; the *sub-segmentation* (a band inside the nuclei) whose mean
RGB is the nuclear colour; the eosin texture; the tissue map (where nuclei may go); the
density that drives the release's nucleus count; and, with `count_source="classical"`, the
centres of the nuclei the classical baseline finds (≈ 2–5 s per 1000² tile), whose count
per canvas sets the patch's (with `layout_source="classical"`, their outlines, which
replace the random polygons). The release redid all of this for every patch
(≈ 23 ms of Telea per 200² patch); here every patch is a cheap crop of these arrays.

Deviations from the release, each on purpose (DESIGN §7):
- Otsu and the band percentiles use tissue pixels only, so a tile with glass in it does not
  get its whole tissue area called "nuclear" and inpainted.
- The super-segmentation is closed (`inpaint_closing_px`) and its enclosed holes up to
  `inpaint_fill_holes_px` are filled: pale vesicular nuclei are a dark rim around a pale
  interior, and the release's band removed the rim but left the pale interior in the
  background, teaching that pale nuclei are background. It is then opened
  (`inpaint_opening_px`): H-band strands and specks narrower than that (purple fibres,
  debris) are not clearly nuclear and stay in the background. Last it is grown by
  `inpaint_dilate_px`: Telea fills from the pixels just outside the mask, and the dark
  nuclear rims there made every fill a darker, nucleus-shaped ghost (L ≈ 10 below the kept
  background). All four 0 reproduce the release. Inpainted share of the 30 MoNuSeg train
  images: release 26.5 %, these defaults 32.9 % (14–60 %), the earlier 5-px closing without
  opening 36.8 %; DESIGN §7 measured false nuclei on purple tissue at 46 %. The Otsu-Dice
  realism check falls with the share (0.65 for the release's band, 0.72 here, 0.76 at 37 %).
- Purple non-nuclear tissue outside that band is kept as background on purpose.
- Telea's flat fills get the fine grain of the surrounding tissue (`_add_grain`), so an
  inpainted nucleus does not leave a smooth, nucleus-shaped ghost labelled background.
"""

import dataclasses

import cv2
import numpy as np
from skimage import color as skcolor
from skimage import filters

from simgan_histo import stain
from simgan_histo.postprocess import raster
from simgan_histo.synthesis import layout as layout_lib
from simgan_histo.synthesis import polygons

REASONS = ("unreadable", "unsupported", "grayscale", "too_small", "no_tissue", "too_pale")
_LOG_FLOOR = np.log(1e-6)  # skimage.color.rgb2hed's floor and scale
_OD_LOOKUP = (np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / _LOG_FLOOR).astype(np.float32)
_HED_FROM_RGB = skcolor.hed_from_rgb.astype(np.float32)
TISSUE_BLOCK_PX = 35  # release cyto_mask: a 13×13 grid over a 460² canvas
GLASS_GRAY = 232  # neighbourhood mean gray above this is glass, not tissue
GLASS_BLOCK_PX = 9  # neighbourhood of the glass test
TISSUE_STEP_PX = 4  # resolution of the tissue integral image used to pick crops
GRAIN_SIGMA_PX = 3.0  # high-pass scale of the grain added to inpainted pixels
# Where a filled pixel takes its grain from (tried in order), relative to the pixel.
GRAIN_SHIFTS_PX = ((37, 61), (-53, 29), (71, -43), (-29, -67), (97, 13), (-11, 89),
                   (131, -97), (-113, -127))


class TileRejected(ValueError):
    """A tile unfit for synthesis; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason, self.detail = reason, detail

    def __reduce__(self):  # crosses process boundaries (spawn pool)
        return type(self), (self.reason, self.detail)


@dataclasses.dataclass
class PreparedTile:
    """A tissue tile at the working µm/px and everything synthesis crops from it."""

    name: str
    rgb: np.ndarray  # (H, W, 3) uint8, the tile itself (reference patches, real pairs)
    background: np.ndarray  # (3, H, W) uint8 planes, nuclei inpainted away
    background_mean: np.ndarray  # (3,) float32 mean RGB of `background`
    stain: np.ndarray  # (2, H, W) uint8 H and E of `background`, quantised (stain jitter)
    stain_scale: np.ndarray  # (2,) float32: H/E concentration = stain · stain_scale
    eosin: np.ndarray  # (H, W) uint8 eosin channel of the tile, 1st..99th pct → 0..255
    tissue: np.ndarray  # (H, W) uint8 1 where nuclei may be placed
    nuclear_colour: np.ndarray  # (3,) float32 mean RGB of the sub-segmentation
    colour_by_h: np.ndarray  # (100, 3) float32 mean RGB per H percentile (distractor colour)
    nuclear_percentile: float  # H percentile where the sub-segmentation starts
    density: float  # release dense_lvl: Otsu-foreground fraction of H / density_divisor
    inpainted_fraction: float
    tissue_fraction: float
    background_lab: tuple = ()  # (mean, std) LAB of the tile outside the super-segmentation
    tissue_integral: np.ndarray = None  # integral image of `tissue` at 1/TISSUE_STEP_PX
    # (K, 2) x, y centres of the classical baseline's nuclei (count_source "classical" only)
    nucleus_centres: np.ndarray = None
    layout: layout_lib.Layout = None  # nuclei as polygons (layout_source "classical", "net")

    @property
    def shape(self):
        return self.rgb.shape[:2]

    def tissue_share(self, x: int, y: int, size: int) -> float:
        """Approximate share of tissue in the square crop at (x, y) (1/4-resolution sums)."""
        x0, y0 = x // TISSUE_STEP_PX, y // TISSUE_STEP_PX
        x1, y1 = (x + size) // TISSUE_STEP_PX, (y + size) // TISSUE_STEP_PX
        table = self.tissue_integral
        total = table[y1, x1] - table[y0, x1] - table[y1, x0] + table[y0, x0]
        return float(total) / max(1, (x1 - x0) * (y1 - y0))

    def nuclei_in(self, x: int, y: int, size: int) -> int:
        """Classical-baseline nuclei whose centre lies in the square crop at (x, y)."""
        if self.nucleus_centres is None:
            raise ValueError(f"{self.name}: prepared without nucleus centres "
                             f"(SynthesisConfig.count_source is not 'classical')")
        cx, cy = self.nucleus_centres[:, 0], self.nucleus_centres[:, 1]
        return int(np.count_nonzero((cx >= x) & (cx < x + size) & (cy >= y) & (cy < y + size)))


# The classical count's h-maxima height and distance smoothing (µm). The baseline's own two
# were picked on MoNuSeg train labels, which hold Kumar's test images; these were chosen on
# synthetic patches against their own instance maps, with no real label
# (benchmarks/count_settings.py: count error 0.161 vs 0.213 with the baseline's, BENCHMARKS.md).
COUNT_H_UM, COUNT_SMOOTH_UM = 0.0625, 0.125


def classical_labels(rgb: np.ndarray, mpp: float) -> np.ndarray:
    """The instances the classical Otsu-H + watershed baseline finds (`evaluation.baseline`,
    with the count's settings above; no labels)."""
    # Imported here: only the "classical" count and layout need it, and it adds ≈ 0.13 s
    # (skimage segmentation) to every synthesis import, spawned workers included.
    from simgan_histo.evaluation import baseline  # pylint: disable=import-outside-toplevel
    settings = baseline.ClassicalConfig(h_um=COUNT_H_UM, distance_smooth_um=COUNT_SMOOTH_UM)
    return baseline.segment(rgb, mpp, settings)


def classical_centres(rgb: np.ndarray, mpp: float, labels=None) -> np.ndarray:
    """(K, 2) float32 x, y centroids of the classical baseline's nuclei (`classical_labels`,
    or `labels` if given): a count that follows the real one, unlike the release's
    H-foreground area."""
    if labels is None:
        labels = classical_labels(rgb, mpp)
    if int(labels.max()) == 0:
        return np.zeros((0, 2), np.float32)
    rows, cols = raster.centroids(labels)
    return np.stack([cols[1:], rows[1:]], axis=1).astype(np.float32)


def hed(rgb: np.ndarray) -> np.ndarray:
    """skimage.color.rgb2hed in float32 via a 256-entry log table (≈ 10× faster)."""
    density = _OD_LOOKUP[rgb]
    stains = cv2.transform(density, _HED_FROM_RGB.T)
    return np.maximum(stains, 0.0)


def tissue_map(rgb: np.ndarray, std_threshold: float) -> np.ndarray:
    """uint8 map, 1 on tissue: the block-wise colour std reaches `std_threshold` (release
    cyto_mask: 35-px blocks, >= 8.0) and the pixel's neighbourhood is not glass.

    The release smoothed its block grid by 3×3 blocks, which reaches ≈ 50 px into the glass
    beside the tissue; nuclei and distractors landed on glass. The glass test here is local
    (GLASS_BLOCK_PX), so the map follows the tissue edge.
    """
    pixels = rgb.astype(np.float32)
    size = (TISSUE_BLOCK_PX, TISSUE_BLOCK_PX)
    mean = cv2.blur(pixels, size)
    variance = np.maximum(cv2.blur(pixels * pixels, size) - mean * mean, 0.0)
    spread = np.sqrt(variance).mean(axis=2)
    gray = cv2.blur(pixels.mean(axis=2), (GLASS_BLOCK_PX, GLASS_BLOCK_PX))
    return ((spread >= std_threshold) & (gray <= GLASS_GRAY)).astype(np.uint8)


def is_grayscale(rgb: np.ndarray, tolerance: int = 3) -> bool:
    """True when R, G and B agree within `tolerance` on 99 % of the pixels."""
    sample = rgb[::4, ::4].astype(np.int16)
    spread = np.abs(sample - sample.mean(axis=2, keepdims=True)).max(axis=2)
    return float((spread <= tolerance).mean()) >= 0.99


def otsu_percentile(values: np.ndarray, trim: float = 0.5) -> float:
    """Share (%) of `values` below their Otsu threshold, the threshold computed without
    the lowest and highest `trim` %: a few extreme pixels (pen, dust, debris) otherwise
    squeeze the bulk into a few histogram bins and Otsu splits off the outliers
    (the release's min-max scaling had that failure)."""
    low, high = np.percentile(values, [trim, 100.0 - trim])
    inner = values[(values >= low) & (values <= high)]
    if inner.size == 0 or float(inner.max() - inner.min()) <= 0.0:
        return 100.0
    return float((values < filters.threshold_otsu(inner)).mean() * 100.0)


def _fill_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """`mask` with its enclosed holes of at most `max_area` px filled."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (mask == 0).astype(np.uint8), connectivity=4)
    height, width = mask.shape
    x, y, w, h, area = (stats[:, i] for i in range(5))
    border = (x == 0) | (y == 0) | (x + w == width) | (y + h == height)
    hole = (area <= max_area) & ~border
    hole[0] = False  # label 0 is the mask itself
    return (mask > 0) | hole[labels]


def super_segmentation(hematoxylin: np.ndarray, threshold: float, config) -> np.ndarray:
    """Pixels to inpaint (uint8 0/1): H above `threshold`, smoothed (σ 0.5, release), closed
    (`inpaint_closing_px`), enclosed holes filled (`inpaint_fill_holes_px`), opened
    (`inpaint_opening_px`: strands and specks narrower than that are not clearly nuclear and
    stay as background texture), dilated (`inpaint_dilate_px`)."""
    mask = cv2.GaussianBlur((hematoxylin > threshold).astype(np.float32), (0, 0), 0.5) > 0.5
    mask = mask.astype(np.uint8)
    if config.inpaint_closing_px > 1:
        size = config.inpaint_closing_px
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)
    if config.inpaint_fill_holes_px > 0:
        mask = _fill_holes(mask, config.inpaint_fill_holes_px).astype(np.uint8)
    if config.inpaint_opening_px > 1:
        size = config.inpaint_opening_px
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
    if config.inpaint_dilate_px > 0:
        size = 2 * config.inpaint_dilate_px + 1
        mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)))
    return mask.astype(np.uint8)


@dataclasses.dataclass
class _Bands:
    """The per-tile hematoxylin analysis (Otsu on tissue H and the release's bands)."""

    tissue: np.ndarray  # (H, W) uint8 tissue map
    stains: np.ndarray  # (H, W, 3) float32 HED
    otsu: float  # Otsu percentile of tissue H
    low: float  # super-segmentation threshold on H
    nuclear: float  # sub-segmentation band [nuclear, high] on H
    high: float


def _bands(rgb: np.ndarray, config) -> _Bands:
    tissue = tissue_map(rgb, config.tissue_std_threshold)
    stains = hed(rgb)
    tissue_h = stains[..., 0][tissue > 0]
    otsu = otsu_percentile(tissue_h) if tissue_h.size else 100.0
    low, nuclear, high = (np.percentile(tissue_h, [
        100.0 - (100.0 - otsu) * config.super_segmentation_factor,
        100.0 - (100.0 - otsu) * config.sub_segmentation_factor, 99.0])
        if tissue_h.size else (np.inf,) * 3)
    return _Bands(tissue, stains, otsu, float(low), float(nuclear), float(high))


def inpaint_mask(rgb: np.ndarray, config) -> np.ndarray:
    """The super-segmentation `prepare_tile` inpaints (uint8 0/1), without the inpainting."""
    bands = _bands(rgb, config)
    return super_segmentation(bands.stains[..., 0], bands.low, config)


def _add_grain(background: np.ndarray, inpainted: np.ndarray) -> np.ndarray:
    """Telea fills are flat and streaky; give each filled pixel the fine grain (high-pass)
    of kept tissue: of the first of a few fixed offsets whose source pixel was not
    inpainted (a large fill would otherwise copy the grain of another fill, i.e. none)."""
    pixels = background.astype(np.float32)
    grain = pixels - cv2.GaussianBlur(pixels, (0, 0), GRAIN_SIGMA_PX)
    need = inpainted > 0
    kept = ~need
    added = np.zeros_like(pixels)
    for shift in GRAIN_SHIFTS_PX:
        if not need.any():
            break
        take = need & np.roll(kept, shift, axis=(0, 1))
        added[take] = np.roll(grain, shift, axis=(0, 1))[take]
        need &= ~take
    pixels += added
    return np.clip(pixels + 0.5, 0, 255).astype(np.uint8)


def _colour_by_percentile(rgb: np.ndarray, values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(100, 3) mean RGB of the tissue pixels in each percentile bin of `values`."""
    selected = values[where]
    edges = np.percentile(selected, np.arange(1, 100))
    bins = np.searchsorted(edges, selected)
    counts = np.maximum(np.bincount(bins, minlength=100), 1)
    pixels = rgb[where].astype(np.float64)
    means = [np.bincount(bins, weights=pixels[:, c], minlength=100) / counts for c in range(3)]
    return np.stack(means, axis=1).astype(np.float32)


def _quantised_stain(background: np.ndarray) -> dict:
    """H and E of the background as uint8 planes and their scales (error < 0.2 % of range)."""
    planes = hed(background)[..., :2].transpose(2, 0, 1)
    scale = np.maximum(planes.reshape(2, -1).max(axis=1), 1e-6) / 255.0
    quantised = np.round(planes / scale[:, None, None]).astype(np.uint8)
    return {"stain": quantised, "stain_scale": scale.astype(np.float32)}


def min_long_side(config) -> int:
    """A tile holds the patch with its synthesis margin and, beside it, a disjoint
    reference crop: 2 × patch + margin along one side."""
    return 2 * config.patch_size + config.margin_px


def prepare_tile(rgb: np.ndarray, config, name: str = "tile") -> PreparedTile:
    """Runs the per-tile work once (see the module docstring).

    Raises:
      TileRejected: too small for a patch plus a non-overlapping reference, grayscale,
        without enough tissue, or with a too pale nuclear colour (release: min RGB > 100).
    """
    height, width = rgb.shape[:2]
    canvas = config.patch_size + 2 * config.margin_px
    if min(height, width) < canvas or max(height, width) < min_long_side(config):
        raise TileRejected("too_small", f"{name}: {width}×{height} px, need one side >= "
                           f"{min_long_side(config)} and both >= {canvas}")
    bands = _bands(rgb, config)
    tissue, stains, otsu = bands.tissue, bands.stains, bands.otsu
    tissue_fraction = float(tissue.mean())
    if tissue_fraction < config.min_tissue_fraction:
        raise TileRejected("no_tissue", f"{name}: tissue covers {tissue_fraction:.0%} "
                           f"< {config.min_tissue_fraction:.0%}")
    if is_grayscale(rgb):
        raise TileRejected("grayscale", f"{name}: R, G and B are equal (not H&E)")
    on_tissue = tissue > 0
    hematoxylin = stains[..., 0]
    sub = on_tissue & (hematoxylin >= bands.nuclear) & (hematoxylin <= bands.high)
    if not sub.any():
        raise TileRejected("no_tissue", f"{name}: no hematoxylin contrast (flat H channel)")
    nuclear_colour = rgb[sub].mean(axis=0).astype(np.float32)
    if nuclear_colour.min() > config.pale_tile_threshold:
        raise TileRejected("too_pale", f"{name}: nuclear colour {nuclear_colour.round()} "
                           f"has min > {config.pale_tile_threshold}")
    inpaint = super_segmentation(hematoxylin, bands.low, config)
    background = _add_grain(cv2.inpaint(rgb, inpaint, config.inpaint_radius,
                                        cv2.INPAINT_TELEA), inpaint)
    classical = (classical_labels(rgb, config.mpp) if "classical" in
                 (config.count_source, config.layout_source) else None)
    eosin = stains[..., 1]
    e_low, e_high = np.percentile(eosin[::2, ::2], [1, 99])
    eosin = np.clip((eosin - e_low) * (255.0 / max(e_high - e_low, 1e-6)), 0, 255)
    return PreparedTile(
        name=name, rgb=rgb, background=np.ascontiguousarray(background.transpose(2, 0, 1)),
        background_mean=background.reshape(-1, 3).mean(axis=0).astype(np.float32),
        **_quantised_stain(background),
        eosin=(eosin + 0.5).astype(np.uint8), tissue=tissue,
        nuclear_colour=nuclear_colour,
        colour_by_h=_colour_by_percentile(rgb, hematoxylin, on_tissue),
        nuclear_percentile=100.0 - (100.0 - otsu) * config.sub_segmentation_factor,
        density=(100.0 - otsu) / 100.0 / config.density_divisor,
        inpainted_fraction=float(inpaint.mean()), tissue_fraction=tissue_fraction,
        background_lab=stain.lab_stats(rgb, inpaint == 0),
        tissue_integral=cv2.integral(np.ascontiguousarray(
            tissue[::TISSUE_STEP_PX, ::TISSUE_STEP_PX])),
        nucleus_centres=(classical_centres(rgb, config.mpp, classical)
                         if config.count_source == "classical" else None),
        layout=(layout_lib.from_labels(classical, polygons.max_vertices(config))
                if config.layout_source == "classical" else None))
