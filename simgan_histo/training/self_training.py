"""Self-training: the task net labels the unlabeled real tissue, then trains on it too.

The first round trains on synthetic patches only. Its exported net then segments every
tissue tile of the run's source with its own inference settings (Reinhard, the thresholds
chosen on synthetic patches). The tiles and those instance maps form a labeled folder
(`images/`, `labels/`). A second round mixes that folder into its batches
(`TaskConfig.real_batch_fraction`) with the same synthetic patches, starting from the first
round's weights. The pseudo-labels bring the real tissue's textures and colours, which
the synthetic patches only imitate.

No label is read: the tissue is the run's own unlabeled input (DESIGN §5), and both rounds
select their stopping point and thresholds on held-out synthetic patches.
"""

import pathlib
import re
from typing import Sequence, Tuple

import numpy as np
from absl import logging

from simgan_histo.evaluation import figures
from simgan_histo.evaluation import predict_lib
from simgan_histo.training import task_data


def round_steps(task) -> Tuple[int, int]:
    """(first, second) round steps: `train_steps` split by `self_training_share`."""
    second = int(round(task.train_steps * task.self_training_share))
    return task.train_steps - second, second


def _file_name(index: int, tile_name: str) -> str:
    """A unique, filesystem-safe name (slide tiles are named like `a.svs@1024,2048`)."""
    return f"{index:05d}_{re.sub(r'[^A-Za-z0-9._-]+', '_', tile_name)}"


def pseudo_label_tiles(model, tiles: Sequence, folder, min_size: int = 0) -> dict:
    """Writes each tile and `model`'s instance map of it into `folder/images`, `folder/labels`.

    Args:
      model: a loaded export (`simgan_histo.load`); tiles must be at its µm/px.
      tiles: objects with `.name` and `.rgb` (the pipeline's `PreparedTile`s).
      folder: the labeled folder to write (files are written atomically, so a rerun after a
        kill overwrites them whole).
      min_size: tiles with a side below this (the training crop) are skipped and counted.

    Returns:
      {"folder", "tiles" written, "nuclei" in them, "skipped": {reason: count}}.

    Raises:
      ValueError: if no tile gets a single nucleus (a second round would learn that the
        tissue holds none).
    """
    folder = pathlib.Path(folder)
    for sub in ("images", "labels"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    written, nuclei, skipped = 0, 0, {"too_small": 0, "no_nucleus": 0}
    for index, tile in enumerate(tiles):
        if min(tile.rgb.shape[:2]) < min_size:
            skipped["too_small"] += 1
            continue
        labels = model.predict_labels(tile.rgb)
        count = len(np.unique(labels)) - (1 if labels.min() == 0 else 0)
        if count == 0:
            skipped["no_nucleus"] += 1
            continue
        name = _file_name(index, tile.name)
        figures.write_png(folder / "images" / f"{name}.png", tile.rgb)
        predict_lib.write_labels(folder / "labels" / f"{name}.png", labels)
        written, nuclei = written + 1, nuclei + count
    skipped = {reason: n for reason, n in skipped.items() if n}
    if skipped:
        logging.warning("self-training: skipped tissue tiles %s", skipped)
    if written == 0:
        raise ValueError(f"self-training: the first round's net found no nucleus in any of "
                         f"{len(tiles)} tissue tiles (skipped: {skipped}); nothing to train on")
    logging.info("self-training: %d tiles pseudo-labelled with %d nuclei in %s", written,
                 nuclei, folder)
    return {"folder": str(folder), "tiles": written, "nuclei": nuclei, "skipped": skipped}


def link_labeled(real_dir, folder) -> int:
    """Links a real labeled folder's pairs into `folder` (names prefixed `real_`); returns
    how many."""
    folder = pathlib.Path(folder)
    pairs = task_data.labeled_pairs(real_dir)
    for _, image, labels in pairs:
        task_data.link(image, folder / "images" / f"real_{image.name}")
        task_data.link(labels, folder / "labels" / f"real_{image.stem}{labels.suffix}")
    return len(pairs)
