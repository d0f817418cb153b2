"""The main job on the default data: each stage of the label-free pipeline, in order.

Stages join here as they land; each writes its outputs under the run's workdir and the
job prints where they are.
"""

import json
import os
import pathlib

from absl import logging

from simgan_histo import config as config_lib
from simgan_histo import sample_data


def describe_slide(path: pathlib.Path) -> dict:
    """Dimensions, levels and µm/px of a slide as OpenSlide reads it."""
    import openslide  # pylint: disable=import-outside-toplevel

    with openslide.OpenSlide(str(path)) as slide:
        return {
            "path": str(path),
            "vendor": slide.properties.get(openslide.PROPERTY_NAME_VENDOR),
            "dimensions": list(slide.dimensions),
            "level_count": slide.level_count,
            "mpp_x": float(slide.properties.get(openslide.PROPERTY_NAME_MPP_X, "nan")),
        }


def run(config: config_lib.Config, workdir: str, slide: str = None) -> dict:
    """Runs the pipeline on `slide` (default: the sample slide) and returns a summary."""
    os.makedirs(workdir, exist_ok=True)
    slide_path = pathlib.Path(slide) if slide else sample_data.sample_slide_path()
    with open(os.path.join(workdir, "config.json"), "w", encoding="utf-8") as f:
        f.write(config.to_json())
    summary = {"slide": describe_slide(slide_path), "workdir": os.path.abspath(workdir)}
    logging.info("slide: %s", json.dumps(summary["slide"]))
    return summary
