"""Writing OpenSlide-readable pyramidal TIFFs from an RGB array (tests, benchmarks, demos).

OpenSlide reads pyramids stored as successive tiled IFDs (not SubIFD or OME pyramids,
DESIGN §4). With an Aperio-style ImageDescription (`Aperio Image Library …|MPP = 0.25`) it
detects the `aperio` vendor and reports `openslide.mpp-x`; without one it reads the file as
`generic-tiff` and takes the scale from the resolution tags (`tiff.XResolution`). We write
both, so either reader finds the µm/px. Each level halves the previous one (INTER_AREA) until
the longer side fits in `min_level_px`.
"""

import os
import pathlib
from typing import List, Optional

import cv2
import numpy as np

COMPRESSIONS = ("jpeg", "deflate", "none")


def aperio_description(width: int, height: int, tile_px: int, mpp: Optional[float],
                       app_mag: Optional[float], compression: str, quality: int) -> str:
    """An ImageDescription OpenSlide's aperio driver accepts; MPP/AppMag only when known."""
    fields = [f"Aperio Image Library v12.0.15 \r\n{width}x{height} [0,0 {width}x{height}] "
              f"({tile_px}x{tile_px}) {compression.upper()}/RGB Q={quality}"]
    if app_mag is not None:
        fields.append(f"AppMag = {app_mag:g}")
    if mpp is not None:
        fields.append(f"MPP = {mpp:.6g}")
    fields.append("Filename = simgan_histo pyramid")
    return "|".join(fields)


def pyramid_levels(rgb: np.ndarray, min_level_px: int) -> List[np.ndarray]:
    """Level 0 and its successive 2× reductions until the longer side is <= min_level_px."""
    levels = [rgb]
    while max(levels[-1].shape[:2]) > min_level_px and min(levels[-1].shape[:2]) >= 2:
        previous = levels[-1]
        size = (previous.shape[1] // 2, previous.shape[0] // 2)
        levels.append(cv2.resize(previous, size, interpolation=cv2.INTER_AREA))
    return levels


def write_pyramid(path, rgb: np.ndarray, mpp: Optional[float], *, tile_px: int = 256,
                  compression: str = "jpeg", quality: int = 90, aperio: bool = True,
                  app_mag: Optional[float] = None, min_level_px: int = 512) -> pathlib.Path:
    """Writes `rgb` as a tiled pyramidal TIFF, atomically (temporary file, then rename).

    Args:
      path: output file (`.tif` or `.svs`).
      rgb: (H, W, 3) uint8 level-0 pixels.
      mpp: level-0 µm/px, or None to record no scale at all (for missing-MPP tests).
      tile_px: tile side (a multiple of 16, as TIFF requires).
      compression: "jpeg" (lossy, like most scanners), "deflate" or "none" (lossless).
      quality: JPEG quality.
      aperio: write the Aperio-style description (OpenSlide vendor `aperio`); False gives a
        `generic-tiff` that carries its scale only in the resolution tags.
      app_mag: objective power recorded as `AppMag` (Aperio only), e.g. 40.
      min_level_px: stop adding levels once the longer side fits in this.

    Returns:
      The written path.
    """
    import tifffile  # pylint: disable=import-outside-toplevel

    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"rgb: expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
    if compression not in COMPRESSIONS:
        raise ValueError(f"compression={compression!r}: expected one of {COMPRESSIONS}")
    if tile_px % 16:
        raise ValueError(f"tile_px={tile_px}: expected a multiple of 16 (TIFF tiles)")
    path = pathlib.Path(path)
    height, width = rgb.shape[:2]
    description = (aperio_description(width, height, tile_px, mpp, app_mag, compression,
                                       quality) if aperio else None)
    options = {"jpeg": dict(compression="jpeg", compressionargs={"level": quality}),
               "deflate": dict(compression="zlib", predictor=True),
               "none": {}}[compression]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tifffile.TiffWriter(str(tmp), bigtiff=rgb.nbytes > 2 ** 31) as writer:
            for index, level in enumerate(pyramid_levels(rgb, min_level_px)):
                scale = {}
                if mpp is not None:
                    level_mpp = mpp * width / level.shape[1]
                    scale = dict(resolution=(1e4 / level_mpp, 1e4 / level_mpp),
                                 resolutionunit="CENTIMETER")
                writer.write(level, tile=(tile_px, tile_px), photometric="rgb",
                             description=description if index == 0 else None,
                             subfiletype=0 if index == 0 else 1, metadata=None, **scale,
                             **options)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
