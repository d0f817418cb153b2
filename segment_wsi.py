"""Segment the nuclei of whole slides: tiles, task net, watershed, GeoJSON / CSV / QC outputs.

Usage: python segment_wsi.py --slides='cohort/*.svs,more/' --out=out/ [--model=runs/demo/export]
           [--skip_errors] [--engine=dask [--scheduler=tcp://host:8786 | --workers=4]]
"""

from absl import app
from absl import flags
from absl import logging

from flags import common
from flags import wsi as wsi_flags

flags.adopt_module_key_flags(common)
flags.adopt_module_key_flags(wsi_flags)

FLAGS = flags.FLAGS


def _log_summary(summary: dict) -> None:
    for entry in summary["slides"]:
        if entry["status"] == "failed":
            logging.error("%s: FAILED (%s: %s)", entry["slide"], entry["error_type"],
                          entry["message"])
            continue
        logging.info("%s: %s, %d nuclei on %.2f mm² of tissue; outputs:\n  %s%s",
                     entry["slide"], entry["status"], entry["nuclei"], entry["tissue_mm2"],
                     "\n  ".join(entry["outputs"]),
                     "".join(f"\n  WARNING: {w}" for w in entry["warnings"]))
    logging.info("%d slide(s) done, %d skipped (done before), %d failed, %d with warnings "
                 "(%d with 0 nuclei on tissue); %d nuclei; summary: %s/batch_report.json",
                 summary["done"], summary["skipped"], summary["failed"],
                 summary["with_warnings"], summary["zero_nuclei"], summary["nuclei"], FLAGS.out)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        roi = wsi_flags.parse_roi(FLAGS.roi)
        config = wsi_flags.to_config(FLAGS)
    except ValueError as error:
        raise app.UsageError(str(error)) from error

    from simgan_histo.wsi import batch  # pylint: disable=import-outside-toplevel
    source = batch.ExportModel(FLAGS.model, runtime=config.runtime)
    try:  # slides are checked before TensorFlow and the model load
        summary = batch.run_batch(FLAGS.slides, source, FLAGS.out, config.wsi,
                                  mask_dir=FLAGS.mask_dir, roi=roi,
                                  skip_errors=FLAGS.skip_errors, workers=config.runtime.workers,
                                  scheduler=FLAGS.scheduler)
    except (batch.SlideFailedError, FileNotFoundError, ValueError) as error:
        logging.error("%s", error)
        return 2
    _log_summary(summary)
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    flags.mark_flags_as_required(["slides", "out"])
    app.run(main)
