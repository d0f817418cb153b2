"""Training loop of the task net: one `@tf.function` step, checkpoints, summaries, selection.

All mutable state — step, network, optimizer, and the best validation score so far — is in
one `tf.train.Checkpoint` managed in `<workdir>/checkpoints`; batches are a pure function of
(seed, step) (`task_data.TaskBatches`), so a resumed run continues bit-exactly. The weights
of the best evaluation (the stopping point) are kept apart in `<workdir>/best`; with
`TaskConfig.ema_momentum` every evaluation, and so that copy and the export, uses the moving
average of the weights (kept by the optimizer, so it is checkpointed with it).
Scalars go to TensorBoard (`<workdir>/tensorboard/task`) and, for the record, to
`<workdir>/curve.jsonl` (training; with wall and process-CPU seconds since this process
started) and `<workdir>/validation.jsonl` (evaluations).
"""

import concurrent.futures
import contextlib
import json
import pathlib
import time
from typing import Optional

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from simgan_histo import stain
from simgan_histo.evaluation import predict_lib
from simgan_histo.models import task_net
from simgan_histo.training import export
from simgan_histo.training import rescore
from simgan_histo.training import stain_target
from simgan_histo.training import task_data
from simgan_histo.training import task_loss
from simgan_histo.training import task_validation


def _append_jsonl(path: pathlib.Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def _truncate_jsonl(path: pathlib.Path, max_step: int) -> None:
    """Drops records written after the checkpoint we resume from (a killed run's tail)."""
    if not path.exists():
        return
    lines = [line for line in path.read_text().splitlines()
             if line.strip() and json.loads(line)["step"] <= max_step]
    path.write_text("".join(line + "\n" for line in lines))


def learning_rate(task):
    """The task net's learning rate or schedule (indexed by the optimizer's update count)."""
    if task.learning_rate_decay == "cosine":
        return keras.optimizers.schedules.CosineDecay(task.learning_rate, task.train_steps)
    return task.learning_rate


class TaskTrainer:
    """Trains `build_task_net(config.task)` on `batches`, selecting on `validation`."""

    def __init__(self, config, workdir, batches, validation=None, init_weights=None):
        self.config, self.task = config, config.task
        self.init_weights = init_weights  # Keras weights to start from (no checkpoint yet)
        self.workdir = pathlib.Path(workdir)
        self.batches, self.validation = batches, validation
        keras.utils.set_random_seed(config.runtime.seed)  # initial weights = f(seed)
        self.model = task_net.build_task_net(self.task)
        self.optimizer = keras.optimizers.Adam(
            learning_rate(self.task), use_ema=self.task.ema_momentum > 0,
            ema_momentum=self.task.ema_momentum)
        self.optimizer.build(self.model.trainable_variables)
        self.step = tf.Variable(0, dtype=tf.int64, name="step")
        self.best_score = tf.Variable(-np.inf, dtype=tf.float64, name="best_score")
        self.best_step = tf.Variable(-1, dtype=tf.int64, name="best_step")
        # The selected watershed settings as JSON: one variable whatever settings the grid
        # searches, so adding a setting does not break resuming; the export fills any
        # setting missing here from the config.
        self.best_thresholds = tf.Variable("{}", dtype=tf.string, name="best_thresholds_json")
        self.checkpoint = tf.train.Checkpoint(
            step=self.step, task_net=self.model, task_optimizer=self.optimizer,
            best_score=self.best_score, best_step=self.best_step,
            best_thresholds_json=self.best_thresholds)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.workdir / "checkpoints",
                                                  max_to_keep=2)
        self.best_checkpoint = tf.train.Checkpoint(task_net=self.model)
        self.best_manager = tf.train.CheckpointManager(self.best_checkpoint,
                                                       self.workdir / "best", max_to_keep=1)
        self.writer = tf.summary.create_file_writer(str(self.workdir / "tensorboard" / "task"))
        self.jit_compile = self.task.jit_compile == "on" or (
            self.task.jit_compile == "auto"
            and keras.mixed_precision.global_policy().name == "mixed_bfloat16")
        self.task_step = tf.function(self._task_step, jit_compile=self.jit_compile)

    def restore_or_initialize(self) -> int:
        """Restores the latest checkpoint if there is one; returns the step to continue from."""
        latest = self.manager.latest_checkpoint
        if latest:
            try:
                self.checkpoint.restore(latest).assert_existing_objects_matched()
            except AssertionError as error:
                raise RuntimeError(
                    f"task checkpoint {latest} does not match this version's task trainer "
                    f"(written by an older one, or for another task net): delete "
                    f"{self.manager.directory} to rerun the stage ({error})") from error
            logging.info("resumed from %s at step %d", latest, int(self.step))
        elif self.init_weights:
            self._load_init_weights()
            logging.info("task net starts from %s", self.init_weights)
        step = int(self.step)
        _truncate_jsonl(self.workdir / "curve.jsonl", step)
        _truncate_jsonl(self.workdir / "validation.jsonl", step)
        return step

    def _load_init_weights(self) -> None:
        """`init_weights` into the model; with the hv head, into every layer but that head
        (the GAN's task net has none), which keeps its seeded initial weights."""
        if not self.task.hv_head:
            self.model.load_weights(str(self.init_weights))
            return
        base = task_net.build_task_net(task_net.without_hv_head(self.task),
                                       name=self.model.name)
        base.load_weights(str(self.init_weights))
        for layer in base.layers:
            self.model.get_layer(layer.name).set_weights(layer.get_weights())

    def _task_step(self, image, mask, weight, hv=None):
        """One update: Σ-over-pixels sigmoid CE of both heads (and the hv term when the batch
        has `hv` maps), batch mean of w_i·L_i.

        Wrapped by `tf.function` (with XLA if `jit_compile`) as `self.task_step`.
        """
        scaled = tf.cast(image, tf.float32) / 127.5 - 1.0
        with tf.GradientTape() as tape:
            outputs = self.model(scaled, training=True)
            losses = task_loss.weighted_task_loss(
                outputs["logits"], mask, weight, self.task,
                hv=outputs["hv"] if hv is not None else None, hv_true=hv)
        variables = self.model.trainable_variables
        gradients = tape.gradient(losses["loss"], variables)
        self.optimizer.apply(gradients, variables)
        return {"weights/mean": tf.reduce_mean(weight),
                **{f"task/{key}": value for key, value in losses.items()}}

    @contextlib.contextmanager
    def averaged_weights(self):
        """Inside, the model holds the moving average of its weights (if `ema_momentum`)."""
        if not self.optimizer.use_ema:
            yield
            return
        variables = self.model.trainable_variables
        raw = [variable.numpy() for variable in variables]
        self.optimizer.finalize_variable_values(variables)
        try:
            yield
        finally:
            for variable, value in zip(variables, raw):
                variable.assign(value)

    def evaluate(self) -> Optional[dict]:
        """Scores the current (averaged) weights; keeps them if they are the best so far."""
        if self.validation is None:
            return None
        with self.averaged_weights():
            return self._evaluate()

    def _evaluate(self) -> dict:
        step = int(self.step)
        result = task_validation.evaluate(self.model, self.validation, self.task)
        improved = result["score"] > float(self.best_score)
        if improved:
            self.best_score.assign(result["score"])
            self.best_step.assign(step)
            self.best_thresholds.assign(json.dumps(result["thresholds"], sort_keys=True))
            self.best_manager.save(checkpoint_number=step)
        record = {"step": step, "loss": result["loss"], "score": result["score"],
                  **result["thresholds"], **{k: result["scores"][k] for k in
                                             ("aji", "dice1", "dice2", "dice_avg", "pq")}}
        _append_jsonl(self.workdir / "validation.jsonl", record)
        with self.writer.as_default(step=step):
            for key in ("loss", "score", "aji", "dice_avg", "seg_threshold", "det_threshold",
                        "det_sigma", "min_area_px", "compactness", "min_hematoxylin",
                        "merge_solidity", "seed_h"):
                tf.summary.scalar(f"validation/{key}", record[key])
        logging.info("step %d validation %s: %s", step, self.validation.name,
                     {k: v if isinstance(v, str) else round(v, 4)
                      for k, v in record.items() if k != "step"})
        return result

    def run(self, num_steps: int) -> dict:
        """Trains up to step `num_steps` (resuming if possible); returns the selection."""
        start = self.restore_or_initialize()
        self._started = (time.time(), time.process_time())  # for the curve's clock fields
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(self.batches.batch, start) if start < num_steps else None
            for step in tqdm(range(start, num_steps), initial=start, total=num_steps,
                             desc="task net", disable=None):
                batch = pending.result()
                if step + 1 < num_steps:  # prepare the next batch while this one trains
                    pending = pool.submit(self.batches.batch, step + 1)
                scalars = self.task_step(*(tf.constant(batch[key]) for key in
                                           ("image", "mask", "weight", "hv") if key in batch))
                self.step.assign(step + 1)
                self._after_step(step + 1, scalars, last=step + 1 == num_steps)
        return self.selection()

    def _after_step(self, step: int, scalars: dict, last: bool) -> None:
        if step % self.task.summary_every == 0 or last:
            values = {key: float(value) for key, value in scalars.items()}
            with self.writer.as_default(step=step):
                for key, value in values.items():
                    tf.summary.scalar(key, value)
            clock = {"wall_s": round(time.time() - self._started[0], 2),
                     "cpu_s": round(time.process_time() - self._started[1], 2)}
            _append_jsonl(self.workdir / "curve.jsonl", {"step": step, **values, **clock})
            if not np.isfinite(values["task/loss"]):
                raise FloatingPointError(f"task loss is {values['task/loss']} at step {step}")
        if step % self.task.eval_every == 0 or last:
            self.evaluate()
        if step % self.task.checkpoint_every == 0 or last:
            self.manager.save(checkpoint_number=step)
            self.writer.flush()

    def selection(self) -> dict:
        """Loads the stopping point's weights (without validation: the last step's, averaged
        if `ema_momentum`); returns how it and the thresholds were chosen."""
        if self.validation is None or int(self.best_step) < 0:
            if self.optimizer.use_ema:
                self.optimizer.finalize_variable_values(self.model.trainable_variables)
            return {"validation": "none", "step": int(self.step), "metric": None,
                    "score": None, "thresholds": {}}
        self.best_checkpoint.restore(self.best_manager.latest_checkpoint).expect_partial()
        return {"validation": self.validation.name, "step": int(self.best_step),
                "metric": self.task.selection_metric, "score": float(self.best_score),
                "thresholds": json.loads(self.best_thresholds.numpy().decode())}

def _patch_file_mpp(patches, default: float) -> float:
    """µm/px the patch files were synthesised at (their stored config), else `default`."""
    values = set()
    for text in patches.configs():
        try:
            values.add(float(json.loads(text)["synthesis"]["mpp"]))
        except (ValueError, KeyError, TypeError):
            continue
    if len(values) > 1:
        raise ValueError(f"patch files were made at different µm/px {sorted(values)}")
    return values.pop() if values else default


def _validation_set(validation: str, patches):
    """'synthetic' (held-out patches), 'labeled:<dir>', 'patches:<file>' (every patch of a
    separate synthetic patch file) or 'none' → a ValidationSet or None."""
    if validation == "none":
        return None
    if validation == "synthetic":
        if patches is None:
            raise ValueError("validation 'synthetic' needs a patch file; with real labels only, "
                             "use 'labeled:<dir>' (held-out labeled images) or 'none'")
        return task_validation.from_name("synthetic", patches)
    if validation.startswith("labeled:") and len(validation) > len("labeled:"):
        return task_validation.labeled_validation(validation[len("labeled:"):])
    if validation.startswith("patches:") and len(validation) > len("patches:"):
        return task_validation.patch_file_validation(validation[len("patches:"):])
    raise ValueError(f"validation={validation!r}: expected 'synthetic', 'labeled:<dir>', "
                     f"'patches:<file>' or 'none'")


RESCORED_WEIGHTS = "rescored_weights.npy"  # per patch-file row, when --rescore_with is given


def train_task(config, workdir, patch_paths=(), real_dir=None, validation="synthetic",
               rescore_with=None, num_steps=None, export_dir=None, init_weights=None) -> dict:
    """Trains the task net and exports it (the library behind `train_task.py`).

    Args:
      config: the run's `Config` (`task`, `runtime.seed`, `gan.importance_*` for re-scoring).
      workdir: run folder (config.json, checkpoints, TensorBoard, curves).
      patch_paths: patch files (DESIGN §3 schema); may be empty with `real_dir`.
      real_dir: optional real labeled folder (`images/`, `labels/`).
      validation: 'synthetic' (default), 'labeled:<dir>', 'patches:<file>' or 'none'.
      rescore_with: exported discriminator to recompute the patches' weights with.
      num_steps: training steps (default `config.task.train_steps`).
      export_dir: model folder (default `<workdir>/export`).
      init_weights: Keras weights file of the same task net to start from (e.g. the GAN's
        `export/task_net.weights.h5`); ignored when resuming from a checkpoint.

    Returns:
      {"export": version folder, "selection": how the stopping point and thresholds were
       chosen, "stain_target": (mean, std), "real_images": real labeled images used,
       "rescored_weights": the `.npy` of re-scored weights, or None}.
    """

    task, seed = config.task, config.runtime.seed
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json())
    held_out = task.validation_fraction if validation == "synthetic" else 0.0
    patches = (task_data.PatchFiles(patch_paths, held_out, task.max_validation_patches, seed)
               if patch_paths else None)
    rescored = None
    if patches is not None and rescore_with:
        patches.weights = rescore.rescore(patches, rescore_with, config.gan.importance_ratio,
                                          config.gan.importance_clip)
        rescored = _save_weights(workdir / RESCORED_WEIGHTS, patches.weights)
    real = task_data.LabeledImages(real_dir, min_size=task.crop_size) if real_dir else None
    held = _validation_set(validation, patches)
    target = _stain_target(patches, real, seed)
    batches = task_data.TaskBatches(task, patches, real, seed, task.use_importance_weights)
    trainer = TaskTrainer(config, workdir, batches, held, init_weights=init_weights)
    selection = trainer.run(num_steps or task.train_steps)
    mpp = _patch_file_mpp(patches, config.synthesis.mpp) if patches else config.synthesis.mpp
    settings = export.inference_settings(config, target, selection, selection["thresholds"], mpp)
    path = export.export_task_model(trainer.model, export_dir or workdir / "export", config,
                                    settings)
    logging.info("exported %s (selection %s)", path, selection)
    return {"export": path, "selection": selection, "stain_target": target,
            "real_images": len(real) if real is not None else 0, "rescored_weights": rescored}


def _save_weights(path: pathlib.Path, weights: np.ndarray) -> str:
    """The re-scored weights of every patch-file row (`.npy`), written atomically."""
    predict_lib.atomic_write(path, lambda tmp: np.save(tmp, weights), ".npy")
    return str(path)


def _stain_target(patches, real, seed):
    """Pooled LAB statistics of the training tissue: patch references and real images."""
    parts, counts = [], []
    if patches is not None:
        parts.append(stain_target.patch_file_target(patches, seed=seed))
        counts.append(len(patches.train_rows))
    if real is not None:
        parts.append(stain_target.tissue_target(real.images))
        counts.append(len(real))
    return parts[0] if len(parts) == 1 else stain.pooled_stats(parts, counts)
