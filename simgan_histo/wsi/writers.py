"""Streaming writers of a slide's nuclei: QuPath GeoJSON, the paper's TCGA CSVs, a morphometry CSV.

Each writer takes the nuclei one tile at a time (`write(table, core_level0)`), keeps nothing
per nucleus in memory, writes to a temporary name and renames on `close()` (`abort()`
removes the temporary), so a reader never sees a half-written file and RAM stays flat with
slide size.

Coordinates are level-0 px. GeoJSON uses QuPath's corner frame (pixel (0, 0) covers
[0, 1)²; a vertex is a boundary pixel's centre). The TCGA CSVs use the release's pixel-index
frame (corner − 0.5, one decimal), which its `extract_segmentation_mask` fills with
`cv2.fillPoly`.
"""

import collections
import csv
import datetime
import glob
import json
import math
import os
import pathlib
import shutil
from typing import Dict, Optional, Sequence

import numpy as np

from simgan_histo.wsi import nuclei as nuclei_lib

NUCLEUS_CLASS = {"name": "Nucleus", "color": [32, 64, 224]}
# QuPath-style measurement names -> NucleusTable columns.
MEASUREMENTS = {
    "Area µm^2": "area_um2",
    "Perimeter µm": "perimeter_um",
    "Eccentricity": "eccentricity",
    "Solidity": "solidity",
    "Hematoxylin OD mean": "mean_hematoxylin",
    "Eosin OD mean": "mean_eosin",
    "Nucleus probability mean": "mean_segmentation",
}
MORPHOMETRY_COLUMNS = ("id", "centroid_x", "centroid_y", "area_um2", "perimeter_um",
                       "eccentricity", "solidity", "mean_hematoxylin", "mean_eosin",
                       "mean_segmentation", "area_px", "tile_row", "tile_col")
TCGA_HEADER = ("AreaInPixels", "PhysicalSize", "Polygon")


def temporary_path(path: pathlib.Path) -> pathlib.Path:
    """A sibling name for writing `path` before the atomic rename.

    Temporary files of `path` left by a killed writer (another pid: a Dask worker killed
    mid-write, whose task was retried here) are removed first. One writer per output file
    at a time (one task per slide) makes that safe.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        if stale.is_dir():  # the TCGA writer's temporary folder
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def atomic_write_text(path, text: str) -> pathlib.Path:
    """Writes `text` to `path` through a temporary file and an atomic rename."""
    path = pathlib.Path(path)
    tmp = temporary_path(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_json(path, data) -> pathlib.Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, allow_nan=False)
                             + "\n")


class _StreamingFile:
    """A text file written under a temporary name and renamed into place on close()."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.tmp = temporary_path(self.path)
        self.file = open(self.tmp, "w", encoding="utf-8", newline="")

    def close(self) -> pathlib.Path:
        self.file.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.file.close()
        if self.tmp.exists():
            self.tmp.unlink()


def _finite(value) -> Optional[float]:
    """A JSON-safe measurement: 7 significant digits, None for NaN/inf (JSON has none)."""
    value = float(value)
    return float(f"{value:.7g}") if math.isfinite(value) else None


def geojson_feature(nucleus_id: str, ring: np.ndarray, measurements: Dict[str, float]) -> dict:
    """One QuPath detection: objectType *inside* properties (QuPath reads it only there)."""
    coordinates = np.concatenate([ring, ring[:1]]).tolist()  # GeoJSON rings are closed
    return {
        "type": "Feature",
        "id": nucleus_id,
        "geometry": {"type": "Polygon", "coordinates": [coordinates]},
        "properties": {
            "objectType": "detection",
            "classification": dict(NUCLEUS_CLASS),
            "isLocked": False,
            "measurements": {name: value for name, value in measurements.items()
                             if value is not None},
        },
    }


class GeoJsonWriter(_StreamingFile):
    """A QuPath GeoJSON FeatureCollection of nucleus detections, written feature by feature."""

    def __init__(self, path):
        super().__init__(path)
        self.file.write('{"type": "FeatureCollection", "features": [')
        self.count = 0

    def write(self, table: nuclei_lib.NucleusTable, core_level0: Sequence[float] = ()) -> None:
        for row, (nucleus_id, ring) in enumerate(zip(table.ids, table.polygons)):
            measurements = {name: _finite(table.columns[column][row])
                            for name, column in MEASUREMENTS.items() if column in table.columns}
            feature = geojson_feature(nucleus_id, ring, measurements)
            self.file.write(("\n" if self.count == 0 else ",\n")
                            + json.dumps(feature, ensure_ascii=False, allow_nan=False))
            self.count += 1

    def close(self) -> pathlib.Path:
        self.file.write("\n]}\n")
        return super().close()


class MorphometryWriter(_StreamingFile):
    """One CSV row per nucleus (level-0 centroid px, µm measurements, processing-px area)."""

    def __init__(self, path):
        super().__init__(path)
        self.writer = csv.writer(self.file)
        self.writer.writerow(MORPHOMETRY_COLUMNS)
        self.count = 0

    def write(self, table: nuclei_lib.NucleusTable, core_level0: Sequence[float] = ()) -> None:
        columns = table.columns
        for row, nucleus_id in enumerate(table.ids):
            values = [nucleus_id] + [
                f"{float(columns[name][row]):.6g}" if name in columns else ""
                for name in MORPHOMETRY_COLUMNS[1:-2]] + list(table.tile)
            self.writer.writerow(values)
            self.count += 1


def tcga_polygon(ring: np.ndarray) -> str:
    """`[x1:y1:x2:y2:…]`, pixel-index frame (corner − 0.5), one decimal, as the release."""
    # Python floats format ~2x faster than numpy scalars (same digits): this runs per nucleus.
    return "[" + ":".join(["%.1f" % value for value in (ring - 0.5).ravel().tolist()]) + "]"


class TcgaCsvWriter:
    """The release's per-tile CSVs (`AreaInPixels,PhysicalSize,Polygon`) and algmeta JSONs.

    Level-0 tiles of `tile_px` from (0, 0) (the release started at (1, 1)); each nucleus goes
    to the tile holding its centroid. A CSV (header only if empty) is written for every tile
    that overlaps processed tissue, so "no file" means "not analysed", never "no nuclei".
    Files are named `{x}_{y}_{w}_{h}_{mpp}_{scale}-features.csv` (w, h clipped at the slide
    edge; scale = slide mpp ÷ model mpp, the release's upsampling factor) and appear in
    `folder` atomically (built in a temporary folder, then renamed).
    """

    def __init__(self, folder, slide_dimensions, slide_mpp: float, downsample: float,
                 tile_px: int, meta: dict):
        self.folder = pathlib.Path(folder)
        self.tmp = temporary_path(self.folder)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir(parents=True)
        self.dimensions, self.mpp = slide_dimensions, slide_mpp
        self.downsample, self.tile_px, self.meta = downsample, tile_px, meta
        self.touched = set()
        self.count = 0

    def _tile_box(self, col: int, row: int):
        x, y = col * self.tile_px, row * self.tile_px
        return (x, y, min(self.tile_px, self.dimensions[0] - x),
                min(self.tile_px, self.dimensions[1] - y))

    def stem(self, col: int, row: int) -> str:
        x, y, width, height = self._tile_box(col, row)
        scale = 1.0 / self.downsample
        return f"{x}_{y}_{width}_{height}_{round(self.mpp, 6):g}_{round(scale, 4):g}"

    def _mark(self, core_level0) -> None:
        x, y, width, height = core_level0
        last_col = min(int((x + width - 1e-6) // self.tile_px),
                       (self.dimensions[0] - 1) // self.tile_px)
        last_row = min(int((y + height - 1e-6) // self.tile_px),
                       (self.dimensions[1] - 1) // self.tile_px)
        for row in range(max(int(y // self.tile_px), 0), last_row + 1):
            for col in range(max(int(x // self.tile_px), 0), last_col + 1):
                self.touched.add((col, row))

    def write(self, table: nuclei_lib.NucleusTable, core_level0: Sequence[float]) -> None:
        self._mark(core_level0)
        groups = collections.defaultdict(list)
        columns = table.columns
        for row, ring in enumerate(table.polygons):
            key = (int(columns["centroid_x"][row] // self.tile_px),
                   int(columns["centroid_y"][row] // self.tile_px))
            area = float(columns["area_px"][row])
            groups[key].append((int(area * self.downsample ** 2), int(area), tcga_polygon(ring)))
        for key, rows in groups.items():
            self.touched.add(key)
            path = self.tmp / f"{self.stem(*key)}-features.csv"
            new = not path.exists()
            with open(path, "a", encoding="utf-8", newline="") as f:
                writer = csv.writer(f)
                if new:
                    writer.writerow(TCGA_HEADER)
                writer.writerows(rows)
            self.count += len(rows)

    def _algmeta(self, col: int, row: int) -> dict:
        x, y, width, height = self._tile_box(col, row)
        meta = {"input_type": "wsi", "mpp": self.mpp, "image_width": self.dimensions[0],
                "image_height": self.dimensions[1], "tile_minx": x, "tile_miny": y,
                "tile_width": width, "tile_height": height, "patch_minx": x, "patch_miny": y,
                "patch_width": width, "patch_height": height, "output_level": "mask",
                "out_file_prefix": self.stem(col, row),
                "analysis_execution_date": datetime.datetime.now(
                    datetime.timezone.utc).isoformat(timespec="seconds")}
        meta.update(self.meta)
        return meta

    def close(self) -> pathlib.Path:
        for col, row in sorted(self.touched):
            stem = self.stem(col, row)
            csv_path = self.tmp / f"{stem}-features.csv"
            if not csv_path.exists():
                csv_path.write_text(",".join(TCGA_HEADER) + "\n", encoding="utf-8")
            (self.tmp / f"{stem}-algmeta.json").write_text(
                json.dumps(self._algmeta(col, row), sort_keys=True, allow_nan=False) + "\n",
                encoding="utf-8")
        if self.folder.exists():
            old = self.folder.with_name(f".{self.folder.name}.old-{os.getpid()}")
            os.replace(self.folder, old)
            shutil.rmtree(old)
        os.replace(self.tmp, self.folder)
        return self.folder

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
