"""Slide backends behind `reader.Slide`: tifffile, OpenSlide and in-memory images.

Each backend exposes `level_dimensions`, `level_downsamples`, `metadata` (what the file says
about its resolution) and `read_level(level, x, y, width, height)`: an integer box in that
level's pixels as RGB uint8, white where the box leaves the image. Resampling, MPP policy and
error wording live in `reader.py`.
"""

import dataclasses
import pathlib
import re
from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
WHITE = 255


class SlideReadError(RuntimeError):
    """A slide or image could not be opened or read; the message names the file and cause."""


@dataclasses.dataclass(frozen=True)
class Metadata:
    """What a file records about its scale (each field None when absent)."""

    mpp: Optional[float] = None  # explicit µm/px (OpenSlide property, Aperio/OME description)
    mpp_source: str = "unknown"
    resolution: Tuple[Optional[float], str] = (None, "")  # TIFF XResolution, ResolutionUnit
    objective_power: Optional[float] = None


def _paste(out: np.ndarray, chunk: np.ndarray, x: int, y: int, chunk_x: int, chunk_y: int):
    """Copies the part of `chunk` (placed at chunk_x, chunk_y) that falls inside `out` at (x, y)."""
    height, width = out.shape[:2]
    x0, y0 = max(x, chunk_x), max(y, chunk_y)
    x1 = min(x + width, chunk_x + chunk.shape[1])
    y1 = min(y + height, chunk_y + chunk.shape[0])
    if x1 > x0 and y1 > y0:
        out[y0 - y:y1 - y, x0 - x:x1 - x] = chunk[y0 - chunk_y:y1 - chunk_y,
                                                  x0 - chunk_x:x1 - chunk_x]


def _to_rgb(pixels: np.ndarray, where) -> np.ndarray:
    """8-bit RGB (alpha composited onto white) or SlideReadError."""
    if pixels.dtype != np.uint8:
        raise SlideReadError(f"{where}: {pixels.dtype} pixels, expected 8-bit RGB")
    if pixels.ndim == 2 or pixels.shape[-1] not in (3, 4):
        raise SlideReadError(f"{where}: {pixels.shape} pixels, expected RGB H&E")
    if pixels.shape[-1] == 4:
        alpha = pixels[..., 3:4].astype(np.float32) / 255.0
        pixels = (pixels[..., :3] * alpha + WHITE * (1.0 - alpha) + 0.5).astype(np.uint8)
    return pixels


class ArrayBackend:
    """A plain image file held in memory (one level)."""

    name = "image"

    def __init__(self, path: pathlib.Path):
        pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if pixels is None:
            raise SlideReadError(f"{path}: not a readable image or slide (corrupt, truncated or "
                                 f"an unsupported format)")
        if pixels.ndim == 3:
            order = cv2.COLOR_BGRA2RGBA if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
            pixels = cv2.cvtColor(pixels, order)
        self.pixels = _to_rgb(pixels, path)
        height, width = self.pixels.shape[:2]
        self.level_dimensions = ((width, height),)
        self.level_downsamples = (1.0,)
        self.metadata = Metadata()

    def read_level(self, level, x, y, width, height) -> np.ndarray:
        out = np.full((height, width, 3), WHITE, np.uint8)
        _paste(out, self.pixels, x, y, 0, 0)
        return out

    def close(self):
        self.pixels = None


class OpenSlideBackend:
    """Vendor formats through OpenSlide (`read_region` takes level-0 coordinates)."""

    name = "openslide"

    def __init__(self, handle, path: pathlib.Path):
        import openslide  # pylint: disable=import-outside-toplevel

        self.handle, self.path = handle, path
        self.level_dimensions = tuple(tuple(d) for d in handle.level_dimensions)
        self.level_downsamples = tuple(float(d) for d in handle.level_downsamples)
        props = handle.properties
        mpp = _float(props.get(openslide.PROPERTY_NAME_MPP_X))
        self.metadata = Metadata(
            mpp=mpp, mpp_source="openslide.mpp-x" if mpp else "unknown",
            resolution=(_float(props.get("tiff.XResolution")),
                        props.get("tiff.ResolutionUnit", "")),
            objective_power=_float(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER)))
        background = props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR, "FFFFFF")
        self.background = np.array([int(background[i:i + 2], 16) for i in (0, 2, 4)],
                                   np.float32)

    def read_level(self, level, x, y, width, height) -> np.ndarray:
        downsample = self.level_downsamples[level]
        location = (int(round(x * downsample)), int(round(y * downsample)))
        rgba = np.asarray(self.handle.read_region(location, level, (width, height)))
        if rgba[..., 3].min() == 255:  # all opaque: compositing is the identity, skip it
            return np.ascontiguousarray(rgba[..., :3])
        alpha = rgba[..., 3:4].astype(np.float32) / 255.0
        # Transparent pixels carry no slide data: composite them onto the slide background.
        return (rgba[..., :3] * alpha + self.background * (1.0 - alpha) + 0.5).astype(np.uint8)

    def close(self):
        self.handle.close()


def open_with_openslide(path: pathlib.Path):
    """OpenSlideBackend, or ArrayBackend for an image OpenSlide does not handle."""
    import openslide  # pylint: disable=import-outside-toplevel

    try:
        handle = openslide.OpenSlide(str(path))
    except openslide.OpenSlideUnsupportedFormatError:
        return ArrayBackend(path)
    except openslide.OpenSlideError as error:
        raise SlideReadError(f"{path}: OpenSlide cannot open it (corrupt or truncated?): "
                             f"{error}") from error
    return OpenSlideBackend(handle, path)


def _float(value) -> Optional[float]:
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if np.isfinite(result) and result > 0 else None


_APERIO_MPP = re.compile(r"\|\s*MPP\s*=\s*([0-9.eE+-]+)")
_APERIO_MAG = re.compile(r"\|\s*AppMag\s*=\s*([0-9.eE+-]+)")
_OME_SIZE = re.compile(r'PhysicalSizeX="([0-9.eE+-]+)"')
_OME_UNIT = re.compile(r'PhysicalSizeXUnit="([^"]+)"')
_OME_MAG = re.compile(r'NominalMagnification="([0-9.eE+-]+)"')
_UM_PER_UNIT = {"µm": 1.0, "um": 1.0, "\u03bcm": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4}


def _tiff_metadata(page) -> Metadata:
    """Aperio description, OME-XML, resolution tags and objective power of a TIFF page."""
    description = page.description or ""
    mpp, source, power = None, "unknown", None
    if description.startswith("Aperio"):
        found = _APERIO_MPP.search(description)
        mpp, source = (_float(found.group(1)), "aperio-description") if found else (None, source)
        found = _APERIO_MAG.search(description)
        power = _float(found.group(1)) if found else None
    elif "<OME" in description:
        found, unit = _OME_SIZE.search(description), _OME_UNIT.search(description)
        scale = _UM_PER_UNIT.get(unit.group(1) if unit else "µm")
        if found and scale:
            mpp, source = _float(float(found.group(1)) * scale), "ome-physical-size"
        found = _OME_MAG.search(description)
        power = _float(found.group(1)) if found else None
    unit = {2: "inch", 3: "centimeter"}.get(int(page.resolutionunit), "none")
    return Metadata(mpp=mpp, mpp_source=source if mpp else "unknown",
                    resolution=(_float(page.resolution[0]), unit), objective_power=power)


# none, LZW, JPEG, deflate (two codes), zstd, webp: what imagecodecs decodes exactly as the
# scanner wrote it. JPEG 2000 (Aperio 33003/33005) is left to OpenSlide's colour handling.
_DECODABLE_COMPRESSIONS = (1, 5, 7, 8, 32946, 50000, 50001)


def _decodable(page) -> bool:
    return (page.dtype == np.uint8 and page.samplesperpixel in (3, 4)
            and int(page.compression) in _DECODABLE_COMPRESSIONS
            and int(page.planarconfig) == 1 and int(page.photometric) in (2, 6)
            and page.imagedepth == 1)


def _pyramid_pages(tiff) -> Sequence:
    """Level pages, largest first: the series' levels (OME/SubIFD/generic pyramids), else the
    tiled pages of the main IFD chain with level 0's aspect ratio (Aperio-style pyramids,
    whose thumbnail/label/macro are stripped or of another shape)."""
    series = tiff.series[0]
    if len(series.levels) > 1:
        pages = [level.keyframe for level in series.levels]
    else:
        first = tiff.pages[0]
        aspect = first.imagewidth / first.imagelength
        pages = [first] + [
            page for page in tiff.pages[1:]
            if page.is_tiled and page.imagewidth < first.imagewidth
            and abs(page.imagewidth / page.imagelength - aspect) < 0.02 * aspect]
        if not first.is_tiled:
            pages = [first]
    return sorted(pages, key=lambda page: -page.imagewidth)


def tifffile_can_read(path: pathlib.Path) -> bool:
    """True when tifffile opens `path` and can decode its level pages as 8-bit RGB."""
    import tifffile  # pylint: disable=import-outside-toplevel

    try:
        with tifffile.TiffFile(str(path)) as tiff:
            return all(_decodable(page) for page in _pyramid_pages(tiff))
    except Exception:  # any failure: let OpenSlide (and its error message) have it
        return False


class TiffBackend:
    """Generic/OME/pyramidal TIFFs, decoding only the tiles (or strips) a box touches."""

    name = "tifffile"

    def __init__(self, path: pathlib.Path):
        import tifffile  # pylint: disable=import-outside-toplevel

        self.path = path
        try:
            self.tiff = tifffile.TiffFile(str(path))
            self.pages = _pyramid_pages(self.tiff)
        except Exception as error:
            raise SlideReadError(f"{path}: tifffile cannot open it (corrupt or truncated?): "
                                 f"{error}") from error
        for page in self.pages:
            if not _decodable(page):
                raise SlideReadError(f"{path}: {page.dtype} {page.photometric!s} with "
                                     f"{page.samplesperpixel} samples; expected 8-bit RGB")
        width, height = self.pages[0].imagewidth, self.pages[0].imagelength
        self.level_dimensions = tuple((p.imagewidth, p.imagelength) for p in self.pages)
        self.level_downsamples = tuple(
            0.5 * (width / p.imagewidth + height / p.imagelength) for p in self.pages)
        self.metadata = _tiff_metadata(self.tiff.pages[0])

    def read_level(self, level, x, y, width, height) -> np.ndarray:
        page = self.pages[level]
        chunk_h, chunk_w = page.chunks[:2]
        rows, cols = page.chunked[:2]
        out = np.full((height, width, 3), WHITE, np.uint8)
        col0, col1 = max(x // chunk_w, 0), min((x + width - 1) // chunk_w, cols - 1)
        row0, row1 = max(y // chunk_h, 0), min((y + height - 1) // chunk_h, rows - 1)
        handle = self.tiff.filehandle
        for row in range(row0, row1 + 1):
            for col in range(col0, col1 + 1):
                index = row * cols + col
                if not page.databytecounts[index]:
                    continue  # a sparse TIFF: no data, background
                handle.seek(page.dataoffsets[index])
                data = handle.read(page.databytecounts[index])
                chunk = page.decode(data, index, jpegtables=page.jpegtables)[0]
                if chunk is None:
                    raise SlideReadError(f"{self.path}: cannot decode chunk {index} of level "
                                         f"{level}")
                chunk = _to_rgb(chunk.reshape(chunk.shape[-3:]), self.path)
                _paste(out, chunk[:page.imagelength - row * chunk_h,
                                  :page.imagewidth - col * chunk_w],
                       x, y, col * chunk_w, row * chunk_h)
        return out

    def close(self):
        self.tiff.close()
