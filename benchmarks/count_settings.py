"""Label-free choice of the classical count's watershed settings (issue 9, zero labels).

Usage: python benchmarks/count_settings.py [--protocol=kumar] [--patches=96]
           [--patch_size=400] [--h_grid=...] [--smooth_grid=...]

`SynthesisConfig.count_source="classical"` draws each patch's nucleus count around the number
of nuclei the classical Otsu-H + watershed baseline finds in the tile. Two of the baseline's
own settings (h-maxima height, distance smoothing) were picked on MoNuSeg train labels, and
those hold Kumar's test images, so the count uses settings chosen here instead, with no real
label: synthetic patches (release counts) of the protocol's train images are segmented by the
baseline at each grid point and compared with their own instance maps. The choice minimises
the mean |log((found + 1) / (true + 1))| per patch (true = synthetic nuclei of at least the
baseline's smallest area); AJI against the synthetic maps is reported beside it.
Last stdout line: one JSON object.
"""

import dataclasses
import itertools
import json
import pathlib
import sys

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from simgan_histo import config as config_lib  # pylint: disable=wrong-import-position
from simgan_histo import synthesis  # pylint: disable=wrong-import-position
from simgan_histo.evaluation import baseline  # pylint: disable=wrong-import-position
from simgan_histo.evaluation import protocols  # pylint: disable=wrong-import-position

PROTOCOL = flags.DEFINE_enum("protocol", "kumar", list(protocols.PROTOCOLS), "Data protocol.")
PRESET = flags.DEFINE_string("preset", "cpu_small", "Config preset (its synthesis settings).")
PATCHES = flags.DEFINE_integer("patches", 96, "Synthetic patches to segment per setting.")
PATCH_SIZE = flags.DEFINE_integer("patch_size", 400, "Patch side, px (the baseline's Otsu "
                                  "threshold is per image: larger patches are closer to tiles).")
H_GRID = flags.DEFINE_list("h_grid", ["0.03125", "0.0625", "0.125", "0.25", "0.5"],
                           "h_um values (µm).")
SMOOTH_GRID = flags.DEFINE_list("smooth_grid", ["0", "0.125", "0.25", "0.5"],
                                "distance_smooth_um values (µm).")
DATA = flags.DEFINE_string("data", None, "The monuseg2018 folder (default ../shared/datasets).")
SEED = flags.DEFINE_integer("seed", 77, "Synthesis seed.")
MPP = 0.25


def _grid_ok(values) -> bool:
    try:
        return len(values) > 0 and all(float(value) >= 0 for value in values)
    except ValueError:
        return False


for _grid in (H_GRID, SMOOTH_GRID):
    flags.register_validator(_grid, _grid_ok, f"--{_grid.name} needs one or more numbers >= 0")


def main(argv):
    del argv
    data = pathlib.Path(DATA.value or pathlib.Path(__file__).resolve().parents[2] / "shared" /
                        "datasets" / "monuseg2018")
    train, _ = protocols.protocol_files(data, PROTOCOL.value)  # images only, labels unread
    config = dataclasses.replace(config_lib.get_preset(PRESET.value).synthesis,
                                 patch_size=PATCH_SIZE.value, count_source="release")
    source = synthesis.TissueSource.from_paths(train, config, mpp=MPP)
    batch = synthesis.make_batch(source, SEED.value, range(PATCHES.value))
    rows = []
    for h_um, smooth_um in itertools.product(H_GRID.value, SMOOTH_GRID.value):
        settings = baseline.ClassicalConfig(h_um=float(h_um), distance_smooth_um=float(smooth_um))
        rows.append(baseline.count_score(batch["image"], batch["labels"], settings, MPP))
        print(json.dumps(rows[-1]), flush=True)
    best = min(rows, key=lambda row: (row["mean_abs_log"], -row["aji"]))
    print(json.dumps({"benchmark": "count_settings", "protocol": PROTOCOL.value,
                      "preset": PRESET.value, "patches": PATCHES.value,
                      "patch_size": PATCH_SIZE.value, "seed": SEED.value,
                      "true_per_patch": float(baseline.true_counts(
                          batch["labels"], baseline.ClassicalConfig(), MPP).mean()),
                      "chosen": {"h_um": best["h_um"], "smooth_um": best["smooth_um"]},
                      "rows": rows}))


if __name__ == "__main__":
    app.run(main)
