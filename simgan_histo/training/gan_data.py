"""Inputs of the GAN trainer: synthetic batches, real pairs, history samples, augmentation.

Every draw is a function of (seed, iteration, role, update): a resumed run reproduces the
exact batches without saved RNG state (STYLE §6). Augmentation is per sample — random
flips and rot90 applied alike to a patch, its mask and labels, and independently to its
reference (the release drew ONE rotation per run, at graph-build time).
"""

import concurrent.futures
from typing import Dict, Optional

import numpy as np

from simgan_histo import synthesis

ROLES = {"refiner": 1, "discriminator": 2, "task": 3, "history_d": 4, "history_task": 5}
_INDEX_SPACE = 1 << 40  # synthetic patch indices are drawn from [0, 2^40)


def rng_for(seed: int, step: int, role: str, update: int = 0) -> np.random.Generator:
    return np.random.default_rng((seed, step, ROLES[role], update))


def _orient(array: np.ndarray, k: int, flip: bool) -> np.ndarray:
    array = np.rot90(array, k, axes=(0, 1))
    return np.ascontiguousarray(array[:, ::-1] if flip else array)


def augment(batch: Dict[str, np.ndarray], rng: np.random.Generator) -> Dict[str, np.ndarray]:
    """Per-sample rot90/flip; image, mask and labels together, the reference on its own."""
    size = len(batch["image"])
    turns = rng.integers(0, 4, (size, 2))
    flips = rng.integers(0, 2, (size, 2)).astype(bool)
    out = dict(batch)
    for name in ("image", "mask", "labels"):
        if name in batch:
            out[name] = np.stack([_orient(batch[name][i], turns[i, 0], flips[i, 0])
                                  for i in range(size)])
    if "reference" in batch:
        out["reference"] = np.stack([_orient(batch["reference"][i], turns[i, 1], flips[i, 1])
                                     for i in range(size)])
    return out


def synthetic_batch(source, seed: int, step: int, role: str, update: int,
                    batch_size: int) -> Dict[str, np.ndarray]:
    """Fresh synthetic patches (with references) for one update, augmented."""
    rng = rng_for(seed, step, role, update)
    indices = rng.integers(0, _INDEX_SPACE, batch_size)
    return augment(synthesis.make_batch(source, seed, indices), rng)


def real_pair_batch(source, seed: int, step: int, update: int,
                    batch_size: int) -> Dict[str, np.ndarray]:
    """Real pairs (S′, S): two crops of one tissue tile, for the discriminator."""
    rng = rng_for(seed, step, "discriminator", update)
    indices = rng.integers(0, _INDEX_SPACE, batch_size)
    return augment(synthesis.make_real_pairs(source, seed, indices), rng)


def history_batch(buffer, seed: int, step: int, role: str, update: int,
                  size: int) -> Optional[Dict[str, np.ndarray]]:
    """`size` distinct patches from the history buffer, or None while it holds too few."""
    if buffer is None or len(buffer) < size or size == 0:
        return None
    rng = rng_for(seed, step, role, update)
    return augment(buffer.sample(size, rng), rng)


class Prefetcher:
    """Computes inputs on a worker thread ahead of their use.

    Synthesis is numpy/OpenCV work that mostly releases the GIL, so it overlaps TF's steps.
    Results depend only on their arguments, so prefetching never changes a run.
    """

    def __init__(self):
        self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="prefetch")
        self._pending = {}

    def request(self, key, function, *args) -> None:
        if key not in self._pending:
            self._pending[key] = self._pool.submit(function, *args)

    def __contains__(self, key) -> bool:
        return key in self._pending

    def get(self, key, function, *args):
        future = self._pending.pop(key, None)
        return future.result() if future is not None else function(*args)

    def forget(self, keep) -> None:
        """Drops pending results whose key fails `keep(key)` (requested, never used)."""
        for key in [key for key in self._pending if not keep(key)]:
            self._pending.pop(key).cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


class GanInputs:
    """The run's synthetic batches and real pairs, by (step, role, update, size).

    With `prefetch`, `request` starts computing the named batches on a worker thread (the
    loop asks for iteration i + 1 while iteration i trains); a batch that was not requested
    is computed on the spot. Either way the batch is the same.
    """

    def __init__(self, source, seed: int, prefetch: bool = True):
        self.source, self.seed = source, seed
        self._prefetcher = Prefetcher() if prefetch else None
        self.counts = {"prefetched": 0, "on_the_spot": 0}

    def _compute(self, key):
        kind, step, role, update, size = key
        if kind == "real":
            return real_pair_batch(self.source, self.seed, step, update, size)
        return synthetic_batch(self.source, self.seed, step, role, update, size)

    def _get(self, key):
        if self._prefetcher is None or key not in self._prefetcher:
            self.counts["on_the_spot"] += 1
            return self._compute(key)
        self.counts["prefetched"] += 1
        return self._prefetcher.get(key, self._compute, key)

    def synthetic(self, step: int, role: str, update: int, size: int) -> Dict[str, np.ndarray]:
        return self._get(("synthetic", step, role, update, size))

    def real_pairs(self, step: int, update: int, size: int) -> Dict[str, np.ndarray]:
        return self._get(("real", step, "discriminator", update, size))

    def request(self, keys) -> None:
        """Starts computing `keys` (tuples as `_compute` takes them); drops older ones."""
        if self._prefetcher is None or not keys:
            return
        first = min(key[1] for key in keys)
        self._prefetcher.forget(lambda key: key[1] >= first - 1)
        for key in keys:
            self._prefetcher.request(key, self._compute, key)

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()
