"""Reading slides and images at a requested µm/px, coordinates always in the level-0 frame.

Backends: OpenSlide for vendor formats and pyramidal TIFFs it understands; OpenCV for
plain images (PNG/JPEG/TIFF without a pyramid). MPP comes from the file's metadata,
falling back to a user-given value; `mpp=None` means unknown.
"""

import dataclasses
import pathlib
from typing import Optional, Tuple

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
SLIDE_SUFFIXES = (".svs", ".tif", ".tiff", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu",
                  ".bif", ".svslide")


class SlideReadError(RuntimeError):
    """A slide or image could not be opened or read; the message names the file and cause."""


def _resolution_mpp(properties) -> Optional[float]:
    """µm/px from TIFF resolution tags (`tiff.XResolution`, `tiff.ResolutionUnit`)."""
    try:
        resolution = float(properties.get("tiff.XResolution", "nan"))
    except ValueError:
        return None
    unit = properties.get("tiff.ResolutionUnit", "").lower()
    if not np.isfinite(resolution) or resolution <= 0:
        return None
    if unit == "centimeter":
        return 1e4 / resolution
    if unit == "inch":
        return 25400.0 / resolution
    return None


@dataclasses.dataclass
class Slide:
    """An open slide or image. Use `open_slide`; close it (or use `with`) when done."""

    path: pathlib.Path
    dimensions: Tuple[int, int]  # level-0 (width, height) px
    mpp: Optional[float]  # level-0 µm/px, None if unknown
    backend: str
    _handle: object = None
    _pixels: Optional[np.ndarray] = None

    def read_level0(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        """RGB uint8 (height, width, 3) at level 0; outside the slide reads white."""
        return self.read(x, y, width, height, downsample=1.0)

    def read(self, x: int, y: int, width: int, height: int, downsample: float) -> np.ndarray:
        """Level-0 box (x, y, width, height) resampled by 1/downsample, as RGB uint8.

        Reads from the best pyramid level for `downsample`, then resizes.
        """
        out_w = max(1, int(round(width / downsample)))
        out_h = max(1, int(round(height / downsample)))
        try:
            if self.backend == "openslide":
                level = self._handle.get_best_level_for_downsample(downsample)
                level_ds = self._handle.level_downsamples[level]
                size = (max(1, int(np.ceil(width / level_ds))), max(1, int(np.ceil(height / level_ds))))
                region = self._handle.read_region((int(x), int(y)), level, size)
                rgba = np.asarray(region)
                alpha = rgba[..., 3:4].astype(np.float32) / 255.0
                # Transparent pixels carry no slide data: composite them onto white.
                pixels = (rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
            else:
                pixels = self._crop(int(x), int(y), int(width), int(height))
        except Exception as error:  # openslide raises its own error types
            raise SlideReadError(f"{self.path}: cannot read region {(x, y, width, height)}: "
                                 f"{error}") from error
        if pixels.shape[:2] != (out_h, out_w):
            interpolation = cv2.INTER_AREA if downsample > 1 else cv2.INTER_LINEAR
            pixels = cv2.resize(pixels, (out_w, out_h), interpolation=interpolation)
        return pixels

    def _crop(self, x: int, y: int, width: int, height: int) -> np.ndarray:
        out = np.full((height, width, 3), 255, np.uint8)
        full_h, full_w = self._pixels.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + width, full_w), min(y + height, full_h)
        if x1 > x0 and y1 > y0:
            out[y0 - y:y1 - y, x0 - x:x1 - x] = self._pixels[y0:y1, x0:x1]
        return out

    def close(self) -> None:
        if self.backend == "openslide" and self._handle is not None:
            self._handle.close()
        self._handle = None
        self._pixels = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_image(path: pathlib.Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise SlideReadError(f"{path}: not a readable image")
    if pixels.dtype != np.uint8:
        raise SlideReadError(f"{path}: {pixels.dtype} pixels, expected 8-bit RGB")
    if pixels.ndim == 2:
        raise SlideReadError(f"{path}: grayscale image, expected RGB H&E")
    if pixels.shape[2] == 4:
        alpha = pixels[..., 3:4].astype(np.float32) / 255.0
        pixels = (pixels[..., :3] * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def open_slide(path, mpp: Optional[float] = None) -> Slide:
    """Opens a slide (OpenSlide) or a plain image; `mpp` overrides the file's µm/px.

    Raises:
      SlideReadError: the file is missing, unreadable, or not RGB.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise SlideReadError(f"{path}: no such file")
    if path.suffix.lower() in SLIDE_SUFFIXES:
        import openslide  # pylint: disable=import-outside-toplevel

        try:
            handle = openslide.OpenSlide(str(path))
        except openslide.OpenSlideUnsupportedFormatError:
            handle = None  # a plain TIFF: read it as an image below
        except openslide.OpenSlideError as error:
            raise SlideReadError(f"{path}: OpenSlide cannot open it: {error}") from error
        if handle is not None:
            props = handle.properties
            file_mpp = props.get(openslide.PROPERTY_NAME_MPP_X)
            file_mpp = float(file_mpp) if file_mpp else _resolution_mpp(props)
            return Slide(path, tuple(handle.dimensions), mpp or file_mpp, "openslide", handle)
    pixels = _read_image(path)
    return Slide(path, (pixels.shape[1], pixels.shape[0]), mpp, "image", None, pixels)
