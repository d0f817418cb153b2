"""Stage markers: a finished stage is reused only by a run with the same settings."""

import json

import pytest

from simgan_histo import config as config_lib
from simgan_histo import pipeline


def test_stage_key_follows_the_settings_each_stage_depends_on():
    base = config_lib.tiny()
    for upstream in (True, False):
        key = pipeline.stage_key(base, upstream)
        assert key == pipeline.stage_key(config_lib.tiny(), upstream)
        assert key != pipeline.stage_key(base.replace(runtime={"seed": 1}), upstream)
        assert key != pipeline.stage_key(base.replace(gan={"joint_steps": 3}), upstream)
        assert key != pipeline.stage_key(base.replace(runtime={"precision": "mixed_bfloat16"}),
                                         upstream)
        assert key != pipeline.stage_key(base, upstream, inputs=("synthesis/patches.h5",))
    more_steps = base.replace(task={"train_steps": 5})
    assert pipeline.stage_key(more_steps, True) == pipeline.stage_key(base, True)
    assert pipeline.stage_key(more_steps, False) != pipeline.stage_key(base, False)
    # Runtime settings other than the seed and the precision do not change what a stage makes.
    assert pipeline.stage_key(base.replace(runtime={"workers": 2}), False) == \
        pipeline.stage_key(base, False)


def test_finished_stage_is_reused_only_with_its_own_key(tmp_path):
    folder = tmp_path / "task"
    assert pipeline.finished(folder, "aaa") is None
    record = pipeline.mark_finished(folder, {"export": "x"}, "aaa")
    assert record == {"export": "x", "stage_key": "aaa"}
    assert pipeline.finished(folder, "aaa") == record
    with pytest.raises(ValueError, match="finished with other settings.*aaa.*bbb"):
        pipeline.finished(folder, "bbb")
    # A marker from before the keys existed is trusted.
    (folder / pipeline.DONE).write_text(json.dumps({"export": "y"}))
    assert pipeline.finished(folder, "bbb") == {"export": "y"}
