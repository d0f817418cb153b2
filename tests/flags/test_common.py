"""Override order: preset -> flags the user set -> config."""

from absl import flags
from absl.testing import flagsaver
import pytest

from flags import common
from simgan_histo import config as config_lib

FLAGS = flags.FLAGS


@pytest.fixture(autouse=True)
def parsed_flags():
    if not FLAGS.is_parsed():
        FLAGS(["test"])


def test_preset_alone_gives_the_preset():
    with flagsaver.flagsaver(preset="tiny"):
        assert common.to_config(FLAGS) == config_lib.tiny()


def test_flag_defaults_do_not_override_the_preset():
    # --seed defaults to 0; a preset with another seed keeps it unless the user sets --seed.
    seeded = config_lib.tiny().replace(runtime={"seed": 7})
    assert common.apply_overrides(seeded, FLAGS, common.COMMON_OVERRIDES) == seeded


def test_flags_the_user_set_win_over_the_preset():
    FLAGS["precision"].parse("mixed_bfloat16")
    FLAGS["seed"].parse("42")
    try:
        with flagsaver.flagsaver(preset="demo"):
            config = common.to_config(FLAGS)
    finally:
        FLAGS["precision"].unparse()
        FLAGS["seed"].unparse()
    assert config.preset == "demo"
    assert config.runtime.precision == "mixed_bfloat16"
    assert config.runtime.seed == 42
    assert config.task == config_lib.demo().task


def test_extra_mapping_applies_only_set_flags():
    FLAGS["seed"].parse("5")
    try:
        with flagsaver.flagsaver(preset="tiny"):
            config = common.to_config(FLAGS, {"seed": ("synthesis", "placement_tries")})
    finally:
        FLAGS["seed"].unparse()
    assert config.synthesis.placement_tries == 5
