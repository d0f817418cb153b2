"""History buffer: capacity, sampling without replacement, staging/commit, crash safety, RAM."""

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from simgan_histo import buffer as buffer_lib
from simgan_histo import patch_file
from tests.conftest import REPO

SIZE = 16


def batch_for(step: int, count: int = 4, size: int = SIZE) -> dict:
    """A batch whose every pixel encodes (step, item), so any row tells where it came from."""
    items = np.arange(count)
    value = (step * count + items) % 251
    image = np.broadcast_to(value[:, None, None, None], (count, size, size, 3)).astype(np.uint8)
    return {"image": image, "reference": 255 - image, "mask": image[..., 0] % 8,
            "labels": (image[..., 0].astype(np.uint16) * 7), "source": step + items,
            "weight": np.full(count, 0.5), "step": np.full(count, step)}


def logical_rows(buffer) -> dict:
    return buffer.read(np.arange(len(buffer)))


def replay(path, capacity, staging_rows, last_step, commit_every, seed=3):
    """An uninterrupted buffer that pushed steps 0..last_step and committed like the writer."""
    reference = buffer_lib.HistoryBuffer(path, SIZE, capacity, "{}", seed,
                                         staging_rows=staging_rows)
    for step in range(last_step + 1):
        reference.push(batch_for(step))
        if step % commit_every == commit_every - 1:
            reference.commit(step)
    return reference


def test_row_size_matches_the_design_estimate():
    assert buffer_lib.row_bytes(200) == 200 * 200 * (3 + 3 + 1 + 2) + 4 + 4 + 8  # ≈ 0.36 MB
    assert buffer_lib.staging_rows_needed(100) == 200


def test_fills_in_order_then_replaces_distinct_random_slots(tmp_path):
    buffer = buffer_lib.HistoryBuffer(tmp_path / "b.h5", SIZE, 10, "{}", seed=1, staging_rows=20)
    np.testing.assert_array_equal(buffer.push(batch_for(0)), [0, 1, 2, 3])
    np.testing.assert_array_equal(buffer.push(batch_for(1)), [4, 5, 6, 7])
    crossing = buffer.push(batch_for(2))  # 2 slots left: fills 8, 9, then replaces 2 of 0..7
    np.testing.assert_array_equal(crossing[:2], [8, 9])
    assert len(set(crossing)) == 4 and set(crossing[2:]) <= set(range(8))
    assert len(buffer) == 10
    for step in range(3, 40):
        slots = buffer.push(batch_for(step))
        assert len(set(slots)) == 4  # distinct within a push
    assert len(buffer) == 10
    with h5py.File(tmp_path / "b.h5", "r") as handle:  # fixed size on disk
        assert handle["image"].shape[0] == 30
    steps = logical_rows(buffer)["step"]
    assert len(set(steps)) > 3, "random replacement keeps rows of several ages"
    rows = logical_rows(buffer)
    for item in range(10):  # every field of a row came from the same pushed item
        step, image = rows["step"][item], rows["image"][item]
        match = np.flatnonzero(batch_for(step)["image"][:, 0, 0, 0] == image[0, 0, 0])
        assert match.size == 1
        expected = {k: v[match[0]] for k, v in batch_for(step).items()}
        for name in ("image", "reference", "mask", "labels", "source", "step"):
            np.testing.assert_array_equal(rows[name][item], expected[name])
        assert rows["weight"][item] == np.float32(0.5)
    buffer.close()


def test_replacement_is_a_function_of_seed_and_push_count(tmp_path):
    slots = []
    for name in ("a", "b"):
        buffer = buffer_lib.HistoryBuffer(tmp_path / f"{name}.h5", SIZE, 8, seed=5)
        slots.append([buffer.push(batch_for(step)).tolist() for step in range(6)])
        buffer.close()
    assert slots[0] == slots[1]


def test_sample_is_uniform_without_replacement(tmp_path):
    buffer = buffer_lib.HistoryBuffer(tmp_path / "b.h5", SIZE, 12, seed=0)
    for step in range(3):
        buffer.push(batch_for(step))
    rng = np.random.default_rng(0)
    everything = buffer.sample(12, rng, fields=("image",))["image"][:, 0, 0, 0]
    assert sorted(everything) == list(range(12))  # pixel value = row identity
    counts = np.zeros(12)
    for _ in range(600):
        drawn = buffer.sample(6, rng, fields=("image",))["image"][:, 0, 0, 0]
        assert len(set(drawn)) == 6  # no duplicates within a batch
        counts[drawn] += 1
    expected = 600 * 6 / 12
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))
    with pytest.raises(ValueError, match="holds 12"):
        buffer.sample(13, rng)
    buffer.close()


def test_reopen_shows_exactly_the_committed_state(tmp_path):
    path = tmp_path / "b.h5"
    buffer = buffer_lib.HistoryBuffer(path, SIZE, 6, "{\"x\": 1}", seed=2, staging_rows=16)
    for step in range(4):
        buffer.push(batch_for(step))
    buffer.commit(10)
    committed = logical_rows(buffer)
    for step in range(4, 7):  # staged, never committed
        buffer.push(batch_for(step))
    assert not np.array_equal(logical_rows(buffer)["image"], committed["image"])
    buffer.close()
    reopened = buffer_lib.HistoryBuffer.open(path)
    assert reopened.committed_step == 10 and len(reopened) == 6
    assert reopened.config_json == "{\"x\": 1}"
    for name, values in logical_rows(reopened).items():
        np.testing.assert_array_equal(values, committed[name])
    # Resuming replays the same pushes onto the same slots (bit-exact resume).
    again = [reopened.push(batch_for(step)).tolist() for step in range(4, 7)]
    reopened.close()
    fresh = buffer_lib.HistoryBuffer(tmp_path / "c.h5", SIZE, 6, seed=2, staging_rows=16)
    for step in range(4):
        fresh.push(batch_for(step))
    assert again == [fresh.push(batch_for(step)).tolist() for step in range(4, 7)]
    fresh.close()


def test_open_rolls_back_to_the_checkpointed_commit(tmp_path):
    """Killed between the buffer's commit and the checkpoint's save: open the older commit."""
    path = tmp_path / "b.h5"
    buffer = buffer_lib.HistoryBuffer(path, SIZE, 4, seed=0, staging_rows=16)
    for step in range(3):
        buffer.push(batch_for(step))
    buffer.commit(100)
    at_100 = logical_rows(buffer)
    for step in range(3, 6):
        buffer.push(batch_for(step))
    buffer.commit(200)
    buffer.close()
    with pytest.raises(ValueError, match=r"steps \[100, 200\], not at checkpoint step 150"):
        buffer_lib.HistoryBuffer.open(path, step=150)
    rolled = buffer_lib.HistoryBuffer.open(path, step=100)
    for name, values in logical_rows(rolled).items():
        np.testing.assert_array_equal(values, at_100[name])
    rolled.push(batch_for(9))  # reuses the rows commit 200 held
    rolled.close()
    with pytest.raises(ValueError, match=r"steps \[100\], not at checkpoint step 200"):
        buffer_lib.HistoryBuffer.open(path, step=200)  # the dropped commit is gone
    with pytest.raises(ValueError, match="<= the last committed step"):
        with buffer_lib.HistoryBuffer.open(path) as again:
            again.commit(100)


def test_staging_overflow_is_a_clear_error(tmp_path):
    buffer = buffer_lib.HistoryBuffer(tmp_path / "b.h5", SIZE, 4, seed=0, staging_rows=4)
    buffer.push(batch_for(0))
    buffer.commit(0)
    buffer.push(batch_for(1))  # replaces 4 committed rows: uses the 4 spare rows
    buffer.push(batch_for(2))  # overwrites its own staged rows in place
    buffer.commit(1)
    with pytest.raises(RuntimeError, match="larger staging_rows"):
        buffer.push(batch_for(3))  # 4 committed (step 0) + 4 committed (step 1) rows held
    buffer.close()


def test_bad_input_and_missing_files(tmp_path):
    path = tmp_path / "b.h5"
    with pytest.raises(FileNotFoundError, match="no committed history buffer"):
        buffer_lib.HistoryBuffer.open(path)
    buffer = buffer_lib.HistoryBuffer(path, SIZE, 4)
    with pytest.raises(ValueError, match="missing fields \\['labels'\\]"):
        buffer.push({k: v for k, v in batch_for(0).items() if k != "labels"})
    bad = dict(batch_for(0), image=batch_for(0)["image"][:, :8])
    with pytest.raises(ValueError, match="image has shape"):
        buffer.push(bad)
    buffer.close()
    with pytest.raises(FileExistsError):
        buffer_lib.HistoryBuffer(path, SIZE, 4)
    os.remove(str(path) + ".state.json")
    with pytest.raises(FileNotFoundError, match="state.json"):
        buffer_lib.HistoryBuffer.open(path)
    buffer_lib.HistoryBuffer(path, SIZE, 4, overwrite=True).close()


def test_free_disk_is_checked_before_anything_is_written(tmp_path):
    with pytest.raises(OSError, match=r"needs .* GB .* free"):
        buffer_lib.HistoryBuffer(tmp_path / "b.h5", 200, 10 ** 9)
    assert not list(tmp_path.iterdir())


def test_export_is_an_ordinary_patch_file(tmp_path):
    buffer = buffer_lib.HistoryBuffer(tmp_path / "b.h5", SIZE, 6, "{\"y\": 2}", seed=4)
    for step in range(3):
        buffer.push(batch_for(step))
    expected = logical_rows(buffer)
    buffer.export(tmp_path / "patches.h5")
    buffer.close()
    with patch_file.PatchReader(tmp_path / "patches.h5") as reader:
        assert len(reader) == 6 and reader.config_json == "{\"y\": 2}"
        got = reader.read(range(6))
    for name in patch_file.FIELDS:
        np.testing.assert_array_equal(got[name], expected[name])


def test_remove_deletes_the_file_and_its_commit_record(tmp_path):
    path = tmp_path / "b.h5"
    with buffer_lib.HistoryBuffer(path, SIZE, 6, "", seed=4) as buffer:
        buffer.push(batch_for(0))
        buffer.commit(1)
    sizes = path.stat().st_size + (tmp_path / "b.h5.state.json").stat().st_size
    assert buffer_lib.remove(path) == sizes
    assert sorted(os.listdir(tmp_path)) == []
    with pytest.raises(FileNotFoundError):
        buffer_lib.HistoryBuffer.open(path)
    assert buffer_lib.remove(path) == 0  # nothing left: not an error


WRITER = """
import sys
from simgan_histo import buffer as buffer_lib
from tests.test_buffer import batch_for
path, capacity, staging, every, start = sys.argv[1], *map(int, sys.argv[2:6])
if start == 0:
    buffer = buffer_lib.HistoryBuffer(path, 16, capacity, "{}", 3, staging_rows=staging)
else:
    buffer = buffer_lib.HistoryBuffer.open(path)
step = start
while True:
    buffer.push(batch_for(step))
    if step % every == every - 1:
        buffer.commit(step)
    step += 1
"""


def _committed_step(path):
    try:
        with open(str(path) + ".state.json", encoding="utf-8") as f:
            return json.load(f)["commits"][-1]["step"]
    except (OSError, ValueError):
        return -1


def _run_and_kill(path, start, min_step, delay):
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(path), "40", "80", "5",
                              str(start)], cwd=REPO)
    deadline = time.time() + 60
    while _committed_step(path) < min_step and child.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(delay)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the writer died before it was killed"


@pytest.mark.parametrize("delays", [(0.0, 0.013),
                                    pytest.param((0.031, 0.007), marks=pytest.mark.slow)])
def test_a_killed_writer_leaves_exactly_the_last_commit(tmp_path, delays):
    """kill -9 a writer mid-run, twice (create, then resume): the file reads, bit-exact."""
    path = tmp_path / "b.h5"
    start = 0
    for delay in delays:
        _run_and_kill(path, start, min_step=start + 15, delay=delay)
        with h5py.File(path, "r") as handle:  # structurally sound HDF5, valid schema
            patch_file.validate(handle, path)
            handle["image"][:]
        killed = buffer_lib.HistoryBuffer.open(path)
        step = killed.committed_step
        assert step >= start + 15
        got = logical_rows(killed)
        killed.close()
        expected = replay(tmp_path / f"replay{step}.h5", 40, 80, step, 5)
        for name, values in logical_rows(expected).items():
            np.testing.assert_array_equal(got[name], values, err_msg=name)
        expected.close()
        start = step + 1


def test_a_creator_killed_mid_creation_leaves_no_buffer(tmp_path):
    path = tmp_path / "b.h5"
    code = ("import sys; from simgan_histo import buffer as b; "
            "b.HistoryBuffer(sys.argv[1], 256, 2000)")  # 1.2 GB of zero-fill: killed long before
    child = subprocess.Popen([sys.executable, "-c", code, str(path)], cwd=REPO)
    deadline = time.time() + 30
    while not list(tmp_path.glob("b.h5.tmp*")) and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL, "the creator finished (or failed) before the kill"
    assert not path.exists()
    with pytest.raises(FileNotFoundError):
        buffer_lib.HistoryBuffer.open(path)
    buffer_lib.HistoryBuffer(path, SIZE, 4).close()  # a new creation cleans up the leftovers
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.h5", "b.h5.state.json"]


RAM_PROBE = """
import sys
import numpy as np
from simgan_histo import buffer as buffer_lib
def rss_mb(key):
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith(key)) / 1024
capacity = int(sys.argv[2])
image = np.full((16, 64, 64, 3), 7, np.uint8)
rows = {"image": image, "reference": image, "mask": image[..., 0],
        "labels": image[..., 0].astype(np.uint16)}
base = rss_mb("VmRSS")
buffer = buffer_lib.HistoryBuffer(sys.argv[1], 64, capacity, "{}", 0, staging_rows=64)
for _ in range(capacity // 16 + 8):
    buffer.push(rows)
buffer.commit(1)
rng = np.random.default_rng(0)
for _ in range(50):
    buffer.sample(16, rng)
print(rss_mb("VmHWM") - base)
"""


@pytest.mark.slow
def test_ram_does_not_grow_with_capacity(tmp_path):
    growth = {}
    for capacity in (64, 2048):  # 2.4 MB vs 76 MB of patches at 64²
        out = subprocess.run([sys.executable, "-c", RAM_PROBE, str(tmp_path / f"{capacity}.h5"),
                              str(capacity)], cwd=REPO, capture_output=True, text=True, check=True)
        growth[capacity] = float(out.stdout.strip().splitlines()[-1])
    assert growth[2048] - growth[64] < 15, growth  # far below the 74 MB a RAM copy would add
