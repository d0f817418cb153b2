"""The HDF5 patch-file schema: round trip, atomic writes, validation."""

import h5py
import numpy as np
import pytest

from simgan_histo import patch_file


def _rows(rng, count, size):
    return {
        "image": rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
        "reference": rng.integers(0, 256, (count, size, size, 3), dtype=np.uint8),
        "mask": rng.integers(0, 8, (count, size, size), dtype=np.uint8),
        "labels": rng.integers(0, 70000, (count, size, size)).astype(np.uint16),
        "source": np.arange(count, dtype=np.int32),
    }


def test_round_trip_in_any_order(tmp_path):
    rng = np.random.default_rng(0)
    rows = _rows(rng, 5, 16)
    path = tmp_path / "p.h5"
    with patch_file.PatchWriter(path, 16, 5, '{"a": 1}') as writer:
        writer.append({k: v[:2] for k, v in rows.items()})
        writer.append({k: v[2:] for k, v in rows.items()})
    with patch_file.PatchReader(path) as reader:
        assert len(reader) == 5 and reader.patch_size == 16 and reader.config_json == '{"a": 1}'
        got = reader.read([4, 0, 4, 2])
        runs = reader.read([3, 1, 2, 0, 2], fields=["source"])  # contiguous runs + a repeat
        empty = reader.read([], fields=["image"])
    for name, values in rows.items():
        np.testing.assert_array_equal(got[name], values[[4, 0, 4, 2]])
    np.testing.assert_array_equal(got["weight"], np.ones(4, np.float32))
    np.testing.assert_array_equal(got["step"], -np.ones(4, np.int64))
    np.testing.assert_array_equal(runs["source"], [3, 1, 2, 0, 2])
    assert empty["image"].shape == (0, 16, 16, 3)


def test_short_write_leaves_no_file(tmp_path):
    path = tmp_path / "p.h5"
    writer = patch_file.PatchWriter(path, 8, 3)
    writer.append({k: v for k, v in _rows(np.random.default_rng(1), 2, 8).items()})
    with pytest.raises(ValueError, match="only 2 of 3"):
        writer.close()
    assert not list(tmp_path.iterdir())


def test_error_inside_context_leaves_no_file(tmp_path):
    path = tmp_path / "p.h5"
    with pytest.raises(RuntimeError):
        with patch_file.PatchWriter(path, 8, 3):
            raise RuntimeError("killed")
    assert not list(tmp_path.iterdir())


def test_reader_rejects_foreign_files(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["image"] = np.zeros((1, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="missing datasets"):
        patch_file.PatchReader(path)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        patch_file.PatchReader(text)
    with pytest.raises(FileNotFoundError):
        patch_file.PatchReader(tmp_path / "absent.h5")
