"""Reading slides and images at a requested µm/px, coordinates always in the level-0 frame.

Backends (chosen by `open_slide(path, backend="auto")`):
- `tifffile` for generic / OME / pyramidal TIFFs and Aperio SVS whose tiles it can decode
  (JPEG, LZW, deflate, …: 4–9× faster than OpenSlide here, pixel-identical on Aperio JPEG
  SVS; it also reads SubIFD/OME pyramids OpenSlide cannot);
- `openslide` for other vendor formats (NDPI, MRXS, …), JPEG 2000 SVS and any TIFF tifffile
  cannot decode;
- `image` for plain PNG/JPEG/BMP files (held in memory).

Geometry: pixel (i, j) of level 0 covers [i, i+1) × [j, j+1) ("corner frame"). `read(x, y,
w, h, downsample)` returns round(w/downsample) × round(h/downsample) pixels whose pixel u has
its centre at level-0 x + (u + 0.5)·downsample, read from the best pyramid level (the coarsest
one not coarser than `downsample`) and resampled with sub-pixel accuracy, so tiles read
separately line up exactly with one read of the whole region.

MPP: the `mpp` argument overrides the file. Otherwise `openslide.mpp-x` or the TIFF
description (Aperio `MPP = `, OME `PhysicalSizeX`), then the TIFF resolution tags (only when
plausible: a 72-dpi default means nothing), then the objective power (10 / power µm/px, with
a warning: "often inaccurate; sometimes missing", OpenSlide docs). `None` when all fail;
`require_mpp` turns that into a clear error for the whole-slide path.

One handle per worker: a `Slide` is not thread-safe (tifffile shares a file position).
"""

import dataclasses
import math
import pathlib
from typing import Optional, Tuple

import cv2
import numpy as np
from absl import logging

from simgan_histo.wsi import backends

IMAGE_SUFFIXES = backends.IMAGE_SUFFIXES
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu",
                  ".bif", ".svslide", ".btf")
TIFF_SUFFIXES = (".tif", ".tiff", ".btf", ".svs")
BACKENDS = ("auto", "openslide", "tifffile", "image")
PLAUSIBLE_MPP = (0.05, 20.0)  # µm/px; outside this a resolution tag is a default, not a scan
SlideReadError = backends.SlideReadError


class MissingMppError(SlideReadError):
    """The slide's µm/px is unknown and no override was given."""


def mpp_from_resolution(resolution: float, unit: str) -> Optional[float]:
    """µm/px from a TIFF resolution tag (pixels per `unit`), None if absent or implausible."""
    unit = (unit or "").lower()
    if not resolution or not np.isfinite(resolution) or resolution <= 0:
        return None
    per_unit_um = {"centimeter": 1e4, "inch": 25400.0, "3": 1e4, "2": 25400.0}.get(unit)
    if per_unit_um is None:
        return None
    mpp = per_unit_um / resolution
    if not PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1]:
        logging.info("ignoring TIFF resolution %.4g px/%s (%.4g µm/px is implausible)",
                     resolution, unit, mpp)
        return None
    return mpp


def mpp_from_objective(power: Optional[float]) -> Optional[float]:
    """The usual objective → µm/px convention (40× ≈ 0.25, 20× ≈ 0.5); a last resort."""
    if power is None or not np.isfinite(power) or power <= 0:
        return None
    return 10.0 / power


def resolve_mpp(metadata: backends.Metadata, override: Optional[float],
                path) -> Tuple[Optional[float], str]:
    """(µm/px, source) from an override or the backend's metadata, in the documented order."""
    if override is not None:
        if not override > 0:
            raise ValueError(f"mpp={override!r}: expected > 0")
        file_mpp = metadata.mpp or mpp_from_resolution(*metadata.resolution)
        if file_mpp and abs(file_mpp - override) > 0.02 * override:
            logging.warning("%s: --mpp=%g overrides the file's %g µm/px", path, override, file_mpp)
        return float(override), "override"
    if metadata.mpp:
        return float(metadata.mpp), metadata.mpp_source
    tag_mpp = mpp_from_resolution(*metadata.resolution)
    if tag_mpp:
        return tag_mpp, "tiff-resolution"
    power_mpp = mpp_from_objective(metadata.objective_power)
    if power_mpp:
        logging.warning("%s: no µm/px in the file; guessing %.3g from objective power %g× "
                        "(often inaccurate: pass --mpp to be sure)", path, power_mpp,
                        metadata.objective_power)
        return power_mpp, "objective-power"
    return None, "unknown"


@dataclasses.dataclass
class Slide:
    """An open slide or image. Use `open_slide`; close it (or use `with`) when done."""

    path: pathlib.Path
    dimensions: Tuple[int, int]  # level-0 (width, height) px
    mpp: Optional[float]  # level-0 µm/px, None if unknown
    backend: str
    mpp_source: str = "unknown"
    _source: object = None  # a backend from `backends`

    @property
    def level_downsamples(self) -> Tuple[float, ...]:
        return self._source.level_downsamples

    @property
    def level_dimensions(self) -> Tuple[Tuple[int, int], ...]:
        return self._source.level_dimensions

    def best_level(self, downsample: float) -> int:
        """The coarsest level whose downsample does not exceed `downsample` (0.1 % slack)."""
        candidates = [i for i, ds in enumerate(self.level_downsamples)
                      if ds <= downsample * 1.001]
        return max(candidates, key=lambda i: self.level_downsamples[i]) if candidates else 0

    def read_level0(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) at level 0; outside the slide reads white."""
        return self.read(x, y, width, height, downsample=1.0)

    def read(self, x: float, y: float, width: float, height: float,
             downsample: float) -> np.ndarray:
        """Level-0 box (x, y, width, height) resampled by 1/downsample, as RGB uint8.

        Args:
          x, y, width, height: the box in level-0 px (floats allowed).
          downsample: level-0 px per output px (< 1 upsamples, e.g. 0.5 for a 20× slide
            processed at 40×).

        Returns:
          (round(height/downsample), round(width/downsample), 3) uint8; white outside.

        Raises:
          SlideReadError: the backend failed (the message names the file and box).
        """
        if not downsample > 0:
            raise ValueError(f"downsample={downsample!r}: expected > 0")
        out_w = max(1, int(round(width / downsample)))
        out_h = max(1, int(round(height / downsample)))
        level = self.best_level(downsample)
        level_ds = self.level_downsamples[level]
        try:
            return _resample(self._source, level, x / level_ds, y / level_ds,
                             downsample / level_ds, out_w, out_h)
        except SlideReadError:
            raise
        except Exception as error:  # backends raise their own error types
            raise SlideReadError(f"{self.path}: cannot read region {(x, y, width, height)} at "
                                 f"level {level}: {error}") from error

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self._source = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _is_near_integer(value: float) -> bool:
    return abs(value - round(value)) < 1e-6


def _resample(source, level: int, level_x: float, level_y: float, scale: float,
              out_w: int, out_h: int) -> np.ndarray:
    """Output pixel u centred at level coordinate level_x + (u + 0.5)·scale (corner frame)."""
    aligned = _is_near_integer(level_x) and _is_near_integer(level_y)
    if aligned and abs(scale - 1.0) < 1e-9:
        return source.read_level(level, int(round(level_x)), int(round(level_y)), out_w, out_h)
    if aligned and scale > 1 and _is_near_integer(scale):
        # Integer shrink on the pixel grid: INTER_AREA is the exact box average.
        factor = int(round(scale))
        region = source.read_level(level, int(round(level_x)), int(round(level_y)),
                                   out_w * factor, out_h * factor)
        return cv2.resize(region, (out_w, out_h), interpolation=cv2.INTER_AREA)
    pad = 3 + int(math.ceil(scale))
    x0, y0 = int(math.floor(level_x)) - pad, int(math.floor(level_y)) - pad
    x1 = int(math.ceil(level_x + out_w * scale)) + pad
    y1 = int(math.ceil(level_y + out_h * scale)) + pad
    region = source.read_level(level, x0, y0, x1 - x0, y1 - y0)
    if scale > 1:
        # Anti-alias before sampling so shrinking by a non-integer factor does not alias.
        region = cv2.GaussianBlur(region, (0, 0), sigmaX=0.5 * (scale - 1.0) + 1e-3)
    matrix = np.array([[scale, 0.0, level_x + 0.5 * scale - 0.5 - x0],
                       [0.0, scale, level_y + 0.5 * scale - 0.5 - y0]], np.float64)
    interpolation = cv2.INTER_CUBIC if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(region, matrix, (out_w, out_h),
                          flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def _choose_backend(path: pathlib.Path, backend: str) -> str:
    if backend != "auto":
        return backend
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return "image"
    if suffix in TIFF_SUFFIXES and backends.tifffile_can_read(path):
        return "tifffile"
    return "openslide"


def open_slide(path, mpp: Optional[float] = None, backend: str = "auto") -> Slide:
    """Opens a slide or a plain image; `mpp` overrides the file's µm/px.

    Args:
      path: the slide or image file.
      mpp: level-0 µm/px to use instead of the file's (None: read it, see module doc).
      backend: "auto", "openslide", "tifffile" or "image".

    Raises:
      SlideReadError: the file is missing, unreadable, corrupt, or not 8-bit RGB.
    """
    path = pathlib.Path(path)
    if backend not in BACKENDS:
        raise ValueError(f"backend={backend!r}: expected one of {BACKENDS}")
    if not path.exists():
        raise SlideReadError(f"{path}: no such file")
    if path.is_dir() and path.suffix.lower() != ".mrxs":
        raise SlideReadError(f"{path}: is a directory, expected a slide file")
    chosen = _choose_backend(path, backend)
    if chosen == "tifffile":
        source = backends.TiffBackend(path)
    elif chosen == "openslide":
        source = backends.open_with_openslide(path)
    else:
        source = backends.ArrayBackend(path)
    slide_mpp, mpp_source = resolve_mpp(source.metadata, mpp, path)
    return Slide(path, tuple(source.level_dimensions[0]), slide_mpp, source.name, mpp_source,
                 source)


def require_mpp(slide: Slide) -> float:
    """The slide's µm/px, or MissingMppError telling the user how to supply it."""
    if slide.mpp is None:
        raise MissingMppError(
            f"{slide.path}: the file records no µm/px (no openslide.mpp-x, MPP in the TIFF "
            f"description, plausible resolution tag or objective power). Pass --mpp=<µm/px> "
            f"(e.g. 0.25 for a 40× scan, 0.5 for 20×).")
    return slide.mpp
