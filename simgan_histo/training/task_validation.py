"""Held-out validation of the task net: the stopping point and the watershed thresholds.

By default the held-out set is SYNTHETIC (patches of whole tissue tiles kept out of
training, DESIGN §5 "zero labels"); a labeled folder is used only when asked, and its name
(`labeled:<dir>`) is then recorded in the export. At each evaluation the net predicts the
held-out images, the marker watershed runs for every (seg, det, det σ, compactness, seed h,
flooded map, convex merge, min area, min hematoxylin) combination of the config's grids, and
the best one's mean metric is that evaluation's score. The evaluation with the best score is
the stopping point; its thresholds are exported.
"""

import dataclasses
import itertools
from typing import Dict, List, Optional

import numpy as np
import tensorflow as tf

from simgan_histo.evaluation import metrics
from simgan_histo.postprocess import convex_merge
from simgan_histo.postprocess import watershed
from simgan_histo.training import detection_target
from simgan_histo.training import hv_target
from simgan_histo.training import task_data
from simgan_histo.training import task_loss


@dataclasses.dataclass
class ValidationSet:
    """Held-out images with their bit masks and instance labels."""

    name: str  # "synthetic", "synthetic:<file>" or "labeled:<dir>": recorded with the selection
    images: List[np.ndarray]  # RGB uint8 (H, W, 3)
    masks: List[np.ndarray]  # release bits (H, W)
    labels: List[np.ndarray]  # instance ids (H, W)

    def __len__(self) -> int:
        return len(self.images)


def synthetic_validation(patches: task_data.PatchFiles) -> Optional[ValidationSet]:
    """The held-out synthetic patches of `patches` (None if there are none)."""
    if len(patches.validation_rows) == 0:
        return None
    data = patches.read(patches.validation_rows, ["image", "mask", "labels"])
    return ValidationSet("synthetic", data["image"], data["mask"], data["labels"])


def patch_file_validation(path) -> ValidationSet:
    """Every patch of a patch file as the validation set (named `synthetic:<path>`)."""
    patches = task_data.PatchFiles([path])
    data = patches.read(patches.train_rows, ["image", "mask", "labels"])
    patches.close()
    return ValidationSet(f"synthetic:{path}", data["image"], data["mask"], data["labels"])


def labeled_validation(folder) -> ValidationSet:
    """A real `images/ labels/` folder as the validation set (named `labeled:<folder>`)."""
    real = task_data.LabeledImages(folder)
    return ValidationSet(f"labeled:{folder}", real.images, real.masks, real.labels)


def from_name(name: str, patches: Optional[task_data.PatchFiles]) -> ValidationSet:
    """The set a recorded selection names, rebuilt: "synthetic" (the held-out rows of
    `patches`, the training patch files), "synthetic:<file>" or "labeled:<dir>"."""
    if name == "synthetic":
        held_out = synthetic_validation(patches) if patches is not None else None
        if held_out is None:
            raise ValueError("validation 'synthetic', but the patch files hold none out "
                             "(TaskConfig.validation_fraction is 0 or too few patches)")
        return held_out
    if name.startswith("synthetic:"):
        return patch_file_validation(name[len("synthetic:"):])
    if name.startswith("labeled:"):
        return labeled_validation(name[len("labeled:"):])
    raise ValueError(f"validation set {name!r}: expected 'synthetic', 'synthetic:<file>' or "
                     f"'labeled:<dir>'")


def pad_to_stride(image: np.ndarray, stride: int) -> np.ndarray:
    """Reflect-pads the bottom and right so that H and W are multiples of `stride`."""
    height, width = image.shape[:2]
    pad_h, pad_w = (-height) % stride, (-width) % stride
    if pad_h == 0 and pad_w == 0:
        return image
    pad = ((0, pad_h), (0, pad_w)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, pad, mode="reflect" if min(height, width) > max(pad_h, pad_w)
                  else "edge")


def predict_maps(model, images: List[np.ndarray], stride: int) -> List[Dict[str, np.ndarray]]:
    """Segmentation, detection (H, W), logits (H, W, 2) and, from a net with the hv head,
    hv (H, W, 2) of each image, cropped back."""
    out = []
    for image in images:
        height, width = image.shape[:2]
        batch = pad_to_stride(image, stride)[None].astype(np.float32) / 127.5 - 1.0
        result = model(tf.constant(batch), training=False)
        maps = {"segmentation": result["segmentation"].numpy()[0, :height, :width, 0],
                "detection": result["detection"].numpy()[0, :height, :width, 0],
                "logits": result["logits"].numpy()[0, :height, :width]}
        if "hv" in result:
            maps["hv"] = result["hv"].numpy()[0, :height, :width]
        out.append(maps)
    return out


def validation_loss(maps: List[Dict[str, np.ndarray]], validation: ValidationSet, config) -> float:
    """Mean per-sample task loss (unweighted) of the held-out images."""
    losses = []
    for prediction, mask, labels in zip(maps, validation.masks, validation.labels):
        mask = detection_target.task_mask(mask, labels, config)
        hv = {}
        if "hv" in prediction:
            hv = {"hv": tf.constant(prediction["hv"][None]),
                  "hv_true": tf.constant(hv_target.hv_maps(labels)[None])}
        parts = task_loss.weighted_task_loss(
            tf.constant(prediction["logits"][None]), tf.constant(mask[None]),
            tf.ones([1]), config, **hv)
        losses.append(float(parts["loss"]))
    return float(np.mean(losses))


def grid_search(maps, validation: ValidationSet, config) -> dict:
    """Mean metrics of the watershed for every (seg, det, det σ, compactness, flooded map,
    seed h, merge solidity, min area, min hematoxylin).

    Distance seeds (seed h > 0) do not read the detection map, so unless it is flooded they
    run for the first (det, σ) only. The watershed runs once per (seg, det, σ, compactness,
    map, seed h) with no convex merge, no min area and no hematoxylin floor; each merge
    setting then merges that result, and the other two only drop instances (areas and
    densities are fixed by then), so each of their settings filters the merged result.

    Returns:
      {"thresholds": {seg_threshold, det_threshold, det_sigma, min_area_px, compactness,
       flood_on, min_hematoxylin, merge_solidity, seed_h}, "scores": mean metrics of the
       best, "grid": [[seg, det, σ, min area, aji, dice_avg, compactness, flood_on, min
       hematoxylin, merge solidity, seed h], ...]}; "best" is by `config.selection_metric`
       (AJI when the selection metric is the loss).
    """
    key = "aji" if config.selection_metric == "loss" else config.selection_metric
    areas = sorted(config.min_area_grid)
    floors = sorted(config.min_hematoxylin_grid)
    merges = sorted(config.merge_solidity_grid)
    base = watershed.Thresholds.from_task_config(config).replace(
        min_area_px=0, min_hematoxylin=0.0, merge_solidity=0.0)
    # The images' hematoxylin densities, once per search rather than once per grid point.
    densities = ([watershed.hematoxylin(image) for image in validation.images]
                 if floors != [0.0] else None)
    best, grid = None, []
    first = (config.det_threshold_grid[0], config.det_sigma_grid[0])
    for seg, det, sigma, compactness, surface, seed_h in itertools.product(
            config.seg_threshold_grid, config.det_threshold_grid, config.det_sigma_grid,
            config.compactness_grid, config.flood_on_grid, config.seed_h_grid):
        thresholds = base.replace(seg_threshold=seg, det_threshold=det, det_sigma=sigma,
                                  compactness=compactness, flood_on=surface, seed_h=seed_h)
        if not thresholds.reads_detection and (det, sigma) != first:
            continue  # the same instances as at the first (det, σ)
        scores = {point: {} for point in itertools.product(merges, areas, floors)}
        for index, (prediction, truth) in enumerate(zip(maps, validation.labels)):
            flooded = watershed.instances_from_maps(
                prediction["segmentation"], prediction["detection"], thresholds,
                hv=prediction.get("hv"))
            for merge in merges:
                predicted = convex_merge.merge_convex(flooded, merge)
                for area, floor in itertools.product(areas, floors):
                    kept = watershed.filter_by_area(
                        watershed.drop_pale(predicted, densities[index], floor) if floor > 0
                        else predicted, area, thresholds.max_area_px)
                    scores[merge, area, floor][str(index)] = metrics.image_metrics(
                        truth.astype(np.int64), kept.astype(np.int64))
        for (merge, area, floor), per_image in scores.items():
            mean = metrics.summarize(per_image)["mean"]
            grid.append([seg, det, sigma, area, mean["aji"], mean["dice_avg"], compactness,
                         surface, floor, merge, seed_h])
            if best is None or mean[key] > best["scores"][key]:
                best = {"thresholds": {"seg_threshold": seg, "det_threshold": det,
                                       "det_sigma": sigma, "min_area_px": area,
                                       "compactness": compactness, "flood_on": surface,
                                       "min_hematoxylin": floor, "merge_solidity": merge,
                                       "seed_h": seed_h},
                        "scores": mean}
    best["grid"] = grid
    return best


def evaluate(model, validation: ValidationSet, config) -> dict:
    """One evaluation: loss, best thresholds and their metrics, and the selection score.

    The score is higher-is-better: the metric named by `config.selection_metric`, or minus
    the validation loss.
    """
    maps = predict_maps(model, validation.images, config.stride)
    result = grid_search(maps, validation, config)
    result["loss"] = validation_loss(maps, validation, config)
    if config.selection_metric == "loss":
        result["score"] = -result["loss"]
    else:
        result["score"] = float(result["scores"][config.selection_metric])
    return result
