"""Realism checks of GAN-free patches against their source tissue (issue 3).

- `otsu_dice`: Otsu on the hematoxylin channel of a synthetic patch should recover its
  nuclear mask (Dice), as it roughly does on real H&E.
- `nuclei_darker_in_h`: nuclear pixels carry more hematoxylin than background pixels.
- `background_lab`: LAB mean and std of the synthetic background (non-nuclear pixels)
  against those of the source tiles' background (the pixels outside their
  super-segmentation: what was kept, not inpainted).
"""

from typing import Dict, Sequence

import numpy as np
from skimage import filters

from simgan_histo import patch_file
from simgan_histo import stain
from simgan_histo.synthesis import tissue as tissue_lib


def _nuclear(mask: np.ndarray) -> np.ndarray:
    return (mask & patch_file.MASK_NUCLEUS) > 0


def otsu_dice(image: np.ndarray, mask: np.ndarray) -> float:
    """Dice between Otsu-thresholded H (of `image`) and the nucleus bit of `mask`."""
    hematoxylin = tissue_lib.hed(image)[..., 0]
    predicted = hematoxylin > filters.threshold_otsu(hematoxylin)
    truth = _nuclear(mask)
    denominator = predicted.sum() + truth.sum()
    return float(2.0 * (predicted & truth).sum() / denominator) if denominator else 1.0


def nuclei_darker_in_h(image: np.ndarray, mask: np.ndarray) -> bool:
    """Mean H of nuclear pixels > mean H of background pixels."""
    hematoxylin = tissue_lib.hed(image)[..., 0]
    truth = _nuclear(mask)
    return bool(hematoxylin[truth].mean() > hematoxylin[~truth].mean())


def background_lab(images: np.ndarray, masks: np.ndarray, tiles: Sequence) -> Dict:
    """Synthetic background LAB mean/std vs the source tiles' background (per channel).

    Returns:
      {"synthetic_mean", "synthetic_std": mean over patches of the per-patch background
      LAB mean / std; "tiles_mean", "tiles_mean_sd", "tiles_std", "tiles_std_sd": mean and
      sd over tiles of the per-tile background LAB mean / std; "within_1sd": both
      synthetic figures within one tile sd of the tiles' mean, in every channel}.
    """
    patch_stats = [stain.lab_stats(image, ~_nuclear(mask)) for image, mask in zip(images, masks)
                   if (~_nuclear(mask)).any()]
    tile_stats = [tile.background_lab for tile in tiles]
    synthetic_mean = np.mean([m for m, _ in patch_stats], axis=0)
    synthetic_std = np.mean([s for _, s in patch_stats], axis=0)
    tiles_mean = np.array([m for m, _ in tile_stats])
    tiles_std = np.array([s for _, s in tile_stats])
    within = (np.abs(synthetic_mean - tiles_mean.mean(0)) <= tiles_mean.std(0)).all() and (
        np.abs(synthetic_std - tiles_std.mean(0)) <= tiles_std.std(0)).all()
    return {"synthetic_mean": synthetic_mean.round(2).tolist(),
            "synthetic_std": synthetic_std.round(2).tolist(),
            "tiles_mean": tiles_mean.mean(0).round(2).tolist(),
            "tiles_mean_sd": tiles_mean.std(0).round(2).tolist(),
            "tiles_std": tiles_std.mean(0).round(2).tolist(),
            "tiles_std_sd": tiles_std.std(0).round(2).tolist(),
            "within_1sd": bool(within)}


def report(batch: Dict[str, np.ndarray], tiles: Sequence) -> Dict:
    """All three checks on a batch (patches without nuclei are skipped by the first two)."""
    with_nuclei = [i for i in range(len(batch["image"])) if _nuclear(batch["mask"][i]).any()]
    dice = [otsu_dice(batch["image"][i], batch["mask"][i]) for i in with_nuclei]
    darker = [nuclei_darker_in_h(batch["image"][i], batch["mask"][i]) for i in with_nuclei]
    return {"patches": len(batch["image"]), "patches_with_nuclei": len(with_nuclei),
            "otsu_h_dice_mean": round(float(np.mean(dice)), 4) if dice else None,
            "nuclei_higher_h_fraction": round(float(np.mean(darker)), 4) if darker else None,
            "background_lab": background_lab(batch["image"], batch["mask"], tiles)}
