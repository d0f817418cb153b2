"""Do synthetic patches span the real nucleus densities? (a DIAGNOSIS, issue 9)

Usage: python benchmarks/nucleus_density.py [--protocol=kumar] [--preset=cpu_small]
           [--patches=1024] [--count_source=release|classical]

Synthesises `--patches` patches from the protocol's train images (as the reproduction does)
and counts nuclei per 200² px per source tile, beside the label-free count of the classical
Otsu-H + watershed baseline on the same image (a candidate estimator of a tile's density).
Then, using labels, counts the real nuclei per 200² px of the same train images and of the
test images. The labels are read only to measure the gap; nothing here may be used to choose
a setting (zero labels, DESIGN §5).
Last stdout line: one JSON object.
"""

import dataclasses
import json
import pathlib
import statistics
import sys

import numpy as np
from absl import app
from absl import flags
from scipy import ndimage

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from simgan_histo import config as config_lib  # pylint: disable=wrong-import-position
from simgan_histo import synthesis  # pylint: disable=wrong-import-position
from simgan_histo.evaluation import baseline  # pylint: disable=wrong-import-position
from simgan_histo.evaluation import predict_lib, protocols  # pylint: disable=wrong-import-position
from simgan_histo.synthesis import tissue  # pylint: disable=wrong-import-position

PROTOCOL = flags.DEFINE_enum("protocol", "kumar", list(protocols.PROTOCOLS), "Data protocol.")
PRESET = flags.DEFINE_string("preset", "cpu_small", "Config preset (its synthesis settings).")
PATCHES = flags.DEFINE_integer("patches", 1024, "Synthetic patches to count.")
DATA = flags.DEFINE_string("data", None, "The monuseg2018 folder (default ../shared/datasets).")
SEED = flags.DEFINE_integer("seed", 0, "Synthesis seed.")
COUNT_SOURCE = flags.DEFINE_enum("count_source", None, ["release", "classical"],
                                 "Override SynthesisConfig.count_source (default: the preset's).")
PER = 200  # densities are per PER² px


def real_density(label_path: pathlib.Path) -> float:
    """Nuclei per PER² px of a labelled image."""
    labels = predict_lib.read_labels(label_path)
    return (len(np.unique(labels)) - 1) / (labels.size / PER ** 2)


def classical_densities(image_path: pathlib.Path):
    """(nuclei, Otsu-H foreground components) per PER² px of the classical baseline (no
    labels). The nuclei are those `count_source="classical"` counts: the baseline with the
    count's watershed settings, chosen on synthetic patches (benchmarks/count_settings.py)."""
    rgb = predict_lib.read_rgb(image_path)
    per = rgb.shape[0] * rgb.shape[1] / PER ** 2
    _, components = ndimage.label(baseline.foreground(rgb, baseline.DEFAULT_MPP,
                                                      baseline.ClassicalConfig()))
    return len(tissue.classical_centres(rgb, baseline.DEFAULT_MPP)) / per, components / per


def correlation(pairs) -> float:
    return round(float(np.corrcoef(np.array(pairs, float).T)[0, 1]), 3)


def summary(values) -> dict:
    values = sorted(values)
    return {"min": round(values[0], 1), "median": round(statistics.median(values), 1),
            "max": round(values[-1], 1), "n": len(values)}


def main(argv):
    del argv
    data = pathlib.Path(DATA.value or pathlib.Path(__file__).resolve().parents[2] / "shared" /
                        "datasets" / "monuseg2018")
    train, tests = protocols.protocol_files(data, PROTOCOL.value)
    config = config_lib.get_preset(PRESET.value).synthesis
    if COUNT_SOURCE.value:
        config = dataclasses.replace(config, count_source=COUNT_SOURCE.value)
    source = synthesis.TissueSource.from_paths(train, config, mpp=0.25)
    batch = synthesis.make_batch(source, SEED.value, range(PATCHES.value))
    per_patch = np.array([len(np.unique(labels)) - 1 for labels in batch["labels"]])
    per_patch = per_patch / (config.patch_size ** 2 / PER ** 2)
    rows = []
    for index, tile in enumerate(source.tiles):
        counts = per_patch[batch["source"] == index]
        real = real_density(data / "train" / "labels" / tile.name)
        classical, components = classical_densities(data / "train" / "images" / tile.name)
        rows.append({"image": tile.name, "tile_density": round(float(tile.density), 2),
                     "synthetic": round(float(counts.mean()), 1) if len(counts) else None,
                     "classical": round(classical, 1), "components": round(components, 1),
                     "real": round(real, 1)})
    rows.sort(key=lambda row: row["real"])
    print(f"{'image':28s} {'tile density':>12s} {'synthetic/200²':>15s} {'classical/200²':>15s} "
          f"{'components/200²':>16s} {'real/200²':>10s}")
    for row in rows:
        print(f"{row['image']:28s} {row['tile_density']:12.2f} {row['synthetic']!s:>15s} "
              f"{row['classical']:15.1f} {row['components']:16.1f} {row['real']:10.1f}")
    paired = [(row["synthetic"], row["real"]) for row in rows if row["synthetic"] is not None]
    line = {"benchmark": "nucleus_density", "protocol": PROTOCOL.value, "preset": PRESET.value,
            "count_source": config.count_source,
            "patch_size": config.patch_size, "patches": PATCHES.value, "per_px": PER,
            "synthetic_per_patch": summary(per_patch.tolist()),
            "synthetic_per_tile": summary([s for s, _ in paired]),
            "real_train": summary([row["real"] for row in rows]),
            "real_test": summary([real_density(labels) for _, labels in tests]),
            "correlation_synthetic_real": correlation(paired) if len(paired) > 2 else None,
            **{f"correlation_{name}_real": (correlation([(row[name], row["real"])
                                                         for row in rows])
                                            if len(rows) > 2 else None)
               for name in ("classical", "components")},
            "per_image": rows}
    print(json.dumps(line))


if __name__ == "__main__":
    app.run(main)
