"""What the slide path needs from a model, and adapters from an export, the API or a callable.

`SegmentationModel` is deliberately small: a function from a batch of RGB tiles to the two
probability maps, the µm/px the model works at, its stride, the Reinhard target it was
trained with and the watershed that turns maps into instances. Anything that provides those
can segment a slide: the exported SavedModel (`from_export`), the Python API's loaded model
(`from_api`), or a plain callable (`from_callable`, e.g. an oracle in tests).
"""

import dataclasses
import functools
from typing import Callable, Optional, Tuple

import numpy as np

from simgan_histo import stain
from simgan_histo.postprocess import watershed

Maps = Tuple[np.ndarray, np.ndarray]  # (N, H, W) segmentation, detection in [0, 1]


@dataclasses.dataclass
class SegmentationModel:
    """A model as the slide path sees it.

    Attributes:
      predict_maps: (N, H, W, 3) uint8 RGB -> (segmentation, detection), each (N, H, W) or
        (N, H, W, 1) float probabilities.
      mpp: µm/px the model expects (slides are resampled to it).
      stride: input sides must be multiples of this.
      stain_target: Reinhard target (LAB mean, std), None if the model has none.
      instances: (segmentation, detection, image=the tile's normalised RGB) of one tile ->
        (H, W) instance labels.
      name: shown in the run report.
      info: extra facts for the report (e.g. the export's inference.json).
    """

    predict_maps: Callable[[np.ndarray], Maps]
    mpp: float
    stride: int = 1
    stain_target: Optional[stain.Stats] = None
    instances: Callable[..., np.ndarray] = watershed.instances_from_maps
    name: str = "callable"
    info: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not self.mpp or self.mpp <= 0:
            raise ValueError(f"SegmentationModel.mpp={self.mpp!r}: expected > 0")
        if self.stride < 1:
            raise ValueError(f"SegmentationModel.stride={self.stride!r}: expected >= 1")

    def maps(self, batch: np.ndarray) -> Maps:
        """`predict_maps` with shapes checked and a trailing channel axis removed."""
        segmentation, detection = self.predict_maps(batch)
        segmentation, detection = (np.asarray(m, np.float32) for m in (segmentation, detection))
        if segmentation.ndim == 4:
            segmentation, detection = segmentation[..., 0], detection[..., 0]
        expected = batch.shape[:3]
        if segmentation.shape != expected or detection.shape != expected:
            raise ValueError(f"{self.name}: maps {segmentation.shape}/{detection.shape} for a "
                             f"batch of {batch.shape}; expected {expected}")
        return segmentation, detection


def from_api(nucleus_model, info: Optional[dict] = None) -> SegmentationModel:
    """The Python API's model (`simgan_histo.load(dir)`, an `api.NucleusModel`).

    Its settings (µm/px, stride, Reinhard target, watershed thresholds) are used as loaded;
    its own per-image normalisation and windowing are not: the slide path normalises with
    per-slide statistics and tiles the slide itself.
    """
    settings = nucleus_model.settings
    if settings.thresholds.flood_on == "hv":
        raise ValueError(f"{nucleus_model.name}: its inference.json floods the hv maps "
                         f"(flood_on='hv'); the slide path carries only the segmentation and "
                         f"detection maps. Segment tiles with predict.py, or pass "
                         f"thresholds={{'flood_on': 'segmentation'}}.")

    def predict_maps(batch: np.ndarray) -> Maps:
        outputs = nucleus_model.serve(np.asarray(batch, np.float32))
        return outputs["segmentation"], outputs["detection"]

    info = dict(info or {}, thresholds=settings.thresholds.to_json())
    return SegmentationModel(
        predict_maps=predict_maps, mpp=settings.mpp, stride=settings.stride,
        stain_target=settings.stain_target,
        instances=functools.partial(watershed.instances_from_maps,
                                    thresholds=settings.thresholds),
        name=nucleus_model.name, info=info)


def from_export(path, thresholds: Optional[dict] = None) -> SegmentationModel:
    """The exported SavedModel at `path` (`<dir>` = newest version, or `<dir>/<version>`).

    Settings come from its `assets/inference.json` (through `simgan_histo.api.load`);
    `thresholds` (e.g. {"seg_threshold": 0.4}) overrides the stored watershed values.
    """
    # pylint: disable=import-outside-toplevel
    from simgan_histo import api
    from simgan_histo.training import export

    loaded = api.load(path, thresholds=thresholds)
    return from_api(loaded, info=export.load_inference_json(path))


def from_callable(predict_maps: Callable[[np.ndarray], Maps], mpp: float, *, stride: int = 1,
                  stain_target: Optional[stain.Stats] = None,
                  instances: Optional[Callable] = None,
                  name: str = "callable") -> SegmentationModel:
    """A plain function of RGB batches as a model (e.g. an oracle in tests)."""
    return SegmentationModel(predict_maps=predict_maps, mpp=mpp, stride=stride,
                             stain_target=stain_target,
                             instances=instances or watershed.instances_from_maps, name=name)


HEMATOXYLIN_THRESHOLD = 0.045  # H optical density: about the Otsu split of MoNuSeg *train* images


def hematoxylin_maps(batch: np.ndarray) -> Maps:
    """A training-free stand-in for a task net: fixed-threshold hematoxylin + depth detection.

    Segmentation = sigmoid of the smoothed hematoxylin density around a fixed threshold;
    detection = depth inside that foreground (distance to its edge, 3 px -> 0, 6 px -> 1).
    Every output pixel depends only on a neighbourhood about a nucleus wide, so tiled and
    whole-image runs agree: it checks the slide path (parity, seams) when no trained export
    exists. It is not a method to segment with.
    """
    # pylint: disable=import-outside-toplevel
    import cv2
    from scipy import ndimage

    segmentation = np.empty(batch.shape[:3], np.float32)
    detection = np.empty(batch.shape[:3], np.float32)
    for index, rgb in enumerate(np.asarray(batch, np.uint8)):
        hematoxylin = cv2.GaussianBlur(stain.hed(rgb)[..., 0], (0, 0), 1.0)
        segmentation[index] = 1.0 / (1.0 + np.exp(-(hematoxylin - HEMATOXYLIN_THRESHOLD) / 0.008))
        depth = ndimage.distance_transform_edt(segmentation[index] > 0.5)
        detection[index] = np.clip((depth - 3.0) / 3.0, 0.0, 1.0)
    return segmentation, detection


def stand_in_model(mpp: float = 0.25) -> SegmentationModel:
    """`hematoxylin_maps` with the release's watershed, at `mpp` (MoNuSeg: 0.25)."""
    return SegmentationModel(predict_maps=hematoxylin_maps, mpp=mpp, name="hematoxylin-stand-in",
                             info={"note": "training-free stand-in (model.hematoxylin_maps)"})
