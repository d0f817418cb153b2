"""The tissue source: real H&E images and slides cut into prepared tiles ("types").

Every tile is one tissue type: its synthetic patches, reference patches and real pairs all
come from it. Files are read through `simgan_histo.wsi.reader.open_slide` and resampled to
`SynthesisConfig.mpp`. A small image is one tile; a slide (or large image) is cut into
`source_tile_px` tiles and its most tissue-rich ones are kept. Anything unusable is counted
by reason (`tissue.REASONS`) and logged; a source with no usable tile fails at once,
naming the reasons and counts (the release ran for hours producing nothing).
"""

import collections
import multiprocessing
import pathlib
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np
from absl import logging

from simgan_histo.synthesis import layout as layout_lib
from simgan_histo.synthesis import polygons
from simgan_histo.synthesis import tissue as tissue_lib
from simgan_histo.wsi import reader
from simgan_histo.wsi import tissue as wsi_tissue

PathLike = Union[str, pathlib.Path]
SINGLE_TILE_FACTOR = 1.5  # images up to 1.5 × source_tile_px on both sides stay one tile
THUMBNAIL_CELL_PX = 16  # a candidate tile spans this many thumbnail pixels
GLASS_OD = 0.05  # mean optical density of glass is ≈ 0.00–0.03


def list_files(paths_or_dir: Union[PathLike, Sequence[PathLike]]) -> List[pathlib.Path]:
    """A directory's files (sorted, not recursive, hidden files skipped) or the given paths."""
    if isinstance(paths_or_dir, (str, pathlib.Path)):
        paths_or_dir = [paths_or_dir]
    files = []
    for item in paths_or_dir:
        path = pathlib.Path(item)
        if not path.exists():
            raise FileNotFoundError(f"tissue source not found: {path}")
        if path.is_dir() and path.suffix.lower() != ".mrxs":
            files.extend(sorted(p for p in path.iterdir()
                                if p.is_file() and not p.name.startswith(".")))
        else:
            files.append(path)
    return files


def _supported(path: pathlib.Path) -> bool:
    return path.suffix.lower() in reader.IMAGE_SUFFIXES + reader.SLIDE_SUFFIXES


def _tile_boxes(slide, downsample: float, config) -> List[Tuple[float, float]]:
    """Level-0 corners of the tissue-rich tiles of a large slide, richest first."""
    tile_level0 = config.source_tile_px * downsample
    thumb_ds = tile_level0 / THUMBNAIL_CELL_PX
    thumb = wsi_tissue.thumbnail(slide, thumb_ds)
    glass = wsi_tissue.optical_density(thumb) < GLASS_OD
    rows, cols = thumb.shape[0] // THUMBNAIL_CELL_PX, thumb.shape[1] // THUMBNAIL_CELL_PX
    cells = glass[:rows * THUMBNAIL_CELL_PX, :cols * THUMBNAIL_CELL_PX].reshape(
        rows, THUMBNAIL_CELL_PX, cols, THUMBNAIL_CELL_PX)
    tissue = 1.0 - cells.mean(axis=(1, 3))
    order = np.argsort(-tissue, axis=None, kind="stable")
    boxes = []
    for flat in order[:config.max_tiles_per_slide]:
        row, col = divmod(int(flat), cols)
        if tissue[row, col] >= config.min_tissue_fraction:
            boxes.append((col * tile_level0, row * tile_level0))
    return boxes


def read_tiles(path: pathlib.Path, config, mpp: Optional[float],
               counts: collections.Counter) -> Iterator[Tuple[str, np.ndarray]]:
    """(name, RGB at config.mpp) for each candidate tile of one file; failures counted."""
    counts["files_read"] += 1
    try:
        slide = reader.open_slide(path, mpp=mpp)
    except reader.SlideReadError as error:
        reason = "grayscale" if "expected RGB" in str(error) else "unreadable"
        logging.warning("skipping %s (%s): %s", path, reason, error)
        counts[reason] += 1
        return
    with slide:
        file_mpp = slide.mpp
        if file_mpp is None:
            logging.warning("%s records no µm/px; assuming %.3g (pass mpp= to override)",
                            path, config.mpp)
            file_mpp = config.mpp
        downsample = config.mpp / file_mpp
        width, height = (d / downsample for d in slide.dimensions)
        limit = SINGLE_TILE_FACTOR * config.source_tile_px
        try:
            if width <= limit and height <= limit:
                yield path.name, slide.read(0, 0, *slide.dimensions, downsample)
                return
            boxes = _tile_boxes(slide, downsample, config)
            if not boxes:
                counts["no_tissue"] += 1
                logging.warning("skipping %s: no tile with enough tissue", path)
            side = config.source_tile_px * downsample
            for x, y in boxes:
                yield f"{path.name}@{int(x)},{int(y)}", slide.read(x, y, side, side, downsample)
        except reader.SlideReadError as error:
            logging.warning("skipping the rest of %s (unreadable): %s", path, error)
            counts["unreadable"] += 1


def _prepare(args):
    name, rgb, config = args
    try:
        return tissue_lib.prepare_tile(rgb, config, name)
    except tissue_lib.TileRejected as rejection:
        return rejection


class TissueSource:
    """Prepared tiles plus the count of everything rejected, by reason."""

    def __init__(self, tiles: Sequence[tissue_lib.PreparedTile], config,
                 rejections: Optional[Dict[str, int]] = None, num_files: int = 0):
        self.tiles = list(tiles)
        self.config = config
        self.rejections = {reason: int(n) for reason, n in (rejections or {}).items() if n}
        self.num_files = num_files

    @property
    def num_tiles(self) -> int:
        return len(self.tiles)

    def summary(self) -> str:
        """One line: tiles kept, their inpainted share and density, rejections by reason."""
        rejected = ", ".join(f"{k} {v}" for k, v in sorted(self.rejections.items())) or "none"
        if not self.tiles:
            return f"0 tissue tiles from {self.num_files} files; rejected: {rejected}"
        inpainted = np.mean([t.inpainted_fraction for t in self.tiles])
        density = np.mean([t.density for t in self.tiles])
        return (f"{self.num_tiles} tissue tiles from {self.num_files} files (mean inpainted "
                f"share {inpainted:.0%}, mean density {density:.1f}); rejected: {rejected}")

    @classmethod
    def from_paths(cls, paths_or_dir, config, mpp: Optional[float] = None,
                   max_tiles: Optional[int] = None, workers: int = 1) -> "TissueSource":
        """Reads, resamples, tiles and prepares real tissue (see the module docstring).

        Args:
          paths_or_dir: a directory, a file, or a sequence of them.
          config: a SynthesisConfig (or a Config, whose `.synthesis` is used).
          mpp: µm/px of the files, overriding what they record (None: read it; files with
            none are assumed to be at `config.mpp`, with a warning).
          max_tiles: stop after this many usable tiles.
          workers: processes for the per-tile work (spawn).

        Raises:
          FileNotFoundError: a path does not exist.
          ValueError: no usable tile; the message names the rejection reasons and counts.
        """
        config = getattr(config, "synthesis", config)
        files = list_files(paths_or_dir)
        counts = collections.Counter()
        unsupported = [f for f in files if not _supported(f)]
        for path in unsupported:
            logging.warning("skipping %s: not an image or slide type we read", path)
        counts["unsupported"] += len(unsupported)
        labeller = (layout_lib.net_labeller(config.layout_model)
                    if config.layout_source == "net" else None)
        candidates = ((name, rgb, config) for path in files if _supported(path)
                      for name, rgb in read_tiles(path, config, mpp, counts))
        tiles = _prepare_all(candidates, counts, max_tiles, workers)
        if labeller:
            layout_lib.from_model(tiles, labeller, config.mpp, polygons.max_vertices(config))
        files_read = counts.pop("files_read", 0) + len(unsupported)
        source = cls(tiles, config, dict(counts), files_read)
        if not tiles:
            raise ValueError(f"no usable tissue tile in {paths_or_dir}: {source.summary()}. "
                             f"Tiles need H&E tissue of at least "
                             f"{tissue_lib.min_long_side(config)} px at {config.mpp} µm/px.")
        logging.info("tissue source: %s", source.summary())
        return source


def _prepare_all(candidates, counts, max_tiles, workers) -> List[tissue_lib.PreparedTile]:
    """Runs prepare_tile over candidates (in a spawn pool if workers > 1), counting rejects."""
    tiles = []

    def consume(results):
        for result in results:
            if isinstance(result, tissue_lib.TileRejected):
                logging.warning("tile rejected (%s)", result)
                counts[result.reason] += 1
            else:
                tiles.append(result)
            if max_tiles is not None and len(tiles) >= max_tiles:
                return

    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            consume(pool.imap(_prepare, candidates))
    else:
        consume(map(_prepare, candidates))
    return tiles
