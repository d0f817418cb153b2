"""Export of the task net: SavedModel in TF Serving layout + `assets/inference.json` (DESIGN §3).

Layout written by `export_task_model(model, "<dir>", ...)`:

    <dir>/<version>/saved_model.pb, variables/    signature `serving_default`
    <dir>/<version>/assets/inference.json         settings that travel with the model
    <dir>/<version>/task_net.keras                the Keras model (for fine-tuning)

`<version>` is the next integer (TF Serving serves the largest). The signature takes `image`:
float32 [N, H, W, 3] RGB in 0..255 (H, W multiples of the stride), scales it to [-1, 1]
inside the graph and returns `segmentation` and `detection`: float32 [N, H, W, 1]
probabilities (and `hv` [N, H, W, 2] from a net with the hv head). Instances come from
the marker watershed (`simgan_histo.postprocess`), with the thresholds stored in
`inference.json` under `thresholds`.

`inference.json` keys: `format_version`, `mpp`, `stride`, `stain_norm` {`method`,
`lab_mean`, `lab_std`}, `thresholds` {`seg_threshold`, `det_threshold`, `seg_sigma`,
`det_sigma`, `min_area_px`, `max_area_px`, `compactness`, `flood_on`, `min_hematoxylin`,
`merge_solidity`, `seed_h`, `distance_fill_holes`},
`precision`, `architecture`,
`config_hash`, `git_commit`, `preset`, `selection` (how the stopping point and thresholds
were chosen: validation name, metric, step, score).
"""

import json
import os
import pathlib
import shutil
import subprocess
from typing import Optional

import keras
import tensorflow as tf

from simgan_histo.models import task_net

FORMAT_VERSION = 1
INFERENCE_JSON = "inference.json"
KERAS_FILE = "task_net.keras"
WATERSHED_KEYS = ("seg_threshold", "det_threshold", "seg_sigma", "det_sigma", "min_area_px",
                  "max_area_px", "compactness", "flood_on", "min_hematoxylin", "merge_solidity",
                  "seed_h", "distance_fill_holes")


class TaskServing(tf.Module):
    """The serving wrapper: 0..255 RGB in, per-pixel probabilities out."""

    def __init__(self, model):
        super().__init__(name="task_serving")
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32, name="image")])
    def serve(self, image):
        scaled = image / 127.5 - 1.0  # to_model_range, inside the graph
        outputs = self.model(scaled, training=False)
        # `hv` only from a net with the hv head (TaskConfig.hv_head); keys are fixed at trace.
        return {key: tf.cast(outputs[key], tf.float32)
                for key in ("segmentation", "detection", "hv") if key in outputs}


def _number(value):
    """JSON value: integers stay integers (areas in px), the rest float; names and switches
    stay text and booleans."""
    if isinstance(value, (str, bool)):
        return value
    return int(value) if isinstance(value, int) else float(value)


def git_commit(repo: Optional[pathlib.Path] = None) -> str:
    """HEAD commit of the checkout this code runs from ("unknown" outside git)."""
    repo = repo or pathlib.Path(__file__).resolve().parents[2]
    try:
        result = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True,
                                text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def inference_settings(config, stain_target, selection: Optional[dict] = None,
                       thresholds: Optional[dict] = None, mpp: Optional[float] = None) -> dict:
    """The `inference.json` content for a run.

    Args:
      config: the run's `Config`.
      stain_target: (lab_mean, lab_std) of the training tissue, or None for no normalisation.
      selection: how the stopping point / thresholds were chosen (recorded as given).
      thresholds: selected watershed values overriding `config.task`'s.
      mpp: the model's µm/px (default: `config.synthesis.mpp`).
    """
    watershed = {key: getattr(config.task, key) for key in WATERSHED_KEYS}
    watershed.update(thresholds or {})
    if stain_target is None:
        stain = {"method": "none"}
    else:
        stain = {"method": "reinhard", "lab_mean": [float(v) for v in stain_target[0]],
                 "lab_std": [float(v) for v in stain_target[1]]}
    return {
        "format_version": FORMAT_VERSION,
        "mpp": float(mpp if mpp is not None else config.synthesis.mpp),
        "stride": int(config.task.stride),
        "stain_norm": stain,
        "thresholds": {key: _number(value) for key, value in watershed.items()},
        "precision": config.runtime.precision,
        "architecture": config.task.architecture,
        "preset": config.preset,
        "config_hash": config.hash(),
        "git_commit": git_commit(),
        "selection": selection or {},
    }


def with_precision(model, task_config, precision: str):
    """A copy of the task net computing in `precision` ("float32" or "mixed_bfloat16").

    Weights stay float32 either way; e.g. a float32-trained net served in bfloat16.
    """
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        copy = task_net.build_task_net(task_config, name=model.name)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    copy.set_weights(model.get_weights())
    return copy


def _versions(export_dir: pathlib.Path):
    if not export_dir.is_dir():
        return []
    return sorted(int(p.name) for p in export_dir.iterdir() if p.is_dir() and p.name.isdigit())


def export_task_model(model, export_dir, config, settings: dict) -> pathlib.Path:
    """Writes the next version of the export; returns `<export_dir>/<version>`.

    The version folder appears atomically (written under a temporary name, then renamed).

    Args:
      model: the task net (outputs `segmentation`, `detection`).
      export_dir: the model folder (versions inside).
      config: the run's `Config` (its JSON is stored next to inference.json).
      settings: the `inference.json` dict (see `inference_settings`).
    """
    export_dir = pathlib.Path(export_dir)
    export_dir.mkdir(parents=True, exist_ok=True)
    version = (_versions(export_dir) or [0])[-1] + 1
    tmp = export_dir / f".tmp-{version}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    module = TaskServing(model)
    tf.saved_model.save(module, str(tmp),
                        signatures={"serving_default": module.serve.get_concrete_function()})
    assets = tmp / "assets"
    assets.mkdir(exist_ok=True)
    (assets / INFERENCE_JSON).write_text(json.dumps(settings, indent=2, sort_keys=True))
    (assets / "config.json").write_text(config.to_json())
    model.save(tmp / KERAS_FILE)
    final = export_dir / str(version)
    os.replace(tmp, final)
    return final


def resolve_export_dir(path) -> pathlib.Path:
    """`<dir>/<version>` as given, or the newest version inside `<dir>`.

    Raises:
      FileNotFoundError: no SavedModel at `path` and no numbered version inside it.
    """
    path = pathlib.Path(path)
    if (path / "saved_model.pb").exists():
        return path
    versions = _versions(path)
    if not versions:
        raise FileNotFoundError(f"{path}: no exported model (expected <dir>/<version>/"
                                f"saved_model.pb)")
    return path / str(versions[-1])


def load_inference_json(path) -> dict:
    """The `inference.json` of the export at `path` (`<dir>` = newest version)."""
    version_dir = resolve_export_dir(path)
    settings_path = version_dir / "assets" / INFERENCE_JSON
    if not settings_path.exists():
        raise FileNotFoundError(f"{settings_path}: missing; the export predates inference "
                                f"settings or was not written by simgan_histo")
    return json.loads(settings_path.read_text())


def load_serving_function(path):
    """The `serving_default` signature of the export at `path` (`<dir>` = newest version)."""
    loaded = tf.saved_model.load(str(resolve_export_dir(path)))
    return loaded.signatures["serving_default"]
