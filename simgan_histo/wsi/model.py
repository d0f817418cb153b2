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
      instances: (segmentation, detection) of one tile -> (H, W) instance labels.
      name: shown in the run report.
      info: extra facts for the report (e.g. the export's inference.json).
    """

    predict_maps: Callable[[np.ndarray], Maps]
    mpp: float
    stride: int = 1
    stain_target: Optional[stain.Stats] = None
    instances: Callable[[np.ndarray, np.ndarray], np.ndarray] = watershed.instances_from_maps
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


def _stain_target(settings: dict) -> Optional[stain.Stats]:
    norm = settings.get("stain_norm") or {}
    if norm.get("method") == "reinhard":
        return stain.stats_from_json(norm)
    return None


def _thresholds(settings: dict) -> watershed.Thresholds:
    return watershed.Thresholds.from_json(settings.get("thresholds") or {})


def from_export(path, thresholds: Optional[watershed.Thresholds] = None) -> SegmentationModel:
    """The exported SavedModel at `path` (`<dir>` = newest version, or `<dir>/<version>`).

    Settings (mpp, stride, stain target, watershed thresholds) come from its
    `assets/inference.json`; `thresholds` overrides the stored ones.
    """
    from simgan_histo.training import export  # pylint: disable=import-outside-toplevel
    import tensorflow as tf  # pylint: disable=import-outside-toplevel

    version_dir = export.resolve_export_dir(path)
    settings = export.load_inference_json(version_dir)
    serve = export.load_serving_function(version_dir)

    def predict_maps(batch: np.ndarray) -> Maps:
        outputs = serve(image=tf.constant(np.asarray(batch, np.float32)))
        return outputs["segmentation"].numpy(), outputs["detection"].numpy()

    thresholds = thresholds or _thresholds(settings)
    return SegmentationModel(
        predict_maps=predict_maps, mpp=float(settings["mpp"]),
        stride=int(settings.get("stride", 1)), stain_target=_stain_target(settings),
        instances=functools.partial(watershed.instances_from_maps, thresholds=thresholds),
        name=str(version_dir), info=dict(settings, thresholds=thresholds.to_json()))


def from_callable(predict_maps: Callable[[np.ndarray], Maps], mpp: float, *, stride: int = 1,
                  stain_target: Optional[stain.Stats] = None,
                  instances: Optional[Callable] = None,
                  name: str = "callable") -> SegmentationModel:
    """A plain function of RGB batches as a model (e.g. an oracle in tests)."""
    return SegmentationModel(predict_maps=predict_maps, mpp=mpp, stride=stride,
                             stain_target=stain_target,
                             instances=instances or watershed.instances_from_maps, name=name)
