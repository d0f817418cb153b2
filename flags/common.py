"""Flags every script shares, and the override order: preset -> flags the user set -> config.

`to_config` starts from the named preset and replaces only the fields whose flags the user
actually passed (`FlagHolder.present`), so a flag's default never silently overrides a preset.
"""

import dataclasses
from typing import Dict, Tuple

from absl import flags

from simgan_histo import config as config_lib

WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run folder: checkpoints, TensorBoard events, config.json, exports.")
SEED = flags.DEFINE_integer("seed", 0, "Random seed; every random draw is f(seed, step).")
PRESET = flags.DEFINE_enum(
    "preset", "cpu_small", sorted(config_lib.PRESETS),
    "Named configuration: tiny (tests), demo (README job), cpu_small (real CPU runs), "
    "release_2019, paper_2017.")
PRECISION = flags.DEFINE_enum(
    "precision", "float32", list(config_lib.PRECISIONS),
    "Compute precision; mixed_bfloat16 is ~1.9x faster on CPUs with AVX-512 BF16.")

# flag name -> (Config section, field); applied only when the user set the flag.
COMMON_OVERRIDES = {
    "seed": ("runtime", "seed"),
    "precision": ("runtime", "precision"),
}


def apply_overrides(config: config_lib.Config, flag_values: flags.FlagValues,
                    mapping: Dict[str, Tuple[str, str]]) -> config_lib.Config:
    """Returns `config` with each user-set flag in `mapping` written to its (section, field)."""
    sections: Dict[str, dict] = {}
    for flag_name, (section, field) in mapping.items():
        if flag_values[flag_name].present:
            sections.setdefault(section, {})[field] = flag_values[flag_name].value
    updated = {name: dataclasses.replace(getattr(config, name), **fields)
               for name, fields in sections.items()}
    return dataclasses.replace(config, **updated)


def to_config(flag_values: flags.FlagValues, mapping=None) -> config_lib.Config:
    """Preset named by --preset, then the common flags, then `mapping`'s flags the user set."""
    config = config_lib.get_preset(flag_values["preset"].value)
    return apply_overrides(config, flag_values, {**COMMON_OVERRIDES, **(mapping or {})})
