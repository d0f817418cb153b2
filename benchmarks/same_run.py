"""Same-run references shared by the benchmarks: matmul rates and a tiled H&E test image.

Every benchmark reports its figures next to a matmul rate measured in the same run, so that
figures taken on a loaded machine still compare as ratios (BENCHMARKS.md). This module
defines no flags, so any benchmark may import it (`python benchmarks/<name>.py` puts this
folder first on the import path).
"""

import pathlib
import time

import cv2
import numpy as np


def numpy_matmul_gflops(n: int = 1024, repeats: int = 4) -> float:
    """fp32 numpy matmul rate now, GFLOP/s (BLAS threads as the process has them)."""
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    a @ a  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ a
    return repeats * 2 * n ** 3 / (time.perf_counter() - start) / 1e9


def tf_matmul_gflops(tf, n: int = 2048, repeats: int = 4, dtype=None) -> float:
    """TensorFlow matmul rate now in `dtype` (default float32), GFLOP/s (≈ 213 fp32 idle
    on the 2-core test machine, DESIGN §4)."""
    a, b = tf.random.normal((n, n)), tf.random.normal((n, n))
    if dtype is not None:
        a, b = tf.cast(a, dtype), tf.cast(b, dtype)
    tf.linalg.matmul(a, b).numpy()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        result = tf.linalg.matmul(a, b)
    result.numpy()
    return repeats * 2 * n ** 3 / (time.perf_counter() - start) / 1e9


def tiled_he(images_dir, side: int) -> np.ndarray:
    """The PNG images of `images_dir` (e.g. MoNuSeg train) repeated edge to edge to side² px,
    mirrored left-right on every other pass so no two neighbours repeat exactly."""
    images = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB)
              for p in sorted(pathlib.Path(images_dir).glob("*.png"))]
    if not images:
        raise FileNotFoundError(f"{images_dir}: no PNG images")
    rgb = np.empty((side, side, 3), np.uint8)
    index, tile = 0, images[0].shape[0]
    for y in range(0, side, tile):
        for x in range(0, side, tile):
            image = images[index % len(images)]
            image = image[:, ::-1] if (index // len(images)) % 2 else image
            rgb[y:y + tile, x:x + tile] = image[:side - y, :side - x]
            index += 1
    return rgb
