"""The main job on the default data: the whole label-free pipeline, then the slide segmented.

Stages (each resumable, see `pipeline.py`): synthesis from the slide's tissue → refiner and
discriminator with importance weights → task net → SavedModel → `segment_slide` on the
same slide. The sample slide is CC0, so the model it trains is free of data licences.
"""

import pathlib

from absl import logging

from simgan_histo import config as config_lib
from simgan_histo import pipeline
from simgan_histo import sample_data


def run(config: config_lib.Config, workdir, slide=None, progress: bool = True) -> dict:
    """Runs the pipeline on `slide` (default: the sample slide); returns where outputs are."""
    from simgan_histo.wsi import model as model_lib  # pylint: disable=import-outside-toplevel
    from simgan_histo.wsi import segment  # pylint: disable=import-outside-toplevel

    workdir = pathlib.Path(workdir)
    slide_path = pathlib.Path(slide) if slide else sample_data.sample_slide_path()
    records = pipeline.run_labelfree(config, workdir, slide_path)
    segmentation = workdir / "segmentation"
    key = pipeline.stage_key(config, upstream=False)
    report = pipeline.finished(segmentation, key)
    if report is None:
        model = model_lib.from_export(records["task"]["export"])
        report = segment.segment_slide(slide_path, model, segmentation, config.wsi,
                                       progress=progress)
        report = pipeline.mark_finished(segmentation, report, key)
    logging.info("demo finished: %d nuclei", report["nuclei"])
    return {
        "slide": str(slide_path),
        "nuclei": report["nuclei"],
        "outputs": report["outputs"],
        "export": records["task"]["export"],
        "tensorboard": str(workdir),
        "records": records,
    }
