"""The Dask engine: slides and chunks of tiles as tasks on a cluster (`--engine=dask`).

Per slide, three kinds of task run the same functions as the local engine (`segment`):

    prepare  (one)      → `PreparedSlide` + the missing shards; opens the shard folder
    shards   (several)  → `compute_shards` on a chunk of consecutive missing shards
    merge    (one)      → `merge_slide` once every chunk is done: outputs, report

so the outputs are identical to the local engine's. Every task writes only whole shard
files (atomic renames), so a task retried after its worker died (Dask reschedules the tasks
of a lost worker, and recomputes a lost `PreparedSlide` from its task) rewrites the same
files: no nucleus is lost or duplicated. Workers must see `--out` and the slides at the same
paths (a shared file system, as on a SLURM cluster).

Each worker loads the model once: the tasks carry a model *source* (`batch.ExportModel`),
whose `load()` is cached per process, keyed by the export's version folder.

`dask.distributed` is imported only here, and this module only for `--engine=dask`.
"""

import dataclasses
import logging as std_logging
import os
from typing import Callable, Optional, Sequence

import tqdm
from absl import logging

from simgan_histo.wsi import batch, segment

DEFAULT_TILES_PER_TASK = 8  # 8 tiles of 2048² ≈ 1–2 min of work per task on a CPU core


def _load(source):
    """Worker side: the source's model; TensorFlow gets this worker's share of the cores.

    A source that leaves TF's intra-op threads at 0 (TF: all cores) gets the worker's Dask
    thread count instead, so N worker processes on a node do not each spawn a thread per
    core (dask-jobqueue starts `processes` workers of `cores ÷ processes` threads).
    """
    runtime = getattr(source, "runtime", None)
    if runtime is not None and not runtime.intra_op_threads:
        import distributed  # pylint: disable=import-outside-toplevel
        threads = distributed.get_worker().state.nthreads
        source = dataclasses.replace(source, runtime=dataclasses.replace(
            runtime, intra_op_threads=threads))
    return source.load()


def prepare_task(source, job: batch.Job, out_dir, config, options: dict):
    """Worker side: the prepared slide, its shard folder opened, and the missing shards."""
    prepared = segment.prepare_slide(job.path, _load(source), out_dir, config, job.key,
                                     options["mask_dir"], options["roi"], options["backend"])
    reused = prepared.store.open()
    return prepared, prepared.store.missing(), reused


def shards_task(source, prepared_state, indices: Sequence[int]) -> dict:
    """Worker side: computes and writes shards `indices`; returns the stage timings."""
    return segment.compute_shards(prepared_state[0], _load(source), indices, progress=False)


def merge_task(source, prepared_state, *timings) -> dict:
    """Worker side: merges the slide's shards into its outputs; returns the report."""
    prepared, _, reused = prepared_state
    return segment.merge_slide(prepared, _load(source), timings, engine="dask", reused=reused)


def connect(scheduler: Optional[str], workers: int):
    """A client of `scheduler`, or of a new LocalCluster (processes, one thread each)."""
    import distributed  # pylint: disable=import-outside-toplevel

    if scheduler:
        return distributed.Client(scheduler), None
    # The scheduler runs in this process: keep its INFO chatter out of the run's log.
    std_logging.getLogger("distributed").setLevel(std_logging.WARNING)
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                       dashboard_address=None)
    return distributed.Client(cluster), cluster


def _local_source(source, workers: int):
    """An export source whose TensorFlow shares this machine's cores among the workers."""
    runtime = getattr(source, "runtime", None)
    if runtime is None or runtime.intra_op_threads:
        return source
    threads = max(1, (os.cpu_count() or 1) // workers)
    return dataclasses.replace(source, runtime=dataclasses.replace(
        runtime, intra_op_threads=threads))


class _Driver:
    """Submits each slide's tasks as the previous ones finish; collects the results."""

    def __init__(self, client, source, out_dir, config, options, on_result, tiles_per_task):
        import distributed  # pylint: disable=import-outside-toplevel

        self.client, self.source, self.out_dir = client, source, out_dir
        self.config, self.options, self.on_result = config, options, on_result
        self.shards_per_task = max(1, tiles_per_task // config.batch_size)
        self.completed = distributed.as_completed()
        self.meta = {}  # future -> (kind, job, tiles)
        self.slide_futures = {}  # slide -> its live futures (kept so their data stays)
        self.failed = set()
        progress = options["progress"]
        self.slides_bar = tqdm.tqdm(desc="slides", unit="slide", disable=not progress)
        self.tiles_bar = tqdm.tqdm(desc="tiles", unit="tile", disable=not progress)

    def _submit(self, kind, job, tiles, function, *args, priority=0):
        future = self.client.submit(function, *args, pure=False, priority=priority)
        self.meta[future] = (kind, job, tiles)
        self.slide_futures.setdefault(str(job.path), []).append(future)
        self.completed.add(future)
        return future

    def start(self, job: batch.Job, order: int) -> None:
        self._submit("prepare", job, 0, prepare_task, self.source, job, self.out_dir,
                     self.config, self.options, priority=-order)

    def _prepared(self, future, job: batch.Job, order: int) -> None:
        prepared, missing, _ = future.result()
        ranges = prepared.ranges
        self.tiles_bar.total = (self.tiles_bar.total or 0) + len(prepared.plan.tiles)
        self.tiles_bar.update(len(prepared.plan.tiles)
                              - sum(ranges[i][1] - ranges[i][0] for i in missing))
        chunks = []
        for start in range(0, len(missing), self.shards_per_task):
            group = missing[start:start + self.shards_per_task]
            tiles = sum(ranges[i][1] - ranges[i][0] for i in group)
            chunks.append(self._submit("shards", job, tiles, shards_task, self.source, future,
                                       group, priority=-order))
        self._submit("merge", job, 0, merge_task, self.source, future, *chunks,
                     priority=1 - order)

    def _failed(self, job: batch.Job, error: BaseException) -> None:
        self.failed.add(str(job.path))
        self.client.cancel(self.slide_futures.pop(str(job.path), []))
        self.slides_bar.update(1)
        batch.fail(batch.SlideResult(str(job.path), "failed", error=error),
                   self.options["skip_errors"], self.on_result)

    def finished(self, future, order_of: Callable) -> bool:
        """Handles one finished future; True when its slide is finished (done or failed)."""
        kind, job, tiles = self.meta.pop(future)
        if str(job.path) in self.failed:
            return False
        if future.status != "finished":
            error = (future.exception() if future.status == "error" else
                     RuntimeError(f"task {future.key} of {job.path.name}: {future.status}"))
            self._failed(job, error)
            return True
        if kind == "prepare":
            self._prepared(future, job, order_of(job))
        elif kind == "shards":
            self.tiles_bar.update(tiles)
        else:
            self.slide_futures.pop(str(job.path), None)
            self.slides_bar.update(1)
            self.on_result(batch.SlideResult(str(job.path), "done", report=future.result()))
            return True
        return False

    def close(self) -> None:
        self.slides_bar.close()
        self.tiles_bar.close()


def run_jobs(jobs: Sequence[batch.Job], source, out_dir, config, options: dict,
             on_result: Callable, workers: int = 1, scheduler: Optional[str] = None,
             tiles_per_task: int = DEFAULT_TILES_PER_TASK) -> None:
    """Runs `jobs` on a Dask cluster; calls `on_result` with each slide's `SlideResult`.

    Args:
      jobs: the slides to run (`batch.Job`: path and run key).
      source: the model source (`batch.ExportModel`; anything picklable with `load()`).
      out_dir: the output root (seen by the workers at the same path).
      config: `WsiConfig`.
      options: mask_dir, roi, backend, skip_errors, progress (as `batch.run_batch`).
      on_result: called with each slide's result.
      workers: LocalCluster workers when `scheduler` is None.
      scheduler: a scheduler address (e.g. a dask-jobqueue cluster's `scheduler_address`).
      tiles_per_task: tiles per shards task (rounded down to whole shards).

    Raises:
      batch.SlideFailedError: a slide failed and `options["skip_errors"]` is False.
    """
    client, cluster = connect(scheduler, workers)
    if cluster is not None:
        source = _local_source(source, workers)
    logging.info("dask engine: %d slide(s) on %s (%d workers now)", len(jobs),
                 client.scheduler.address, len(client.scheduler_info().get("workers", {})))
    driver = _Driver(client, source, out_dir, config, options, on_result, tiles_per_task)
    driver.slides_bar.total = len(jobs)
    order = {str(job.path): index for index, job in enumerate(jobs)}
    queue, active = list(jobs), 0
    try:
        while queue or active:
            window = max(4, 2 * len(client.scheduler_info().get("workers", {})))
            while queue and active < window:
                job = queue.pop(0)
                driver.start(job, order[str(job.path)])
                active += 1
            future = next(driver.completed)
            if driver.finished(future, lambda job: order[str(job.path)]):
                active -= 1
    finally:
        driver.close()
        client.close()
        if cluster is not None:
            cluster.close()
