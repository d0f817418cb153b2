"""Flags several scripts share, each defined once: `--mpp`, `--out`, `--workers`,
`--importance_weights`.

They are not in `flags/common.py` because not every script takes them (`train_task.py` has
no `--out`); a flag module that uses one calls `flags.declare_key_flag(name)`, so the script
that adopts that module's key flags lists it in `--help`. The wording covers every use.
"""

from absl import flags

MPP = flags.DEFINE_float(
    "mpp", None, "µm per pixel (level 0) of the input slides, images or tissue files: "
    "overrides what the files record, and stands in where they record nothing. Default: "
    "the files' metadata (predict.py: the images are taken to be at the model's µm/px; "
    "--method=classical: 0.25).", lower_bound=0.0)
OUT = flags.DEFINE_string(
    "out", None, "Where the outputs go: segment_wsi.py and predict.py write into this folder "
    "(segment_wsi.py: <out>/<slide name>/ per slide), synthesize.py writes this HDF5 patch "
    "file.")
WORKERS = flags.DEFINE_integer(
    "workers", None, "Worker processes: synthesis workers (synthesize.py), or the Dask "
    "LocalCluster's workers (segment_wsi.py --engine=dask without --scheduler). Default: the "
    "preset's runtime.workers.", lower_bound=1)



class OnOffParser(flags.BooleanParser):
    """A boolean flag that also reads on/off (`--importance_weights=off`, as the README says)."""

    def parse(self, argument):
        if isinstance(argument, str) and argument.strip().lower() in ("on", "off"):
            return argument.strip().lower() == "on"
        return super().parse(argument)


# train_refiner.py maps it to the GAN loop's task net (GanTrainConfig), train_task.py to the
# task net it trains (TaskConfig): the same switch, Eq. 5, for whichever task net the script
# trains.
IMPORTANCE_WEIGHTS = flags.DEFINE_flag(flags.Flag(
    OnOffParser(), None, "importance_weights", True,
    "Multiply each refined patch's task loss by its importance weight (Eq. 5); "
    "--noimportance_weights (or =off) is the ablation.", boolean=True))

# flag name -> (Config section, field), for `common.to_config` mappings.
WORKERS_OVERRIDE = {"workers": ("runtime", "workers")}
