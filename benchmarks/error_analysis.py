"""Why is AJI what it is? Per-organ false nuclei, misses, merges, splits, pale-nucleus recall.

Usage: python benchmarks/error_analysis.py --pred=runs/repro/predictions \
    --gt=../shared/datasets/monuseg2018/test/labels [--images=.../test/images] [--json=F]

Organs come from the MoNuSeg manifest. Definitions: `simgan_histo/evaluation/errors.py`.
Last stdout line: one JSON object {"per_group": ..., "per_image": ...}.
"""

import json
import pathlib
import sys

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from simgan_histo.evaluation import errors  # noqa: E402  pylint: disable=wrong-import-position

DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "datasets" / "monuseg2018"
PRED = flags.DEFINE_string("pred", None, "Folder of predicted instance PNGs.")
GT = flags.DEFINE_string("gt", None, "Folder of true instance PNGs.")
IMAGES = flags.DEFINE_string("images", None, "Folder of the RGB images (default: <gt>/../images).")
MANIFEST = flags.DEFINE_string("manifest", str(DATA / "manifest.json"), "Organ per image id.")
JSON = flags.DEFINE_string("json", None, "Also write the JSON here.")


def main(argv):
    del argv
    gt = pathlib.Path(GT.value)
    images = pathlib.Path(IMAGES.value) if IMAGES.value else gt.parent / "images"
    per_image = errors.analyse_folders(PRED.value, gt, images if images.is_dir() else None)
    manifest = pathlib.Path(MANIFEST.value)
    organs = ({entry["id"]: entry["organ"] for entry in json.loads(manifest.read_text())["images"]}
              if manifest.is_file() else {})
    summary = errors.group_errors(per_image, organs)
    print(errors.format_groups(summary))
    result = {"per_group": summary, "per_image": per_image}
    if JSON.value:
        pathlib.Path(JSON.value).write_text(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    flags.mark_flags_as_required(["pred", "gt"])
    app.run(main)
