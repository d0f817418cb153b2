"""Small real files for the task-net tests: patch files and labeled folders of dark discs.

Images are pink "tissue" with purple discs (nuclei) and noise; labels are the discs'
instance ids; masks are the release bits computed from them.
"""

import pathlib

import cv2
import numpy as np

from simgan_histo import patch_file
from simgan_histo.training import task_data


def disc_image(size: int, rng: np.random.Generator, max_discs: int = 6):
    """(RGB uint8, uint16 instance map) with up to `max_discs` non-overlapping discs."""
    labels = np.zeros((size, size), np.uint16)
    count = 0
    for _ in range(max_discs * 4):
        if count == max_discs:
            break
        radius = int(rng.integers(4, 8))
        y, x = rng.integers(radius, size - radius, 2)
        disc = np.zeros_like(labels, np.uint8)
        cv2.circle(disc, (int(x), int(y)), radius, 1, -1)
        if (labels[cv2.dilate(disc, np.ones((3, 3), np.uint8)) > 0] > 0).any():
            continue
        count += 1
        labels[disc > 0] = count
    image = np.empty((size, size, 3), np.float32)
    image[:] = (230, 170, 200)
    image[labels > 0] = (110, 60, 150)
    image += rng.normal(0, 8, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), labels


def write_patch_file(path, count: int = 16, size: int = 64, seed: int = 0,
                     tiles: int = 4, weights=None) -> pathlib.Path:
    """A valid patch file of `count` disc patches from `tiles` distinct sources."""
    rng = np.random.default_rng(seed)
    with patch_file.PatchWriter(path, size, count, config_json="{}") as writer:
        for index in range(count):
            image, labels = disc_image(size, rng)
            reference, _ = disc_image(size, rng)
            writer.append({
                "image": image[None], "reference": reference[None],
                "mask": task_data.instances_to_bits(labels)[None], "labels": labels[None],
                "source": np.array([index % tiles], np.int32),
                "weight": np.array([1.0 if weights is None else weights[index]], np.float32),
                "step": np.array([-1], np.int64)})
    return pathlib.Path(path)


def write_labeled_folder(folder, count: int = 3, size: int = 96, seed: int = 1) -> pathlib.Path:
    """`folder/images/*.png` RGB and `folder/labels/*.png` uint16 instance maps."""
    folder = pathlib.Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "labels").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        image, labels = disc_image(size, rng, max_discs=10)
        cv2.imwrite(str(folder / "images" / f"img{index}.png"),
                    cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(folder / "labels" / f"img{index}.png"), labels)
    return folder
