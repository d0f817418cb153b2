"""The label-free pipeline, stage by stage, resumable from its workdir.

tissue → synthesis (in-process) → refiner/discriminator with importance weights and hard
examples → history buffer (or, with `TaskConfig.training_patches="refined"`, a fresh set
refined by the final refiner) → task net (started from the GAN's jointly trained one, weights
re-scored by the final D, thresholds chosen on held-out synthetic patches) → with
`TaskConfig.self_training_share`, the tissue tiles labelled by that net and a second round
on them and the synthetic patches → exported SavedModel with inference.json.

Each stage writes into its own folder under the workdir and leaves a done-marker, so a
killed run started again with the same command continues where it stopped (the refiner
and task stages also resume mid-stage from their checkpoints). The marker records the
settings the stage was made with (`stage_key`); a run with other settings stops with an
error instead of silently reusing it.
"""

import hashlib
import json
import pathlib
import time
from typing import Optional

from absl import logging

from simgan_histo import api
from simgan_histo import buffer as buffer_lib
from simgan_histo import synthesis
from simgan_histo.training import refined_set
from simgan_histo.training import refiner_run
from simgan_histo.training import self_training
from simgan_histo.training import task_trainer

DONE = "done.json"
VALIDATION_STREAM = 1_000_003  # synthesis seed offset of the fresh validation patches


def stage_key(config, upstream: bool, inputs=()) -> str:
    """Digest of what a stage's output depends on: the config's science, the seed, the
    precision and the stage's `inputs` (e.g. which patches it trained on). The stages before
    the task net (`upstream`) leave out the task section, so that a diagnosis can retrain
    only the task net on a finished refiner stage (`--task_steps`)."""
    science = json.loads(config.to_json())
    runtime = science.pop("runtime")
    if upstream:
        science.pop("task")
    science["runtime"] = {name: runtime[name] for name in ("seed", "precision")}
    science["inputs"] = [str(value) for value in inputs]
    return hashlib.sha256(json.dumps(science, sort_keys=True).encode()).hexdigest()[:12]


def finished(folder: pathlib.Path, key: str) -> Optional[dict]:
    """The finished stage's record, or None.

    Raises:
      ValueError: the stage finished with other settings (markers written before keys
        existed are trusted).
    """
    marker = folder / DONE
    if not marker.exists():
        return None
    record = json.loads(marker.read_text())
    if record.get("stage_key", key) != key:
        raise ValueError(f"{folder} finished with other settings (stage key "
                         f"{record['stage_key']}, this run's {key}): use a new workdir, or "
                         f"delete {folder} to redo that stage")
    return record


def mark_finished(folder: pathlib.Path, record: dict, key: str) -> dict:
    record = dict(record, stage_key=key)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (DONE + ".tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    tmp.replace(folder / DONE)
    return record


def run_labelfree(config, workdir, tissue, mpp: Optional[float] = None,
                  max_tiles: Optional[int] = None, export_dir=None, use_gan: bool = True,
                  real_dir=None) -> dict:
    """Runs (or resumes) every stage; returns {stage: record} with the outputs' paths.

    Args:
      config: the run's `Config`.
      workdir: the run folder.
      tissue: real H&E images/slides (a folder, a file or a list).
      mpp: µm/px of tissue files that do not record it.
      max_tiles: cap on tissue tiles.
      export_dir: where the task model is exported (default `<workdir>/export`).
      use_gan: False = the "no GAN refinement" ablation: the task net trains on the initial
        synthetic patches (written by the synthesis module) instead of refined ones.
      real_dir: optional real labeled folder (`images/`, `labels/`) mixed into the task
        net's batches (the paper's "synthetic + real" row; no longer label-free).
    """
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json())
    export_dir = pathlib.Path(export_dir) if export_dir else workdir / "export"
    records = {}
    started = time.perf_counter()
    source = synthesis.TissueSource.from_paths(tissue, config.synthesis, mpp=mpp,
                                               max_tiles=max_tiles)
    logging.info("tissue: %s", source.summary())
    records["tissue"] = {"summary": source.summary(), "tiles": source.num_tiles}
    if use_gan:
        records["refiner"] = _refiner_stage(config, workdir / "refiner", source)
        patches = records["refiner"]["patches"]
        if config.task.training_patches == "refined":
            records["refined"] = _refined_stage(config, workdir / "refined", source,
                                                records["refiner"]["refiner_export"])
            patches = records["refined"]["patches"]
        rescore = records["refiner"]["discriminator_export"]
        init = records["refiner"].get("task_net_weights") if config.task.init_from_gan else None
        refiner = records["refiner"]["refiner_export"]
    else:
        records["synthesis"] = _synthesis_stage(config, workdir / "synthesis", source)
        patches, rescore, init = records["synthesis"]["patches"], None, None
        refiner = None
    validation = "synthetic"
    if config.task.validation_patches == "fresh":
        records["validation"] = _validation_stage(config, workdir / "validation", source,
                                                  refiner)
        validation = f"patches:{records['validation']['patches']}"
    first, second = self_training.round_steps(config.task)
    if second == 0:
        records["task"] = _task_stage(config, workdir / "task", patches, rescore, export_dir,
                                      real_dir, init, validation)
    else:
        records["first_round"] = _task_stage(
            config.replace(task={"train_steps": first}), workdir / "task", patches, rescore,
            workdir / "task" / "export", real_dir, init, validation)
        records["pseudo"] = _pseudo_stage(config, workdir / "pseudo", source,
                                          records["first_round"]["export"], real_dir)
        start = str(pathlib.Path(records["first_round"]["export"]) / "task_net.keras")
        records["task"] = _task_stage(
            config.replace(task={"train_steps": second}), workdir / "self_training", patches,
            rescore, export_dir, records["pseudo"]["folder"], start, validation)
    records["seconds"] = round(time.perf_counter() - started, 1)
    return records


def real_labeled_images(records: dict) -> int:
    """Real *labeled* images the exported task net saw (pseudo-labelled tissue tiles do not
    count)."""
    if "pseudo" in records:
        return records["pseudo"].get("real_images", 0)
    return records["task"].get("real_images", 0)


def self_training_summary(records: dict) -> Optional[dict]:
    """The self-training rounds, or None when the run has one round."""
    if "pseudo" not in records:
        return None
    return {"first_round": records["first_round"]["selection"],
            "first_round_export": records["first_round"]["export"],
            "tiles": records["pseudo"]["tiles"], "nuclei": records["pseudo"]["nuclei"],
            "skipped": records["pseudo"]["skipped"]}


def _tissue_key(config, source) -> str:
    """The upstream stages' key: the config and which tissue tiles they drew from (by name,
    so a moved data folder still resumes)."""
    return stage_key(config, upstream=True, inputs=[tile.name for tile in source.tiles])


def _refiner_stage(config, folder: pathlib.Path, source) -> dict:
    key = _tissue_key(config, source)
    done = finished(folder, key)
    if not done:
        summary = refiner_run.train_refiner(config, folder, source)
        patches = refiner_run.buffer_patch_file(folder)
        done = mark_finished(folder, dict(summary, patches=str(patches)), key)
    _drop_history(folder, done["patches"])
    return done


def _drop_history(folder: pathlib.Path, patches: str) -> None:
    """Deletes the GAN's history buffer once its patches are exported and the stage is
    marked done: it is preallocated at full capacity (1.95 GB at cpu_small) and only a
    resumed GAN run reads it, which a finished stage never is."""
    freed = buffer_lib.remove(folder / refiner_run.BUFFER_NAME)
    if freed:
        logging.info("removed the finished GAN's history buffer (%.2f GB); its patches are "
                     "in %s", freed / 1e9, patches)


def _refined_stage(config, folder: pathlib.Path, source, refiner_export: str) -> dict:
    """`gan.buffer_capacity` fresh patches of the seed's own stream, refined."""
    return _fresh_patches_stage(config, folder, source, config.gan.buffer_capacity,
                                config.runtime.seed, refiner_export)


def _validation_stage(config, folder: pathlib.Path, source, refiner_export) -> dict:
    """Fresh held-out patches from every tile, from a stream no training stage draws
    (refined by the final refiner when there is one)."""
    count = config.task.max_validation_patches
    return _fresh_patches_stage(config, folder, source, count,
                                config.runtime.seed + VALIDATION_STREAM, refiner_export,
                                inputs=[count])


def _fresh_patches_stage(config, folder: pathlib.Path, source, count: int, seed: int,
                         refiner_export: Optional[str], inputs=()) -> dict:
    """A patch file of `count` new synthetic patches of stream `seed`, each refined by
    `refiner_export` when one is given."""
    key = stage_key(config, upstream=True, inputs=[tile.name for tile in source.tiles]
                    + [refiner_export, *inputs])
    done = finished(folder, key)
    if done:
        return done
    out = folder / "patches.h5"
    if refiner_export:
        summary = refined_set.write_refined_set(source, refiner_export, out, count, seed,
                                                config_json=config.to_json())
    else:
        summary = synthesis.synthesize_to_file(source, out, count, seed=seed,
                                               config_json=config.to_json())
    return mark_finished(folder, dict(summary, patches=str(out)), key)


def _pseudo_stage(config, folder: pathlib.Path, source, first_export: str, real_dir) -> dict:
    """The tissue tiles labelled by the first round's net (plus `real_dir`'s labeled images,
    linked in, for the "+ real data" row)."""
    key = stage_key(config, upstream=False,
                    inputs=[tile.name for tile in source.tiles] + [first_export, real_dir])
    done = finished(folder, key)
    if done:
        return done
    summary = self_training.pseudo_label_tiles(api.load(first_export), source.tiles, folder,
                                               min_size=config.task.crop_size)
    if real_dir:
        summary["real_images"] = self_training.link_labeled(real_dir, folder)
    return mark_finished(folder, summary, key)


def _synthesis_stage(config, folder: pathlib.Path, source) -> dict:
    key = _tissue_key(config, source)
    done = finished(folder, key)
    if done:
        return done
    count = config.gan.buffer_capacity
    out = folder / "patches.h5"
    summary = synthesis.synthesize_to_file(source, out, count, seed=config.runtime.seed,
                                           workers=config.runtime.workers,
                                           config_json=config.to_json())
    return mark_finished(folder, dict(summary, patches=str(out)), key)


def _task_stage(config, folder: pathlib.Path, patches: str, rescore: Optional[str],
                export_dir: pathlib.Path, real_dir=None, init_weights=None,
                validation: str = "synthetic") -> dict:
    # The no-GAN and "+ real data" ablations change the inputs, not the config.
    inputs = (patches, rescore, real_dir, init_weights)
    key = stage_key(config, upstream=False,
                    inputs=inputs + ((validation,) if validation != "synthetic" else ()))
    done = finished(folder, key)
    if done:
        return done
    result = task_trainer.train_task(config, folder, [patches], real_dir=real_dir,
                                     validation=validation, rescore_with=rescore,
                                     export_dir=export_dir, init_weights=init_weights)
    return mark_finished(folder, {"export": str(result["export"]),
                               "selection": result["selection"],
                               "real_images": result["real_images"],
                               "init_weights": init_weights,
                               "rescored_weights": result["rescored_weights"]}, key)
