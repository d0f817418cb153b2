"""Python API: an exported task model as an object that segments nuclei in RGB images.

    import simgan_histo
    model = simgan_histo.load("export/")          # newest version, or "export/3"
    labels, polygons, measurements = model.predict_instances(rgb, mpp=0.25)

Everything the model needs travels in its `assets/inference.json` (DESIGN §3): its µm/px,
stride, Reinhard target and watershed thresholds; keyword arguments of `load` override them.
An image is resampled to the model's µm/px (when its own `mpp` is given), normalised with
its own LAB statistics to the model's target, reflect-padded to the stride, cut into
overlapping windows if it is large (each output pixel taken from the window where it is
most central), run through `serving_default`, and the maps are mapped back to the image.
Instances are found at the model's resolution (the thresholds are in its pixels) and then
resampled to the image's own grid.

TensorFlow is imported only by `load`, so this module is cheap to import.
"""

import dataclasses
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from simgan_histo import stain
from simgan_histo.postprocess import morphometry
from simgan_histo.postprocess import polygons as polygons_lib
from simgan_histo.postprocess import watershed
from simgan_histo.training import stain_target

STAIN_METHODS = ("reinhard", "none")
# Maps -> dict with "segmentation", "detection": (1, h, w, 1) float32 for a (1, h, w, 3) batch.
ServeFn = Callable[[np.ndarray], Dict[str, np.ndarray]]


class Instances(NamedTuple):
    """What `predict_instances` returns (unpacks as labels, polygons, measurements)."""

    labels: np.ndarray  # (H, W) uint32, 0 = background, ids 1..N
    polygons: polygons_lib.Polygons  # id -> (K, 2) (x, y) boundary-pixel centres
    measurements: morphometry.Measurements  # column -> (N,) array, rows by id


@dataclasses.dataclass(frozen=True)
class InferenceSettings:
    """The settings an export carries (inference.json) plus the tiling of large images."""

    mpp: float  # µm/px the model works at
    stride: int  # input sides must be multiples of this
    stain_target: Optional[stain.Stats]  # Reinhard target; None = no normalisation
    thresholds: watershed.Thresholds
    tile_size_px: int = 1024  # larger images are cut into windows of this side (model px)
    overlap_px: int = 64  # between windows; each side keeps half (receptive-field margin)

    def __post_init__(self):
        if not self.mpp > 0:
            raise ValueError(f"InferenceSettings.mpp={self.mpp!r}: expected > 0")
        if self.stride < 1:
            raise ValueError(f"InferenceSettings.stride={self.stride!r}: expected >= 1")
        if self.tile_size_px % self.stride or self.tile_size_px <= self.overlap_px:
            raise ValueError(f"InferenceSettings.tile_size_px={self.tile_size_px!r}: expected "
                             f"a multiple of the stride ({self.stride}) and > overlap_px "
                             f"({self.overlap_px})")
        if self.overlap_px < 0:
            raise ValueError(f"InferenceSettings.overlap_px={self.overlap_px!r}: expected >= 0")


def settings_from_json(data: dict, source: str = "inference.json", *,
                       thresholds: Optional[dict] = None, stain_norm: Optional[str] = None,
                       tile_size_px: Optional[int] = None,
                       overlap_px: Optional[int] = None) -> InferenceSettings:
    """Parses inference.json content and applies the caller's overrides (None = keep).

    Raises:
      ValueError: naming `source` and the key, for a missing or malformed setting.
    """
    for key in ("mpp", "stride", "stain_norm", "thresholds"):
        if key not in data:
            raise ValueError(f"{source}: missing key {key!r}")
    norm = data["stain_norm"] or {}
    method = stain_norm or norm.get("method", "none")
    if method not in STAIN_METHODS:
        raise ValueError(f"{source}: stain_norm method {method!r}: expected one of "
                         f"{STAIN_METHODS}")
    target = None
    if method == "reinhard":
        if len(norm.get("lab_mean", ())) != 3 or len(norm.get("lab_std", ())) != 3:
            raise ValueError(f"{source}: stain_norm 'reinhard' needs 3-element lab_mean and "
                             f"lab_std (got {norm})")
        target = stain.stats_from_json(norm)
    limits = watershed.Thresholds.from_json(data["thresholds"]).replace(**(thresholds or {}))
    tiling = {k: v for k, v in (("tile_size_px", tile_size_px), ("overlap_px", overlap_px))
              if v is not None}
    stride = int(data["stride"])
    tiling.setdefault("tile_size_px", max(InferenceSettings.tile_size_px // stride, 1) * stride)
    return InferenceSettings(mpp=float(data["mpp"]), stride=stride, stain_target=target,
                             thresholds=limits, **tiling)


def check_rgb(rgb: np.ndarray, name: str = "image") -> np.ndarray:
    """`rgb` as (H, W, 3) uint8, or a ValueError saying what it is instead."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[-1] != 3:
        raise ValueError(f"{name}: expected an RGB image (H, W, 3), got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"{name}: expected uint8 RGB (0..255), got {rgb.dtype}")
    if min(rgb.shape[:2]) < 1:
        raise ValueError(f"{name}: empty image {rgb.shape}")
    return rgb


def _windows(length: int, tile: int, overlap: int, stride: int = 1):
    """[(start, core_start, core_end)] along one axis; cores partition [0, length).

    Starts are multiples of `stride` (as are `length` and `tile`), so every window sees the
    net's pooling grid where the whole image would: only the receptive field at window
    edges, kept out of the cores by the overlap, can differ.
    """
    if length <= tile:
        return [(0, 0, length)]
    step = max((tile - overlap) // stride * stride, stride)
    starts = list(range(0, length - tile, step)) + [length - tile]
    # Each window answers for the part where it is the most central: cut at the midpoints.
    cuts = [0] + [(starts[i] + tile + starts[i + 1]) // 2 for i in range(len(starts) - 1)]
    cuts.append(length)
    return [(start, cuts[i], cuts[i + 1]) for i, start in enumerate(starts)]


def _resize(image: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (H, W) (area averaging when shrinking)."""
    if image.shape[:2] == tuple(shape):
        return image
    shrinking = shape[0] * shape[1] < image.shape[0] * image.shape[1]
    return cv2.resize(image, (shape[1], shape[0]),
                      interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def _resize_labels(labels: np.ndarray, shape: Tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a label image (pixel centres), ids made consecutive."""
    if labels.shape == tuple(shape):
        return labels
    rows = np.minimum(((np.arange(shape[0]) + 0.5) * labels.shape[0] / shape[0]).astype(int),
                      labels.shape[0] - 1)
    cols = np.minimum(((np.arange(shape[1]) + 0.5) * labels.shape[1] / shape[1]).astype(int),
                      labels.shape[1] - 1)
    return watershed.filter_by_area(labels[rows[:, None], cols[None, :]], 1, labels.size + 1)


class NucleusModel:
    """A task model with its inference settings: RGB image -> maps -> nuclei."""

    def __init__(self, serve: ServeFn, settings: InferenceSettings, name: str = "model"):
        """Wraps `serve` (batch (1, h, w, 3) float32 0..255 -> dict of (1, h, w, 1) maps)."""
        self.serve = serve
        self.settings = settings
        self.name = name

    def __repr__(self) -> str:
        return f"NucleusModel({self.name!r}, mpp={self.settings.mpp})"

    def _scale_shape(self, shape, mpp: Optional[float]) -> Tuple[int, int]:
        """The image's (H, W) at the model's µm/px."""
        if mpp is None:
            return tuple(shape)
        if not mpp > 0:
            raise ValueError(f"mpp={mpp!r}: expected > 0 (µm per pixel of the image)")
        factor = mpp / self.settings.mpp
        return (max(int(round(shape[0] * factor)), 1), max(int(round(shape[1] * factor)), 1))

    def _forward(self, image: np.ndarray) -> Dict[str, np.ndarray]:
        """Maps of a normalised image at model resolution, padded and tiled as needed:
        segmentation and detection (H, W), and hv (H, W, 2) if the model serves it."""
        height, width = image.shape[:2]
        stride = self.settings.stride
        padded = np.pad(image, ((0, -height % stride), (0, -width % stride), (0, 0)),
                        mode="symmetric")
        out = {}
        tile, overlap = self.settings.tile_size_px, self.settings.overlap_px
        for y0, core_y0, core_y1 in _windows(padded.shape[0], tile, overlap, stride):
            for x0, core_x0, core_x1 in _windows(padded.shape[1], tile, overlap, stride):
                window = padded[y0:y0 + tile, x0:x0 + tile].astype(np.float32)[None]
                outputs = self.serve(window)
                for key in ("segmentation", "detection", "hv"):
                    if key not in outputs:
                        continue
                    prediction = np.asarray(outputs[key], np.float32)[0]
                    if key not in out:
                        out[key] = np.zeros(padded.shape[:2] + prediction.shape[2:], np.float32)
                    out[key][core_y0:core_y1, core_x0:core_x1] = prediction[
                        core_y0 - y0:core_y1 - y0, core_x0 - x0:core_x1 - x0]
        return {key: (value[:height, :width] if key == "hv" else value[:height, :width, 0])
                for key, value in out.items()}

    def _model_maps(self, rgb: np.ndarray, mpp: Optional[float]) -> Dict[str, np.ndarray]:
        """`_forward`'s maps at the model's µm/px, after stain normalisation, and the
        normalised image they came from (`image`)."""
        rgb = check_rgb(rgb)
        image = _resize(rgb, self._scale_shape(rgb.shape[:2], mpp))
        source = (stain_target.image_stats(image) if self.settings.stain_target is not None
                  else None)
        if source is not None:
            image = stain.reinhard(image, source, self.settings.stain_target)
        return dict(self._forward(image), image=image)

    def predict_maps(self, rgb: np.ndarray, mpp: Optional[float] = None):
        """Segmentation and detection probabilities on the image's own pixel grid.

        Args:
          rgb: (H, W, 3) uint8 RGB.
          mpp: µm per pixel of `rgb`; None = already at the model's µm/px.

        Returns:
          (segmentation, detection): (H, W) float32 in [0, 1].
        """
        maps = self._model_maps(rgb, mpp)
        shape = np.shape(rgb)[:2]
        return _resize(maps["segmentation"], shape), _resize(maps["detection"], shape)

    def predict_labels(self, rgb: np.ndarray, mpp: Optional[float] = None) -> np.ndarray:
        """Instance labels (H, W) uint32 of the image (watershed at the model's resolution)."""
        return self._labels_and_segmentation(rgb, mpp)[0]

    def _labels_and_segmentation(self, rgb, mpp):
        maps = self._model_maps(rgb, mpp)
        labels = watershed.instances_from_maps(maps["segmentation"], maps["detection"],
                                               self.settings.thresholds, hv=maps.get("hv"),
                                               image=maps["image"])
        shape = np.shape(rgb)[:2]
        return _resize_labels(labels, shape), _resize(maps["segmentation"], shape)

    def predict_instances(self, rgb: np.ndarray, mpp: Optional[float] = None) -> Instances:
        """Nuclei of an RGB image: labels, outlines and per-nucleus measurements.

        Args:
          rgb: (H, W, 3) uint8 RGB.
          mpp: µm per pixel of `rgb`; None = already at the model's µm/px.

        Returns:
          `Instances(labels, polygons, measurements)`, all in the pixels of `rgb`
          (measurements in µm use `mpp`, or the model's µm/px when `mpp` is None).

        Raises:
          ValueError: if `rgb` is not (H, W, 3) uint8 or `mpp` is not positive.
        """
        labels, segmentation = self._labels_and_segmentation(rgb, mpp)
        outlines = polygons_lib.instance_polygons(labels)
        measurements = morphometry.measure_nuclei(
            labels, rgb, segmentation, mpp=mpp or self.settings.mpp, polygons=outlines)
        return Instances(labels, outlines, measurements)


def load(path, *, thresholds: Optional[dict] = None, stain_norm: Optional[str] = None,
         tile_size_px: Optional[int] = None, overlap_px: Optional[int] = None) -> NucleusModel:
    """Loads an exported task model with the settings of its `assets/inference.json`.

    Args:
      path: the export folder `<dir>` (its newest numeric version) or `<dir>/<version>`.
      thresholds: watershed settings overriding the stored ones, e.g.
        {"seg_threshold": 0.4}; None values are ignored.
      stain_norm: "reinhard" or "none", overriding the stored method.
      tile_size_px, overlap_px: windowing of large images (model px).

    Returns:
      A `NucleusModel`.

    Raises:
      FileNotFoundError: no export or no inference.json at `path`.
      ValueError: malformed inference.json or overrides.
    """
    from simgan_histo import tf_setup  # pylint: disable=import-outside-toplevel

    tf = tf_setup.import_tensorflow()
    from simgan_histo.training import export  # pylint: disable=import-outside-toplevel

    version_dir = export.resolve_export_dir(path)
    settings = settings_from_json(
        export.load_inference_json(version_dir), str(version_dir / "assets" / "inference.json"),
        thresholds=thresholds, stain_norm=stain_norm, tile_size_px=tile_size_px,
        overlap_px=overlap_px)
    signature = export.load_serving_function(version_dir)

    def serve(batch: np.ndarray) -> Dict[str, np.ndarray]:
        outputs = signature(image=tf.constant(batch, tf.float32))
        return {key: value.numpy() for key, value in outputs.items()}

    return NucleusModel(serve, settings, name=str(version_dir))
