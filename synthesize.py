"""Synthesise GAN-free training patches (paper Fig. 3) into an HDF5 patch file.

Usage: python synthesize.py --ref_dir=tiles/ --out=patches.h5 --num=1000 [--workers=2]
"""

import json

from absl import app
from absl import flags
from absl import logging

from flags import common
from flags import synthesis as synthesis_flags

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(synthesis_flags)
for _name in synthesis_flags.KEY_FLAGS:
    flags.declare_key_flag(_name)

FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = synthesis_flags.to_config(FLAGS)
    from simgan_histo import sample_data  # pylint: disable=import-outside-toplevel
    from simgan_histo import synthesis  # pylint: disable=import-outside-toplevel

    workers = config.runtime.workers
    try:
        ref_dir = FLAGS.ref_dir or sample_data.sample_slide_path()
        logging.info("config %s (hash %s), tissue %s", config.preset, config.hash(), ref_dir)
        source = synthesis.TissueSource.from_paths(
            ref_dir, config.synthesis, mpp=FLAGS.mpp, max_tiles=FLAGS.max_tiles, workers=workers)
        summary = synthesis.synthesize_to_file(source, FLAGS.out, FLAGS.num, config.runtime.seed,
                                               workers, config.to_json())
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        logging.error("%s", error)
        print(f"synthesize.py failed: {error}")
        return 2
    if FLAGS.preview:
        batch = synthesis.make_batch(source, config.runtime.seed, range(min(8, FLAGS.num)))
        summary["preview"] = str(synthesis.write_preview(FLAGS.preview, batch))
    summary["tissue"] = source.summary()
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["out"])
    app.run(main)
