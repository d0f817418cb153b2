"""The Reinhard target of a model: LAB mean/std of its training tissue (paper §5, release).

The release normalised every test tile to one fixed image (`target_40X.png`). We instead
record the statistics of the tissue the model was trained on — the real `reference` crops
of a patch file and/or the real labeled images — in the export's `inference.json`, so an
inference image is mapped onto what the net has seen. `data/reinhard_target.json` holds a
default computed by `slide_target` from the CC0 sample slide (`sample_data`), for callers
that have no training tissue at hand.
"""

import json
import pathlib
from typing import Iterable, Optional, Tuple

import cv2
import numpy as np

from simgan_histo import stain

DEFAULT_TARGET_PATH = pathlib.Path(__file__).resolve().parents[2] / "data" / "reinhard_target.json"
SATURATION_MIN = 0.07  # HSV saturation: glass and white background are below this
BRIGHTNESS_MAX = 235  # grey level: brighter pixels are background or empty glass
MIN_SOURCE_PIXELS = 256  # an image with fewer tissue pixels is left as it is


def tissue_mask(rgb: np.ndarray) -> np.ndarray:
    """Boolean (H, W): stained pixels (saturated and not near-white)."""
    hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return (hsv[..., 1] >= SATURATION_MIN * 255) & (grey <= BRIGHTNESS_MAX)


def tissue_target(images: Iterable[np.ndarray]) -> stain.Stats:
    """Pooled LAB statistics of the tissue pixels of `images` (RGB uint8).

    Raises:
      ValueError: if no image holds tissue.
    """
    found = [part for part in (tissue_stats(image, 16) for image in images) if part]
    if not found:
        raise ValueError("no tissue pixels found to compute a Reinhard target from")
    return stain.pooled_stats([stats for stats, _ in found], [count for _, count in found])


def tissue_stats(rgb: np.ndarray, min_pixels: int) -> Optional[Tuple[stain.Stats, int]]:
    """(LAB statistics, count) of the tissue pixels of `rgb`, or None below `min_pixels`:
    the one measurement behind a model's target and the images and slides mapped onto it."""
    mask = tissue_mask(rgb)
    count = int(mask.sum())
    return (stain.lab_stats(rgb, mask), count) if count >= min_pixels else None


def image_stats(rgb: np.ndarray) -> Optional[stain.Stats]:
    """Reinhard source statistics of an inference image: LAB mean/std over its tissue pixels,
    the pixels its model's target was measured on (glass and white lumen would otherwise
    lighten the mean and widen the spread, so the tissue is mapped too dark). None when it
    holds fewer than `MIN_SOURCE_PIXELS` tissue pixels: nothing there to normalise."""
    found = tissue_stats(rgb, MIN_SOURCE_PIXELS)
    return found[0] if found else None


def patch_file_target(patches, max_patches: int = 256, seed: int = 0) -> stain.Stats:
    """Target from the real `reference` crops of patch files (a seeded sample of rows)."""
    rows = patches.train_rows
    if len(rows) > max_patches:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_patches, replace=False))
    return tissue_target(patches.read(rows, ["reference"])["reference"])


def slide_target(slide_path, downsample: float = 2.0) -> stain.Stats:
    """Target from the tissue of a whole slide read at `downsample` (level-0 px per px)."""
    from simgan_histo.wsi import reader  # pylint: disable=import-outside-toplevel

    with reader.open_slide(slide_path) as slide:
        width, height = slide.dimensions
        rgb = slide.read(0, 0, width, height, downsample)
    return tissue_target([rgb])


def write_target(path, stats: stain.Stats, source: str) -> None:
    """Writes a target JSON: {"lab_mean", "lab_std", "source"}."""
    data = {**stain.stats_to_json(stats), "source": source}
    pathlib.Path(path).write_text(json.dumps(data, indent=2) + "\n")


def load_target(path: Optional[pathlib.Path] = None) -> stain.Stats:
    """Reads a target JSON (default: the project's `data/reinhard_target.json`)."""
    path = pathlib.Path(path or DEFAULT_TARGET_PATH)
    if not path.exists():
        raise FileNotFoundError(f"{path}: Reinhard target missing; recreate it with "
                                f"`python -m simgan_histo.training.stain_target`")
    return stain.stats_from_json(json.loads(path.read_text()))


def main() -> None:
    """Recomputes `data/reinhard_target.json` from the CC0 sample slide."""
    from simgan_histo import sample_data  # pylint: disable=import-outside-toplevel

    path = sample_data.sample_slide_path()
    write_target(DEFAULT_TARGET_PATH, slide_target(path),
                 f"tissue of {sample_data.SLIDE_NAME} (CC0), read at downsample 2, "
                 f"simgan_histo.training.stain_target.slide_target")


if __name__ == "__main__":
    main()
