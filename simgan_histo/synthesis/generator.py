"""Batches of GAN-free patches: in-process for the trainer, or a patch file for users.

Patch i of stream `seed` is a pure function of (source, seed, i), so a batch is the same
whatever other indices it holds, and a file is bit-identical for any number of workers.
Worker pools use the spawn start method (forking after TensorFlow has started can
deadlock, DESIGN §4) and receive the prepared source once, at start-up.
"""

import multiprocessing
import os
import pathlib
import time
from typing import Callable, Dict, Iterator, Optional, Sequence

import cv2
import numpy as np
from absl import logging
from tqdm import auto as tqdm

from simgan_histo import patch_file
from simgan_histo.synthesis import compose

CHUNK = 32  # patches per worker task


def _stack(rows: Sequence[Dict[str, np.ndarray]], fields) -> Dict[str, np.ndarray]:
    return {name: np.stack([row[name] for row in rows]) for name in fields}


def make_batch(source, seed: int, indices: Sequence[int],
               timer: Optional[compose.StageTimer] = None) -> Dict[str, np.ndarray]:
    """Synthetic patches `indices` of stream `seed`, stacked (DESIGN §3 fields).

    Returns:
      image, reference (B, P, P, 3) uint8; mask (B, P, P) uint8 bits 1/2/4; labels
      (B, P, P) uint16 instance ids; source (B,) int32 tile index.
    """
    return compose.synthesize_batch(source.tiles, source.config, seed, indices, timer)


def make_real_pairs(source, seed: int, indices: Sequence[int]) -> Dict[str, np.ndarray]:
    """Real pairs (S′, S) for the discriminator: `image` and `reference` are two disjoint
    crops of one tile; `source` is its index."""
    rows = [compose.real_pair(source.tiles, source.config, seed, int(i)) for i in indices]
    return _stack(rows, ("image", "reference", "source"))


def iterate_batches(source, seed: int, batch_size: int, start: int = 0
                    ) -> Iterator[Dict[str, np.ndarray]]:
    """Endless batches of consecutive patch indices from `start` (in-process, no files)."""
    index = start
    while True:
        yield make_batch(source, seed, range(index, index + batch_size))
        index += batch_size


_WORKER_SOURCE = None


def _init_worker(source) -> None:
    global _WORKER_SOURCE  # pylint: disable=global-statement
    cv2.setNumThreads(1)  # one process per core already
    _WORKER_SOURCE = source


def _work(task):
    seed, start, stop = task
    return make_batch(_WORKER_SOURCE, seed, range(start, stop))


def _batches(source, seed: int, num: int, workers: int) -> Iterator[Dict[str, np.ndarray]]:
    tasks = [(seed, start, min(start + CHUNK, num)) for start in range(0, num, CHUNK)]
    if workers <= 1:
        for task in tasks:
            yield make_batch(source, task[0], range(task[1], task[2]))
        return
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(source,)) as pool:
        yield from pool.imap(_work, tasks)


def synthesize_to_file(source, out_path, num: int, seed: int = 0, workers: int = 1,
                       config_json: str = "", progress: bool = True,
                       transform: Optional[Callable[[dict], dict]] = None) -> dict:
    """Writes exactly `num` synthetic patches to an HDF5 patch file (atomic).

    `transform`, if given, maps each batch before it is written (e.g. refines its images).

    Returns:
      A summary: made, requested, tiles, rejected (tile rejections by reason), empty
      patches, seconds, patches_per_s, workers, out.

    Raises:
      RuntimeError: fewer than `num` patches were made (the message names the shortfall
        and the cause); the destination is then left untouched.
    """
    if num <= 0:
        raise ValueError(f"num={num}: expected > 0")
    started = time.perf_counter()
    made = empty = 0
    writer = patch_file.PatchWriter(out_path, source.config.patch_size, num, config_json)
    bar = tqdm.tqdm(total=num, unit="patch", desc="synthesis", disable=not progress)
    try:
        for batch in _batches(source, seed, num, workers):
            if transform is not None:
                batch = transform(batch)
            writer.append(batch)
            made += len(batch["image"])
            empty += int((batch["labels"].reshape(len(batch["labels"]), -1).max(1) == 0).sum())
            bar.update(len(batch["image"]))
        path = writer.close()
    except BaseException as error:
        writer.abort()
        raise RuntimeError(f"synthesis made {made} of {num} patches (shortfall "
                           f"{num - made}): {type(error).__name__}: {error}") from error
    finally:
        bar.close()
    seconds = time.perf_counter() - started
    summary = {"made": made, "requested": num, "tiles": source.num_tiles,
               "rejected": dict(source.rejections), "empty_patches": empty,
               "seconds": round(seconds, 3), "patches_per_s": round(made / seconds, 1),
               "workers": workers, "out": str(path)}
    logging.info("synthesis summary: %s", summary)
    return summary


def _outline(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`image` with every instance's boundary pixels drawn in green."""
    out = image.copy()
    padded = np.pad(labels, 1, mode="edge")
    inner = padded[1:-1, 1:-1]
    edge = np.zeros(labels.shape, bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        edge |= padded[dy:dy + labels.shape[0], dx:dx + labels.shape[1]] != inner
    out[edge & (labels > 0)] = (0, 255, 0)
    return out


def write_preview(path, batch: Dict[str, np.ndarray], rows: int = 8) -> pathlib.Path:
    """A PNG grid, one patch per row: patch | patch with mask contours | reference."""
    gap = 4
    lines = []
    for i in range(min(rows, len(batch["image"]))):
        cells = [batch["image"][i], _outline(batch["image"][i], batch["labels"][i]),
                 batch["reference"][i]]
        spacer = np.full((cells[0].shape[0], gap, 3), 255, np.uint8)
        lines.append(np.concatenate([cells[0], spacer, cells[1], spacer, cells[2]], axis=1))
        lines.append(np.full((gap, lines[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(lines[:-1], axis=0)
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.png")
    if not cv2.imwrite(str(tmp), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write the preview {path}")
    os.replace(tmp, path)
    return path
