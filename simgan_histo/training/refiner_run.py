"""`train_refiner`: the plain-Python loop around `RefinerTrainer` (STYLE §6 `run`).

Per iteration the schedule says which networks update; inputs come in-process from the
synthesis module; refined patches go to the HDF5 history buffer; summaries, checkpoints
and, at the end, the SavedModels of the refiner and the discriminator and a patch file of
the buffer for `train_task.py`.
"""

import json
import pathlib
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from simgan_histo import buffer as buffer_lib
from simgan_histo.training import gan_data
from simgan_histo.training import gan_export
from simgan_histo.training import refiner_trainer
from simgan_histo.training import schedule

BUFFER_NAME = "history.h5"


def _open_buffer(config, workdir: pathlib.Path, step: int):
    path = workdir / BUFFER_NAME
    gan = config.gan
    pushes_per_commit = gan.checkpoint_every * gan.k_g * gan.batch_size
    staging = buffer_lib.staging_rows_needed(pushes_per_commit)
    if step > 0 and path.exists():
        return buffer_lib.HistoryBuffer.open(path, step=step)
    return buffer_lib.HistoryBuffer(path, config.synthesis.patch_size, gan.buffer_capacity,
                                    config.to_json(), config.runtime.seed,
                                    staging_rows=staging, overwrite=True)


class _Loop:
    """State of one `train_refiner` call: the trainer, the tissue, the buffer, the writer."""

    def __init__(self, config, workdir, source, trainer):
        self.config, self.gan, self.seed = config, config.gan, config.runtime.seed
        self.workdir, self.source, self.trainer = workdir, source, trainer
        batch = self.gan.batch_size
        self.history = int(round(batch * self.gan.history_fraction))
        trainer.set_batch_sizes(refiner=batch, real=batch, fake=batch, task=batch)
        self.writer = tf.summary.create_file_writer(str(workdir / "tensorboard" / "refiner"))
        self.buffer = None
        self.last = {}

    def fresh_refined(self, iteration: int, role: str, update: int, size: int):
        """Synthetic patches refined by the current G (no update), as uint8."""
        batch = gan_data.synthetic_batch(self.source, self.seed, iteration, role, update, size)
        refined = self.trainer.refine(tf.constant(batch["image"]), tf.constant(batch["reference"]))
        batch["initial"] = batch["image"]
        batch["image"] = refiner_trainer.from_model_range(refined)
        return batch

    def refiner_updates(self, iteration, plan, scalars):
        current = None
        for update in range(plan.refiner_updates):
            batch = gan_data.synthetic_batch(self.source, self.seed, iteration, "refiner", update,
                                             self.gan.batch_size)
            values, refined = self.trainer.refiner_step(
                tf.constant(batch["image"]), tf.constant(batch["reference"]),
                tf.constant(batch["mask"]), plan.adversarial)
            scalars.append(values)
            current = dict(batch, initial=batch["image"],
                           image=refiner_trainer.from_model_range(refined))
        if plan.push and current is not None:
            trained_d = iteration >= self.gan.refiner_warmup_steps + self.gan.discriminator_warmup_steps
            weights = (self.trainer.score(tf.constant(current["image"]),
                                          tf.constant(current["reference"])).numpy()
                       if trained_d else np.ones(len(current["image"]), np.float32))
            self.buffer.push({key: current[key] for key in
                              ("image", "reference", "mask", "labels", "source")}
                             | {"weight": weights.astype(np.float32),
                                "step": np.full(len(weights), iteration, np.int64)})
            self.last["weights"] = weights
        return current

    def mixed_fakes(self, iteration, role, update, current):
        """Half current refined patches, half from history (S+U); all current until it fills."""
        size = self.gan.batch_size
        history = gan_data.history_batch(self.buffer, self.seed, iteration,
                                         "history_d" if role == "discriminator" else "history_task",
                                         update, self.history)
        fresh_size = size - (len(history["image"]) if history else 0)
        if current is None or len(current["image"]) < fresh_size:
            current = self.fresh_refined(iteration, role, update, size)
        parts = [{key: current[key][:fresh_size] for key in ("image", "reference", "mask")}]
        if history:
            parts.append({key: history[key] for key in ("image", "reference", "mask")})
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}, current

    def discriminator_updates(self, iteration, plan, current, scalars):
        for update in range(plan.discriminator_updates):
            real = gan_data.real_pair_batch(self.source, self.seed, iteration, update,
                                            self.gan.batch_size)
            fakes, current = self.mixed_fakes(iteration, "discriminator", update, current)
            scalars.append(self.trainer.discriminator_step(
                tf.constant(real["image"]), tf.constant(real["reference"]),
                tf.constant(fakes["image"]), tf.constant(fakes["reference"])))
            self.last["real"] = real
        return current

    def task_updates(self, iteration, plan, current, scalars):
        for update in range(plan.task_updates):
            batch, current = self.mixed_fakes(iteration, "task", update, None)
            scalars.append(self.trainer.task_step(
                tf.constant(batch["image"]), tf.constant(batch["reference"]),
                tf.constant(batch["mask"]), self.gan.use_importance_weights))

    def iterate(self, iteration: int) -> dict:
        plan = schedule.iteration_at(iteration, self.gan)
        scalars = []
        current = self.refiner_updates(iteration, plan, scalars)
        current = self.discriminator_updates(iteration, plan, current, scalars)
        self.task_updates(iteration, plan, current, scalars)
        if current is not None:
            self.last["current"] = current
        merged = {}
        for values in scalars:
            for key, value in values.items():
                merged.setdefault(key, []).append(float(value))
        return {key: float(np.mean(values)) for key, values in merged.items()}

    def summarise(self, iteration: int, scalars: dict, seconds: float) -> None:
        with self.writer.as_default(step=iteration):
            for key, value in scalars.items():
                tf.summary.scalar(key, value)
            tf.summary.scalar("time/iteration_s", seconds)
            tf.summary.scalar("buffer/size", len(self.buffer))
            if "weights" in self.last:
                weights = self.last["weights"]
                tf.summary.histogram("weights/importance", weights)
                low, high = self.gan.importance_clip
                tf.summary.scalar("weights/at_low", float(np.mean(weights <= low)))
                tf.summary.scalar("weights/at_high", float(np.mean(weights >= high)))
            current = self.last.get("current")
            if current is not None:
                grid = np.concatenate([current["initial"], current["image"],
                                       current["reference"]], axis=2)[:4]
                tf.summary.image("patches/initial_refined_reference", grid, max_outputs=4)
        self.writer.flush()


def train_refiner(config, workdir, source, num_iterations: Optional[int] = None,
                  strategy=None, export: bool = True) -> dict:
    """Trains G, D and the task net on `source` (a `synthesis.TissueSource`).

    Resumes from `workdir` if it holds a checkpoint. Returns a summary dict.

    Raises:
      refiner_trainer.NonFiniteLossError: a loss became NaN/inf (last good checkpoint kept).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json())
    trainer = refiner_trainer.RefinerTrainer(config, workdir, strategy)
    total = schedule.total_iterations(config.gan)
    end = total if num_iterations is None else min(total, num_iterations)
    start = trainer.restore_or_initialize()
    loop = _Loop(config, workdir, source, trainer)
    loop.buffer = _open_buffer(config, workdir, start)
    every, save_every = config.gan.summary_every, config.gan.checkpoint_every
    started = time.perf_counter()
    try:
        for iteration in tqdm(range(start, end), initial=start, total=end, desc="refiner",
                              disable=None):
            tick = time.perf_counter()
            scalars = loop.iterate(iteration)
            refiner_trainer.check_finite(scalars, iteration)
            trainer.step.assign(iteration + 1)
            if (iteration + 1) % every == 0 or iteration + 1 == end:
                loop.summarise(iteration + 1, scalars, time.perf_counter() - tick)
            if (iteration + 1) % save_every == 0 or iteration + 1 == end:
                trainer.save(loop.buffer, iteration + 1)
    finally:
        loop.buffer.close()
    summary = {"iterations": end, "resumed_from": start, "total_iterations": total,
               "seconds": round(time.perf_counter() - started, 2),
               "buffer": str(workdir / BUFFER_NAME)}
    if export:
        summary.update(gan_export.export_all(trainer, workdir, config))
    (workdir / "refiner_summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("refiner training: %s", summary)
    return summary


def buffer_patch_file(workdir) -> pathlib.Path:
    """Exports the committed history buffer of a run as an ordinary patch file."""
    workdir = pathlib.Path(workdir)
    out = workdir / "refined_patches.h5"
    with buffer_lib.HistoryBuffer.open(workdir / BUFFER_NAME) as buffer:
        buffer.export(out)
    return out

