"""Slide reading speed: tifffile vs OpenSlide backends on a real-H&E JPEG pyramid.

Usage: python benchmarks/wsi_read_speed.py [--side=8192] [--rounds=5]

Builds an Aperio-style JPEG pyramid (Q90, 256² tiles) of MoNuSeg *train* images tiled to
side² px at 0.25 µm/px, then reads 2048² output regions the way the slide path does (read
window at the model's resolution: downsample 1 for a 40× slide, 0.5 when a 20× slide is
upsampled, 2 for a thumbnail-like read) through each backend, interleaved, `--rounds` rounds.
Reports output megapixels per second (median over rounds) and the same-run reference: numpy
fp32 matmul GFLOP/s. Last stdout line: one JSON object.
"""

import json
import pathlib
import statistics
import sys
import tempfile
import time

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, ".")  # run from the checkout

from simgan_histo.wsi import pyramid, reader  # noqa: E402
import same_run  # noqa: E402  (benchmarks/ is first on the path)

FLAGS = flags.FLAGS
flags.DEFINE_integer("side", 8192, "Pyramid side, px.")
flags.DEFINE_integer("rounds", 5, "Interleaved rounds (median reported).")
flags.DEFINE_integer("reads", 4, "Regions read per backend, downsample and round.")
flags.DEFINE_string("images", "../shared/datasets/monuseg2018/train/images", "Real H&E tiles.")

OUTPUT_PX = 2048
DOWNSAMPLES = (1.0, 0.5, 2.0)


def read_rate(slide, downsample: float, boxes) -> float:
    """Output MP/s of reading `boxes` (level-0 x, y) at `downsample`."""
    side = OUTPUT_PX * downsample
    start = time.perf_counter()
    for x, y in boxes:
        slide.read(x, y, side, side, downsample)
    return len(boxes) * OUTPUT_PX ** 2 / 1e6 / (time.perf_counter() - start)


def main(argv):
    del argv
    work = pathlib.Path(tempfile.mkdtemp(prefix="wsi_read_"))
    path = pyramid.write_pyramid(work / "he.svs", same_run.tiled_he(FLAGS.images, FLAGS.side),
                                 0.25, quality=90)
    rng = np.random.default_rng(0)
    rates = {(b, d): [] for b in ("tifffile", "openslide") for d in DOWNSAMPLES}
    references = []
    with reader.open_slide(path, backend="tifffile") as fast, \
            reader.open_slide(path, backend="openslide") as standard:
        for _ in range(FLAGS.rounds):
            references.append(same_run.numpy_matmul_gflops(1024))
            for downsample in DOWNSAMPLES:
                limit = FLAGS.side - OUTPUT_PX * downsample
                boxes = rng.uniform(0, limit, size=(FLAGS.reads, 2)).round()
                for name, slide in (("tifffile", fast), ("openslide", standard)):
                    rates[(name, downsample)].append(read_rate(slide, downsample, boxes))
    result = {f"{name}_mp_per_s_ds{downsample:g}": statistics.median(values)
              for (name, downsample), values in rates.items()}
    for downsample in DOWNSAMPLES:
        result[f"speedup_ds{downsample:g}"] = (result[f"tifffile_mp_per_s_ds{downsample:g}"]
                                               / result[f"openslide_mp_per_s_ds{downsample:g}"])
    result.update(side=FLAGS.side, output_px=OUTPUT_PX, rounds=FLAGS.rounds,
                  matmul_gflops=statistics.median(references))
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
