"""Training data for the task net: patch files and real labeled folders → augmented batches.

Sources:
- patch files of the DESIGN §3 schema (`synthesize.py` output or the refiner's buffer),
  with their importance weights (`weight`, 1.0 where unrefined);
- optionally a real labeled folder `images/<id>.png` + `labels/<id>.png` (uint16 instance
  ids, 0 = background), converted to the release bits; real samples have weight 1
  (release: the supervised MoNuSeg patches enter the learner's batch unweighted).

A batch for step t is a pure function of (seed, t): resuming needs no RNG state. Every
sample gets its own random crop, flip and rot90 (the release drew one rot90 per run), and
with `TaskConfig.stain_jitter` its own hematoxylin and eosin scaling (Tellez et al. 2018).
Held-out synthetic patches are chosen by tissue tile (`source`) so that no validation
patch shares a tile with a training patch.
"""

import pathlib
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np
from skimage import color

from simgan_histo import patch_file
from simgan_histo.postprocess import raster
from simgan_histo.training import detection_target, hv_target

IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
LABEL_SUFFIXES = (".png", ".tif", ".tiff")


def instances_to_bits(labels: np.ndarray) -> np.ndarray:
    """Release bit mask (uint8) from an instance map (0 = background).

    Bit 1: nuclear pixel. Bit 4: each instance's centroid pixel (mean coordinates, rounded).
    Bit 2 (contour): pixels whose 3×3 neighbourhood holds a different non-zero id — the
    ring just outside each nucleus and the line where two nuclei touch.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"instance map must be 2-D, got shape {labels.shape}")
    labels = labels.astype(np.int64)
    bits = np.where(labels > 0, patch_file.MASK_NUCLEUS, 0).astype(np.uint8)
    as_float = labels.astype(np.float32)
    kernel = np.ones((3, 3), np.uint8)
    neighbour_max = cv2.dilate(as_float, kernel)
    masked_min = cv2.erode(np.where(labels > 0, as_float, np.float32(np.inf)), kernel)
    differs = ((neighbour_max > 0) & (neighbour_max != as_float)) | (
        np.isfinite(masked_min) & (masked_min != as_float) & (labels > 0))
    bits[differs] |= patch_file.MASK_CONTOUR
    present = np.unique(labels[labels > 0])
    mean_row, mean_col = raster.centroids(labels)
    bits[np.rint(mean_row[present]).astype(int),
         np.rint(mean_col[present]).astype(int)] |= patch_file.MASK_CENTROID
    return bits


def read_rgb(path: pathlib.Path) -> np.ndarray:
    """An RGB uint8 image; RGBA only if fully opaque. ValueError naming the file otherwise."""
    pixels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ValueError(f"{path}: not a readable image")
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] not in (3, 4):
        raise ValueError(f"{path}: expected an RGB uint8 image, got {pixels.dtype} with shape "
                         f"{pixels.shape} (grayscale and 16-bit images are not H&E RGB)")
    if pixels.shape[2] == 4:
        if pixels[..., 3].min() < 255:
            raise ValueError(f"{path}: RGBA image with transparent pixels; save it as RGB")
        pixels = pixels[..., :3]
    return cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def read_instance_map(path: pathlib.Path) -> np.ndarray:
    """A single-channel integer instance map (uint8/uint16/int32). ValueError otherwise."""
    labels = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if labels is None:
        raise ValueError(f"{path}: not a readable label image")
    if labels.ndim != 2 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{path}: expected a single-channel integer instance map (uint16 "
                         f"PNG, 0 = background), got {labels.dtype} with shape {labels.shape}")
    return labels


def link(source, target) -> None:
    """Points `target` at `source` (resolved), replacing any earlier link or file there
    (a stale one included, so a rerun never fails on its own links); creates its folder."""
    target = pathlib.Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(pathlib.Path(source).resolve())


def labeled_pairs(folder) -> List[tuple]:
    """(id, image path, label path) for every image in `folder/images`, sorted by id.

    Raises:
      FileNotFoundError: the folder, its `images/` or `labels/`, or an image's label is missing.
    """
    folder = pathlib.Path(folder)
    images_dir, labels_dir = folder / "images", folder / "labels"
    for needed in (images_dir, labels_dir):
        if not needed.is_dir():
            raise FileNotFoundError(f"{needed}: missing; a labeled folder holds images/ and "
                                    f"labels/ (uint16 instance PNGs with the same names)")
    images = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"{images_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    pairs, missing = [], []
    for image in images:
        labels = [labels_dir / (image.stem + s) for s in LABEL_SUFFIXES]
        found = [p for p in labels if p.exists()]
        if found:
            pairs.append((image.stem, image, found[0]))
        else:
            missing.append(image.name)
    if missing:
        raise FileNotFoundError(f"{labels_dir}: no label for {len(missing)} image(s): "
                                f"{missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return pairs


class LabeledImages:
    """A real labeled folder held in RAM: RGB images, instance maps and release bit masks."""

    def __init__(self, folder, min_size: int = 0):
        self.folder = pathlib.Path(folder)
        self.ids, self.images, self.labels, self.masks = [], [], [], []
        for name, image_path, label_path in labeled_pairs(self.folder):
            image, labels = read_rgb(image_path), read_instance_map(label_path)
            if image.shape[:2] != labels.shape:
                raise ValueError(f"{label_path}: label size {labels.shape} differs from image "
                                 f"size {image.shape[:2]} of {image_path.name}")
            if min(labels.shape) < min_size:
                raise ValueError(f"{image_path}: {labels.shape} is smaller than the training "
                                 f"crop {min_size}")
            self.ids.append(name)
            self.images.append(image)
            self.labels.append(labels)
            self.masks.append(instances_to_bits(labels))

    def __len__(self) -> int:
        return len(self.ids)


class PatchFiles:
    """One or more patch files read as one table, split into training and held-out rows."""

    def __init__(self, paths: Sequence, validation_fraction: float = 0.0,
                 max_validation: int = 64, seed: int = 0):
        if not paths:
            raise ValueError("no patch file given")
        self.readers = [patch_file.PatchReader(path) for path in paths]
        for reader in self.readers:
            if len(reader) == 0:
                raise ValueError(f"{reader.path}: the patch file holds no patches (count 0)")
        self.patch_sizes = [reader.patch_size for reader in self.readers]
        file_index = [np.full(len(r), i) for i, r in enumerate(self.readers)]
        self.rows = np.stack([np.concatenate(file_index),
                              np.concatenate([np.arange(len(r)) for r in self.readers])], 1)
        self.weights = np.concatenate(
            [r.read(np.arange(len(r)), ["weight"])["weight"] for r in self.readers])
        sources = np.concatenate(
            [r.read(np.arange(len(r)), ["source"])["source"].astype(np.int64) + (i << 32)
             for i, r in enumerate(self.readers)])
        self.train_rows, self.validation_rows = self._split(
            sources, validation_fraction, max_validation, seed)

    def _split(self, sources, fraction, max_validation, seed):
        """Held-out rows = whole tissue tiles, in seeded random order, up to the target count."""
        target = min(int(round(fraction * len(sources))), max_validation)
        if target == 0:
            return np.arange(len(sources)), np.zeros(0, np.int64)
        unique, counts = np.unique(sources, return_counts=True)
        if len(unique) < 2:
            raise ValueError("held-out synthetic validation needs patches from >= 2 tissue "
                             "tiles (`source`); set validation_fraction=0 or add tissue")
        order = np.random.default_rng([seed, 7]).permutation(len(unique))
        # Whole tiles until the target is reached, always leaving one tile for training.
        taken = np.searchsorted(np.cumsum(counts[order]), target) + 1
        held = np.isin(sources, unique[order[:min(taken, len(unique) - 1)]])
        validation = np.nonzero(held)[0][:target]
        return np.nonzero(~held)[0], validation

    def read(self, rows: np.ndarray, fields: Sequence[str]) -> Dict[str, List[np.ndarray]]:
        """Rows (indices into the table) as {field: list of per-row arrays}, in order."""
        out = {name: [None] * len(rows) for name in fields}
        for file_number, reader in enumerate(self.readers):
            positions = np.nonzero(self.rows[rows, 0] == file_number)[0]
            if positions.size == 0:
                continue
            values = reader.read(self.rows[rows[positions], 1], fields)
            for name in fields:
                for slot, value in zip(positions, values[name]):
                    out[name][slot] = value
        return out

    def configs(self) -> List[str]:
        return [reader.config_json for reader in self.readers]

    def close(self) -> None:
        for reader in self.readers:
            reader.close()


def augment(image: np.ndarray, mask: np.ndarray, crop: int, rng: np.random.Generator,
            *others: np.ndarray):
    """One random crop of side `crop`, a random left-right flip and a random rot90.

    Arrays in `others` (e.g. instance labels) of the mask's (H, W) get the same transform
    and are returned after image and mask; the draws do not depend on them.
    """
    height, width = mask.shape
    if height < crop or width < crop:
        raise ValueError(f"sample of {height}×{width} is smaller than the crop {crop}")
    y = rng.integers(0, height - crop + 1)
    x = rng.integers(0, width - crop + 1)
    arrays = [a[y:y + crop, x:x + crop] for a in (image, mask) + others]
    if rng.random() < 0.5:
        arrays = [a[:, ::-1] for a in arrays]
    turns = int(rng.integers(0, 4))
    return tuple(np.rot90(a, turns) for a in arrays)


def jitter_stains(image: np.ndarray, amount: float, rng: np.random.Generator) -> np.ndarray:
    """H and E optical densities each × U(1 ± amount) (Ruifrok–Johnston vectors); uint8.

    In optical density the change is a·H·v_H + c·E·v_E, so in RGB a per-pixel gain; unlike
    an rgb2hed / hed2rgb round trip (which clips negative densities) amount 0 is the identity.
    """
    rgb = image.astype(np.float32)
    density = -np.log(np.maximum(rgb, 1.0) / 255.0) @ color.hed_from_rgb.astype(np.float32)
    h_gain, e_gain = (rng.random(2) * 2.0 - 1.0) * amount
    change = (h_gain * density[..., :1] * color.rgb_from_hed[0]
              + e_gain * density[..., 1:2] * color.rgb_from_hed[1])
    return np.clip(np.rint(rgb * np.exp(-change)), 0, 255).astype(np.uint8)


class TaskBatches:
    """Augmented training batches, a pure function of (seed, step)."""

    def __init__(self, config, patches: Optional[PatchFiles] = None,
                 real: Optional[LabeledImages] = None, seed: int = 0,
                 use_importance_weights: bool = True):
        if patches is None and real is None:
            raise ValueError("no training data: give patch files and/or a real labeled folder")
        self.config, self.patches, self.real, self.seed = config, patches, real, seed
        self.use_importance_weights = use_importance_weights
        if patches is None:
            self.num_real = config.batch_size
        elif real is None:
            self.num_real = 0
        else:
            self.num_real = min(config.batch_size - 1,
                                max(1, int(round(config.real_batch_fraction * config.batch_size))))

    def _sample(self, image: np.ndarray, mask: np.ndarray, labels: Optional[np.ndarray],
                rng: np.random.Generator):
        """(image, mask, hv maps or None) of one augmented sample."""
        if labels is not None:
            mask = detection_target.task_mask(mask, labels, self.config)
        if self.config.hv_head:  # the maps of the crop as turned, so their signs stay right
            image, mask, labels = augment(image, mask, self.config.crop_size, rng, labels)
        else:
            image, mask = augment(image, mask, self.config.crop_size, rng)
        if self.config.stain_jitter > 0:  # no draw when off: batches stay as they were
            image = jitter_stains(image, self.config.stain_jitter, rng)
        return image, mask, hv_target.hv_maps(labels) if self.config.hv_head else None

    def batch(self, step: int) -> Dict[str, np.ndarray]:
        """{image uint8 (B,c,c,3), mask uint8 (B,c,c), weight float32 (B,)} for `step`,
        and with `hv_head` {hv float32 (B,c,c,2)}."""
        rng = np.random.default_rng([self.seed, int(step)])
        size = self.config.batch_size
        samples, weights = [], []
        num_synthetic = size - self.num_real
        with_labels = detection_target.needs_labels(self.config) or self.config.hv_head
        if num_synthetic:
            rows = rng.choice(self.patches.train_rows, num_synthetic)
            data = self.patches.read(rows, ["image", "mask"] + (["labels"] if with_labels else []))
            stored = self.patches.weights[rows]
            for index, (image, mask, weight) in enumerate(zip(data["image"], data["mask"], stored)):
                labels = data["labels"][index] if with_labels else None
                samples.append(self._sample(image, mask, labels, rng))
                weights.append(weight if self.use_importance_weights else 1.0)
        for index in rng.integers(0, len(self.real), self.num_real) if self.num_real else []:
            labels = self.real.labels[index] if with_labels else None
            samples.append(self._sample(self.real.images[index], self.real.masks[index],
                                        labels, rng))
            weights.append(1.0)
        images, masks, maps = zip(*samples)
        out = {"image": np.ascontiguousarray(np.stack(images)),
               "mask": np.ascontiguousarray(np.stack(masks)),
               "weight": np.asarray(weights, np.float32)}
        if self.config.hv_head:
            out["hv"] = np.stack(maps)
        return out
