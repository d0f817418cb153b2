"""`train_refiner`: the plain-Python loop around `RefinerTrainer` (STYLE §6 `run`).

Per iteration the schedule says which networks update; inputs come in-process from the
synthesis module; refined patches go to the HDF5 history buffer; summaries, checkpoints
and, at the end, the SavedModels of the refiner and the discriminator and a patch file of
the buffer for `train_task.py`.
"""

import collections
import json
import pathlib
import statistics
import time
from typing import Optional

import numpy as np
import tensorflow as tf
from absl import logging
from tqdm import tqdm

from simgan_histo import buffer as buffer_lib
from simgan_histo.training import detection_target
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


def check_resume_config(config, workdir: pathlib.Path) -> None:
    """Compares `config` with the `config.json` of a run that already has checkpoints.

    Networks that differ cannot restore: a clear ValueError. Other science sections (e.g. a
    longer schedule) may differ: a warning. Fields only one side knows are ignored.
    """
    saved_path = workdir / "config.json"
    if not saved_path.exists() or not list((workdir / "checkpoints").glob("ckpt-*.index")):
        return
    saved, current = json.loads(saved_path.read_text()), json.loads(config.to_json())
    differing = sorted(
        section for section, fields in current.items()
        if section != "runtime" and isinstance(fields, dict)
        and isinstance(saved.get(section), dict)
        and any(saved[section][key] != value for key, value in fields.items()
                if key in saved[section]))
    networks = [s for s in differing if s in ("refiner", "discriminator", "task")]
    if networks:
        raise ValueError(f"{workdir} holds a run whose {networks} settings differ from this "
                         "config (another --preset or flags?): its checkpoints cannot be "
                         "restored. Use a new --workdir, or the run's own settings "
                         f"({saved_path}).")
    if differing:
        logging.warning("resuming %s with changed %s settings (was: %s)", workdir, differing,
                        saved_path)


class TrainingLoop:
    """State of one `train_refiner` call: the trainer, the inputs, the buffer, the writer."""

    def __init__(self, config, workdir, inputs, trainer):
        self.config, self.gan = config, config.gan
        self.workdir, self.inputs, self.trainer = workdir, inputs, trainer
        batch = self.gan.batch_size
        self.history = int(round(batch * self.gan.history_fraction))
        trainer.set_batch_sizes(refiner=batch, real=batch, fake=batch, task=batch)
        self.writer = tf.summary.create_file_writer(str(workdir / "tensorboard" / "refiner"))
        self.buffer = None
        self.last = {}

    def _fresh_size(self, history_rows: int) -> int:
        """Fresh patches in a mixed batch: all of it until the buffer can give its share."""
        batch = self.gan.batch_size
        return batch - self.history if self.history and history_rows >= self.history else batch

    def planned_inputs(self, iteration: int, history_rows: int) -> list:
        """The `GanInputs` keys iteration `iteration` will ask for (to prefetch them)."""
        plan = schedule.iteration_at(iteration, self.gan)
        batch, fresh = self.gan.batch_size, self._fresh_size(history_rows)
        keys = [("synthetic", iteration, "refiner", u, batch) for u in range(plan.refiner_updates)]
        keys += [("real", iteration, "discriminator", u, batch)
                 for u in range(plan.discriminator_updates)]
        if plan.discriminator_updates and not plan.refiner_updates:
            keys.append(("synthetic", iteration, "discriminator", 0, fresh))
        keys += [("synthetic", iteration, "task", u, fresh) for u in range(plan.task_updates)]
        return keys

    def prefetch_next(self, iteration: int, end: int) -> None:
        """Asks for iteration + 1's inputs while `iteration` trains."""
        if iteration + 1 >= end:
            return
        plan = schedule.iteration_at(iteration, self.gan)
        pushed = self.gan.batch_size if plan.push and plan.refiner_updates else 0
        rows = min(self.gan.buffer_capacity, len(self.buffer) + pushed)
        self.inputs.request(self.planned_inputs(iteration + 1, rows))

    def fresh_refined(self, iteration: int, role: str, update: int, size: int):
        """Synthetic patches refined by the current G (no update), as uint8."""
        batch = self.inputs.synthetic(iteration, role, update, size)
        refined = self.trainer.refine(tf.constant(batch["image"]), tf.constant(batch["reference"]))
        return dict(batch, initial=batch["image"],
                    image=refiner_trainer.from_model_range(refined))

    def refiner_updates(self, iteration, plan, scalars):
        current, trainer = None, self.trainer
        for update in range(plan.refiner_updates):
            batch = self.inputs.synthetic(iteration, "refiner", update, self.gan.batch_size)
            values, refined = trainer.refiner_step(
                *trainer.distribute(batch["image"], batch["reference"], self.task_mask(batch)),
                plan.adversarial)
            scalars.append(values)
            current = dict(batch, initial=batch["image"],
                           image=refiner_trainer.from_model_range(refined))
        if plan.push and current is not None:
            self.push(iteration, current)
        return current

    def task_mask(self, batch: dict) -> np.ndarray:
        """The batch's bit masks with the bits the task config's targets need."""
        task = self.config.task
        return detection_target.task_mask(batch["mask"], batch["labels"], task)

    def push(self, iteration: int, current: dict) -> None:
        """Refined patches → buffer, with weights from D once D has been trained."""
        gan = self.gan
        trained_d = iteration >= gan.refiner_warmup_steps + gan.discriminator_warmup_steps
        weights = (self.trainer.score(tf.constant(current["image"]),
                                      tf.constant(current["reference"])).numpy()
                   if trained_d else np.ones(len(current["image"]), np.float32))
        self.buffer.push({key: current[key] for key in
                          ("image", "reference", "mask", "labels", "source")}
                         | {"weight": weights.astype(np.float32),
                            "step": np.full(len(weights), iteration, np.int64)})
        self.last["weights"] = weights

    def mixed_fakes(self, iteration, role, update, current):
        """Fresh refined patches plus, once it holds enough, a history share (S+U)."""
        fresh_size = self._fresh_size(len(self.buffer))
        history = None
        if fresh_size < self.gan.batch_size:
            history = gan_data.history_batch(
                self.buffer, self.inputs.seed, iteration,
                "history_d" if role == "discriminator" else "history_task", update, self.history)
        if current is None or len(current["image"]) < fresh_size:
            current = self.fresh_refined(iteration, role, update, fresh_size)
        keys = ("image", "reference", "mask", "labels")
        parts = [{key: current[key][:fresh_size] for key in keys}]
        if history:
            parts.append({key: history[key] for key in keys})
        return {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}, current

    def discriminator_updates(self, iteration, plan, current, scalars):
        trainer = self.trainer
        for update in range(plan.discriminator_updates):
            real = self.inputs.real_pairs(iteration, update, self.gan.batch_size)
            fakes, current = self.mixed_fakes(iteration, "discriminator", update, current)
            scalars.append(trainer.discriminator_step(*trainer.distribute(
                real["image"], real["reference"], fakes["image"], fakes["reference"])))
        return current

    def task_updates(self, iteration, plan, scalars):
        trainer = self.trainer
        for update in range(plan.task_updates):
            batch, _ = self.mixed_fakes(iteration, "task", update, None)
            scalars.append(trainer.task_step(
                *trainer.distribute(batch["image"], batch["reference"], self.task_mask(batch)),
                self.gan.use_importance_weights))

    def iterate(self, iteration: int) -> dict:
        plan = schedule.iteration_at(iteration, self.gan)
        scalars = []
        current = self.refiner_updates(iteration, plan, scalars)
        current = self.discriminator_updates(iteration, plan, current, scalars)
        self.task_updates(iteration, plan, scalars)
        if current is not None and "initial" in current:
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
            phase = schedule.iteration_at(iteration - 1, self.gan).phase
            tf.summary.scalar("schedule/phase", schedule.PHASES.index(phase))
            if "weights" in self.last:
                weights = self.last["weights"]
                tf.summary.histogram("weights/importance", weights)
                low, high = self.gan.importance_clip
                tf.summary.scalar("weights/pushed_mean", float(np.mean(weights)))
                tf.summary.scalar("weights/at_low", float(np.mean(weights <= low)))
                tf.summary.scalar("weights/at_high", float(np.mean(weights >= high)))
            current = self.last.get("current")
            if current is not None:
                grid = np.concatenate([current["initial"], current["image"],
                                       current["reference"]], axis=2)[:4]
                tf.summary.image("patches/initial_refined_reference", grid, max_outputs=4)
        self.writer.flush()
        logging.info("iteration %d (%s): %s, %.2f s/iteration", iteration, phase,
                     ", ".join(f"{k} {v:.4g}" for k, v in sorted(scalars.items())), seconds)


def train_refiner(config, workdir, source, num_iterations: Optional[int] = None,
                  strategy=None, export: bool = True, max_seconds: Optional[float] = None,
                  prefetch: bool = True) -> dict:
    """Trains G, D and the task net on `source` (a `synthesis.TissueSource`).

    Resumes from `workdir` if it holds a checkpoint.

    Args:
      config: the run's `Config`.
      workdir: the run folder (checkpoints, TensorBoard, buffer, config.json, exports).
      source: the real tissue.
      num_iterations: stop at this schedule iteration (default: the whole schedule).
      strategy: a `tf.distribute` strategy (default: the current one, one device).
      export: write the refiner and discriminator SavedModels at the end.
      max_seconds: also stop, with a checkpoint, once this much wall time has passed; the
        same call later continues the schedule.
      prefetch: synthesise the next iteration's inputs on a worker thread (same results).

    Returns:
      A summary dict (also written to `<workdir>/refiner_summary.json`).

    Raises:
      refiner_trainer.NonFiniteLossError: a loss became NaN/inf (last good checkpoint kept).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    check_resume_config(config, workdir)
    (workdir / "config.json").write_text(config.to_json())
    trainer = refiner_trainer.RefinerTrainer(config, workdir, strategy)
    total = schedule.total_iterations(config.gan)
    end = total if num_iterations is None else min(total, num_iterations)
    start = trainer.restore_or_initialize()
    loop = TrainingLoop(config, workdir, gan_data.GanInputs(source, config.runtime.seed, prefetch),
                 trainer)
    loop.buffer = _open_buffer(config, workdir, start)
    started = time.perf_counter()
    try:
        reached = _run(loop, start, end, started + max_seconds if max_seconds else None)
    finally:
        loop.inputs.close()
        loop.buffer.close()
    summary = {"iterations": reached, "resumed_from": start, "total_iterations": total,
               "phase": schedule.iteration_at(max(reached - 1, 0), config.gan).phase,
               "stopped": "end" if reached == end else "time_limit",
               "precision": trainer.precision, "inputs": loop.inputs.counts,
               "seconds": round(time.perf_counter() - started, 2),
               "buffer": str(workdir / BUFFER_NAME)}
    if export:
        summary.update(gan_export.export_all(trainer, workdir, config))
    (workdir / "refiner_summary.json").write_text(json.dumps(summary, indent=2))
    logging.info("refiner training: %s", summary)
    return summary


def _run(loop: TrainingLoop, start: int, end: int, deadline: Optional[float]) -> int:
    """Iterations start..end-1 (or until `deadline`); returns the iteration reached."""
    trainer, gan = loop.trainer, loop.gan
    loop.inputs.request(loop.planned_inputs(start, len(loop.buffer)) if start < end else [])
    # tqdm's own ETA assumes equal iterations; ours weighs the phases (schedule docs).
    bar = tqdm(range(start, end), initial=start, total=end, desc="refiner", disable=None,
               bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}, {rate_fmt}{postfix}]")
    recent = collections.defaultdict(lambda: collections.deque(maxlen=25))
    for iteration in bar:
        tick = time.perf_counter()
        loop.prefetch_next(iteration, end)
        scalars = loop.iterate(iteration)
        refiner_trainer.check_finite(scalars, iteration)
        trainer.step.assign(iteration + 1)
        done = iteration + 1 == end or (deadline is not None and time.perf_counter() >= deadline)
        if (iteration + 1) % gan.summary_every == 0 or done:
            loop.summarise(iteration + 1, scalars, time.perf_counter() - tick)
        if (iteration + 1) % gan.checkpoint_every == 0 or done:
            trainer.save(loop.buffer, iteration + 1)
        phase = schedule.iteration_at(iteration, gan).phase
        recent[phase].append(time.perf_counter() - tick)
        eta = schedule.remaining_seconds(iteration + 1, end, gan, {
            name: statistics.median(seconds) for name, seconds in recent.items()})
        bar.set_postfix_str(f"{phase}, ETA {tqdm.format_interval(eta or 0)}", refresh=False)
        if done:
            bar.close()
            return iteration + 1
    return start
def buffer_patch_file(workdir) -> pathlib.Path:
    """Exports the committed history buffer of a run as an ordinary patch file."""
    workdir = pathlib.Path(workdir)
    out = workdir / "refined_patches.h5"
    with buffer_lib.HistoryBuffer.open(workdir / BUFFER_NAME) as buffer:
        buffer.export(out)
    return out

