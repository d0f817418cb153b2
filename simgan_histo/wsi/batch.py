"""Many slides: expand `--slides`, skip the finished ones, run the rest, report failures.

`expand_slides` turns files, globs and folders into a sorted, duplicate-free list. A slide is
**done** when `<out>/<stem>/<stem>_report.json` exists and its `run_key` equals this run's
(`shards.run_key`: the slide file, the model, the `WsiConfig`, the mask folder, the ROI);
a report of another model or config is recomputed and overwritten. Unfinished slides resume
from their shards (`segment`). `run_batch` runs the rest on the local engine (this process,
one model load) or the Dask engine (`dask_engine`), then writes `<out>/batch_report.json`;
with `skip_errors` a failing slide is recorded in `<out>/failures.json` and the batch goes
on, otherwise the first failure stops it (`SlideFailedError`).

A model reaches the engines as a *source* with `identity()` (for the run key, without loading
anything) and `load()` (cached per process, so a Dask worker loads it once): `ExportModel`
for a SavedModel export, `LoadedModel` for a model already in memory.
"""

import dataclasses
import glob
import json
import os
import pathlib
import threading
from typing import Callable, Dict, List, Optional, Sequence

import tqdm
from absl import logging

from simgan_histo import config as config_lib
from simgan_histo.wsi import reader, segment, shards, writers

SUFFIXES = tuple(reader.SLIDE_SUFFIXES) + tuple(reader.IMAGE_SUFFIXES)
GLOB_CHARACTERS = "*?["
_LOAD_LOCK = threading.Lock()
_LOADED: Dict[tuple, object] = {}  # this process's loaded exports (ExportModel.load)
LOAD_COUNT = {"loads": 0}  # exports loaded by this process (a test checks one per worker)


class SlideFailedError(RuntimeError):
    """A slide of the batch failed (without `skip_errors`); the cause is chained."""


def _is_slide(path: pathlib.Path) -> bool:
    return path.suffix.lower() in SUFFIXES and not path.name.startswith(".") and (
        path.is_file() or path.suffix.lower() == ".mrxs")


def _expand_item(item: str) -> List[pathlib.Path]:
    path = pathlib.Path(item).expanduser()
    if path.is_dir() and path.suffix.lower() != ".mrxs":
        found = [p for p in path.iterdir() if _is_slide(p)]
        if not found:
            raise ValueError(f"--slides: folder {item!r} holds no slide file "
                             f"({', '.join(SUFFIXES)})")
        return found
    if path.exists():
        return [path]
    if any(character in item for character in GLOB_CHARACTERS):
        matches = [pathlib.Path(p) for p in glob.glob(str(path), recursive=True)]
        found = [p for p in matches if _is_slide(p)]
        if not found:
            raise ValueError(f"--slides: {item!r} matches no slide file"
                             + (f" (only {len(matches)} other files)" if matches else ""))
        return found
    raise ValueError(f"--slides: {item!r}: no such file or folder")


def expand_slides(spec) -> List[pathlib.Path]:
    """Slide paths from files, globs and folders: sorted, each once.

    Args:
      spec: a comma-separated string or a sequence of items; an item is a file, a glob
        (`*`, `?`, `[…]`; `**` recurses) or a folder (its slide and image files, not
        recursive).

    Raises:
      ValueError: an item matches nothing, or two slides share a name (their outputs would
        collide in `<out>/<name>/`).
    """
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [str(item).strip() for item in items if str(item).strip()]
    if not items:
        raise ValueError("--slides: no slide given")
    # Absolute, not resolved: a symlink keeps the name the user gave it (the output folder).
    paths = sorted({pathlib.Path(os.path.abspath(p)) for item in items
                    for p in _expand_item(item)})
    stems: Dict[str, List[str]] = {}
    for path in paths:
        stems.setdefault(path.stem, []).append(str(path))
    clashes = {stem: names for stem, names in stems.items() if len(names) > 1}
    if clashes:
        raise ValueError("--slides: slides share a name, their outputs would collide: "
                         + "; ".join(" vs ".join(names) for names in clashes.values()))
    return paths


def _export_version_dir(path) -> pathlib.Path:
    """`<dir>/<version>` of an export without importing TensorFlow (newest version)."""
    path = pathlib.Path(path)
    if (path / "saved_model.pb").exists():
        return path
    versions = sorted(int(p.name) for p in path.iterdir()
                      if p.is_dir() and p.name.isdigit()) if path.is_dir() else []
    if not versions:
        raise FileNotFoundError(f"{path}: no exported model (expected <dir>/<version>/"
                                f"saved_model.pb)")
    return path / str(versions[-1])


@dataclasses.dataclass(frozen=True)
class ExportModel:
    """A model source: the SavedModel export at `path`, loaded once per process."""

    path: str
    runtime: config_lib.RuntimeConfig = config_lib.RuntimeConfig()
    thresholds: tuple = ()  # watershed overrides as sorted (name, value) pairs

    def identity(self) -> dict:
        """The export's version folder and inference.json (a missing export fails in load())."""
        try:
            version_dir = _export_version_dir(self.path).resolve()
        except FileNotFoundError:
            return {"export": os.path.abspath(self.path), "inference": None}
        settings = version_dir / "assets" / "inference.json"
        return {"export": str(version_dir),
                "inference": json.loads(settings.read_text()) if settings.exists() else None,
                "thresholds": dict(self.thresholds)}

    def load(self):
        """The `SegmentationModel` (TensorFlow set up by `runtime` on the first load)."""
        key = (str(_export_version_dir(self.path).resolve()), self.thresholds)
        with _LOAD_LOCK:  # a Dask worker with several threads loads it once too
            return self._load_locked(key)

    def _load_locked(self, key):
        if key not in _LOADED:
            # pylint: disable=import-outside-toplevel
            from simgan_histo import tf_setup
            tf_setup.configure(self.runtime)
            from simgan_histo.wsi import model as model_lib
            _LOADED[key] = model_lib.from_export(self.path,
                                                 thresholds=dict(self.thresholds) or None)
            LOAD_COUNT["loads"] += 1
        return _LOADED[key]


@dataclasses.dataclass
class LoadedModel:
    """A model source wrapping a `SegmentationModel` already in memory."""

    model: object

    def identity(self) -> dict:
        return shards.model_identity(self.model)

    def load(self):
        return self.model


@dataclasses.dataclass
class SlideResult:
    """What became of one slide: "done", "skipped" (already done) or "failed"."""

    slide: str
    status: str
    report: Optional[dict] = None
    error: Optional[BaseException] = None

    def failure(self) -> dict:
        return {"slide": self.slide, "error_type": type(self.error).__name__,
                "message": str(self.error)}

    def summary(self) -> dict:
        if self.status == "failed":
            return dict(self.failure(), status="failed")
        report = self.report or {}
        return {"slide": self.slide, "status": self.status, "nuclei": report.get("nuclei"),
                "tissue_mm2": report.get("tissue_mm2"), "warnings": report.get("warnings", []),
                "outputs": report.get("outputs", [])}


@dataclasses.dataclass
class Job:
    """One slide to run: where it is, its run key, and everything else the engines need."""

    path: pathlib.Path
    key: str


def finished_report(path, out_dir, key: str) -> Optional[dict]:
    """The slide's report if it exists and belongs to run `key`, else None."""
    report_path = segment.outputs_of(path, out_dir).report
    try:
        report = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if report.get("run_key") != key:
        logging.info("%s: outputs of another model/config/slide: recomputing", report_path)
        return None
    return report


def fail(result: SlideResult, skip_errors: bool, on_result: Callable) -> None:
    """Logs and records a failed slide; raises `SlideFailedError` unless `skip_errors`."""
    logging.error("%s failed: %s: %s", result.slide, type(result.error).__name__, result.error)
    on_result(result)
    if not skip_errors:
        raise SlideFailedError(f"{result.slide}: {type(result.error).__name__}: "
                               f"{result.error}") from result.error


def _run_local(jobs: Sequence[Job], source, out_dir, config, options: dict,
               on_result: Callable) -> None:
    """Each slide in this process, one after the other, with one model load."""
    skip_errors, progress = options["skip_errors"], options["progress"]
    ready = []
    for job in jobs:  # cheap checks first: a bad slide fails before the model loads
        try:
            segment.preflight(job.path, config, options["backend"])
            ready.append(job)
        except reader.SlideReadError as error:
            fail(SlideResult(str(job.path), "failed", error=error), skip_errors, on_result)
    model = source.load() if ready else None
    for job in tqdm.tqdm(ready, desc="slides", unit="slide", disable=not progress):
        try:
            report = segment.segment_slide(
                job.path, model, out_dir, config, options["mask_dir"], options["roi"],
                options["backend"], progress=progress, key=job.key)
        except Exception as error:  # pylint: disable=broad-except  # recorded, see fail()
            fail(SlideResult(str(job.path), "failed", error=error), skip_errors, on_result)
        else:
            on_result(SlideResult(str(job.path), "done", report=report))


def run_batch(slides: Sequence, source, out_dir, config, *, mask_dir=None,
              roi: Optional[Sequence[float]] = None, backend: str = "auto",
              skip_errors: bool = False, progress: bool = True, workers: int = 1,
              scheduler: Optional[str] = None, tiles_per_task: Optional[int] = None) -> dict:
    """Segments `slides` (skipping finished ones); returns the batch summary.

    Args:
      slides: slide paths (see `expand_slides`).
      source: an `ExportModel` or `LoadedModel`.
      out_dir: the output root (`<out>/<stem>/` per slide).
      config: `WsiConfig`; `engine` picks "local" or "dask".
      mask_dir, roi, backend: as `segment.segment_slide`.
      skip_errors: record failing slides and go on (else raise at the first).
      progress: tqdm bars (slides overall, tiles per slide).
      workers: LocalCluster workers for the Dask engine without `scheduler`.
      scheduler: a Dask scheduler address.
      tiles_per_task: tiles per Dask task (default `dask_engine.DEFAULT_TILES_PER_TASK`).

    Returns:
      The summary also written to `<out>/batch_report.json`: counts (done, skipped,
      failed, with_warnings, zero_nuclei), total nuclei, and one entry per slide.

    Raises:
      SlideFailedError: a slide failed and `skip_errors` is False.
    """
    out_dir = pathlib.Path(out_dir)
    paths = expand_slides(slides)
    identity = source.identity()
    results: List[SlideResult] = []
    jobs = []
    for path in paths:
        key = shards.run_key(path, identity, config, mask_dir, roi)
        report = finished_report(path, out_dir, key)
        if report is None:
            jobs.append(Job(path, key))
            continue
        logging.info("%s: done already (report %s): skipped", path.name, report["run_key"])
        shards.ShardStore(segment.outputs_of(path, out_dir).shards, key, 0).remove()
        results.append(SlideResult(str(path), "skipped", report=report))
    options = dict(mask_dir=mask_dir, roi=roi, backend=backend, skip_errors=skip_errors,
                   progress=progress)
    if jobs and config.engine == "dask":
        from simgan_histo.wsi import dask_engine  # pylint: disable=import-outside-toplevel
        dask_engine.run_jobs(jobs, source, out_dir, config, options, results.append,
                             workers=workers, scheduler=scheduler,
                             tiles_per_task=tiles_per_task or dask_engine.DEFAULT_TILES_PER_TASK)
    elif jobs:
        _run_local(jobs, source, out_dir, config, options, results.append)
    return _write_summary(out_dir, sorted(results, key=lambda r: r.slide), skip_errors)


def _write_summary(out_dir: pathlib.Path, results: List[SlideResult], skip_errors: bool) -> dict:
    counts = {status: sum(r.status == status for r in results)
              for status in ("done", "skipped", "failed")}
    reports = [r.report for r in results if r.report]
    summary = {
        **counts,
        "with_warnings": sum(bool(report.get("warnings")) for report in reports),
        "zero_nuclei": sum(report.get("nuclei") == 0 and report["tiles"]["processed"] > 0
                           for report in reports),
        "nuclei": sum(report.get("nuclei", 0) for report in reports),
        "slides": [r.summary() for r in results],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    writers.atomic_write_json(out_dir / "batch_report.json", summary)
    failures = out_dir / "failures.json"
    if counts["failed"] and skip_errors:
        writers.atomic_write_json(failures, {"failed": counts["failed"], "failures": [
            r.failure() for r in results if r.status == "failed"]})
    elif failures.exists():
        failures.unlink()  # a stale list from an earlier run
    return summary
