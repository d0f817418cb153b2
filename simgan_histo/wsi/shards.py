"""Per-slide shards: the nuclei of each batch of tiles, saved atomically, merged at the end.

A slide's tissue tiles (row-major, `SlidePlan.tiles`) are cut into shards of `batch_size`
consecutive tiles, one model batch each (`shard_ranges`). A shard is one `.npz` file under
`<out>/<stem>/<stem>_shards/`, written under a temporary name and renamed into place, so a
killed run leaves only whole shards. A rerun with the same **run key** computes only the
missing shards; the merge reads every shard in tile order, so no nucleus is lost or kept
twice and the outputs equal an uninterrupted run's byte for byte. A shard computed twice
(a Dask task retried after its worker died) is the same file written twice.

The run key (`run_key`) hashes what decides the outputs: the slide file (resolved path and
size), the model's identity, the `WsiConfig` (minus `engine`: both engines give the same
outputs), the mask folder and the ROI. It is stored in the shard folder's `manifest.json`
(shards of another key are discarded) and in the slide's report, which marks it done.

Shards hold arrays only (`allow_pickle=False`): ids, concatenated outline vertices with
their lengths, one array per measurement column, and per-tile counters.
"""

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import uuid
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from simgan_histo import stain
from simgan_histo.wsi import nuclei as nuclei_lib

FORMAT = 1  # bump when the shard layout changes: older shards are then discarded
MANIFEST = "manifest.json"
Entry = Tuple[int, nuclei_lib.NucleusTable]  # (index in SlidePlan.tiles, its nuclei)


def shard_ranges(num_tiles: int, batch_size: int) -> List[Tuple[int, int]]:
    """[(start, stop)) tile ranges of the shards: `batch_size` tiles each, the last shorter."""
    return [(start, min(start + batch_size, num_tiles))
            for start in range(0, num_tiles, batch_size)]


def model_identity(model) -> dict:
    """What identifies a loaded `SegmentationModel` for the run key (JSON-ready)."""
    target = None if model.stain_target is None else stain.stats_to_json(model.stain_target)
    return {"name": model.name, "mpp": model.mpp, "stride": model.stride,
            "stain_target": target, "info": model.info}


def run_key(slide_path, model: dict, config, mask_dir=None,
            roi: Optional[Sequence[float]] = None) -> str:
    """Hex digest of everything that decides a slide's outputs (module docstring).

    Args:
      slide_path: the slide file.
      model: the model's identity (`model_identity`, or a model source's `identity()`).
      config: the `WsiConfig`.
      mask_dir: the tissue-mask folder, if any.
      roi: the level-0 region of interest, if any.
    """
    path = pathlib.Path(slide_path).resolve()
    fields = {
        "format": FORMAT,
        "slide": str(path),
        "size": path.stat().st_size if path.is_file() else None,
        "model": model,
        "config": {key: value for key, value in dataclasses.asdict(config).items()
                   if key != "engine"},
        "mask_dir": None if mask_dir is None else str(pathlib.Path(mask_dir).resolve()),
        "roi": None if roi is None else [float(v) for v in roi],
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def _pack(entries: Sequence[Entry]) -> Dict[str, np.ndarray]:
    """Arrays of a shard's tables (see `_unpack`)."""
    tables = [table for _, table in entries]
    rings = [np.asarray(ring, np.float64) for table in tables for ring in table.polygons]
    arrays = {
        "tile_index": np.array([index for index, _ in entries], np.int64),
        "tile_rowcol": np.array([tuple(table.tile) for table in tables], np.int64).reshape(-1, 2),
        "tile_counts": np.array([len(table) for table in tables], np.int64),
        "ids": np.array([i for table in tables for i in table.ids], dtype=np.str_),
        "ring_lengths": np.array([len(ring) for ring in rings], np.int64),
        "rings": np.concatenate(rings) if rings else np.zeros((0, 2), np.float64),
    }
    filled = [table for table in tables if len(table)]
    for name in (filled[0].columns if filled else ()):
        arrays[f"column/{name}"] = np.concatenate(
            [np.asarray(table.columns[name]) for table in filled])
    for name in sorted({name for table in tables for name in table.stats}):
        arrays[f"stat/{name}"] = np.array([table.stats.get(name, 0) for table in tables],
                                          np.int64)
    return arrays


def _unpack(data) -> List[Entry]:
    """The (tile index, `NucleusTable`) entries of a loaded shard, in tile order."""
    counts = data["tile_counts"]
    ends = np.cumsum(counts)
    ring_ends = np.cumsum(data["ring_lengths"])
    rings = np.split(data["rings"], ring_ends[:-1]) if len(ring_ends) else []
    columns = {key.split("/", 1)[1]: data[key] for key in data.files
               if key.startswith("column/")}
    stats = {key.split("/", 1)[1]: data[key] for key in data.files if key.startswith("stat/")}
    ids = data["ids"].tolist()
    entries = []
    for position, (index, rowcol) in enumerate(zip(data["tile_index"], data["tile_rowcol"])):
        start, stop = int(ends[position] - counts[position]), int(ends[position])
        table = nuclei_lib.NucleusTable(
            ids=ids[start:stop], polygons=rings[start:stop],
            columns={name: values[start:stop] for name, values in columns.items()},
            tile=(int(rowcol[0]), int(rowcol[1])),
            stats={name: int(values[position]) for name, values in stats.items()})
        entries.append((int(index), table))
    return entries


class ShardStore:
    """The shard files of one slide run: `<folder>/shard_<k>.npz` plus `manifest.json`."""

    def __init__(self, folder, key: str, count: int):
        self.folder, self.key, self.count = pathlib.Path(folder), key, count

    def path(self, index: int) -> pathlib.Path:
        return self.folder / f"shard_{index:06d}.npz"

    def open(self) -> int:
        """Creates the folder or checks its key (discarding another run's shards).

        Returns:
          How many shards of this run are already done.
        """
        manifest = self.folder / MANIFEST
        if manifest.exists():
            try:
                stored = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                stored = {}
            if stored.get("key") != self.key or stored.get("count") != self.count:
                shutil.rmtree(self.folder)
        if not manifest.exists():
            self.folder.mkdir(parents=True, exist_ok=True)
            _atomic_bytes(manifest, json.dumps(
                {"key": self.key, "count": self.count, "format": FORMAT}).encode("utf-8"))
        return self.count - len(self.missing())

    def missing(self) -> List[int]:
        """Indices of the shards not written yet."""
        return [index for index in range(self.count) if not self.path(index).exists()]

    def write(self, index: int, entries: Sequence[Entry]) -> pathlib.Path:
        """Writes shard `index` atomically (a retried task rewrites the same content)."""
        with _Temporary(self.path(index)) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **_pack(entries))
        return self.path(index)

    def read(self, index: int) -> List[Entry]:
        """The entries of shard `index`.

        Raises:
          ValueError: the shard is unreadable (it names the file to delete).
        """
        path = self.path(index)
        try:
            with np.load(path, allow_pickle=False) as data:
                return _unpack(data)
        except (OSError, ValueError, KeyError) as error:
            raise ValueError(f"{path}: unreadable shard ({error}); delete it and run again to "
                             f"recompute it") from error

    def remove(self) -> None:
        """Deletes the shard folder (after the merged outputs and the report are written)."""
        shutil.rmtree(self.folder, ignore_errors=True)


class _Temporary:
    """A unique temporary sibling of `path`, renamed onto `path` on success, removed otherwise.

    Unique per writer (pid and a random suffix): two processes writing the same shard never
    share a temporary file.
    """

    def __init__(self, path: pathlib.Path):
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")

    def __enter__(self) -> pathlib.Path:
        return self.tmp

    def __exit__(self, exc_type, exc, traceback):
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()
        return False


def _atomic_bytes(path: pathlib.Path, data: bytes) -> None:
    with _Temporary(path) as tmp:
        tmp.write_bytes(data)
