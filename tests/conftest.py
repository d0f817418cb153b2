"""Shared fixtures: tiny configs, a temporary workdir, the shared MoNuSeg data."""

import os
import pathlib

import pytest

from simgan_histo import config as config_lib

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
MONUSEG = SHARED / "datasets" / "monuseg2018"


@pytest.fixture
def tiny_config() -> config_lib.Config:
    return config_lib.tiny()


@pytest.fixture
def workdir(tmp_path) -> pathlib.Path:
    path = tmp_path / "run"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def monuseg() -> pathlib.Path:
    if not MONUSEG.exists():
        pytest.skip(f"MoNuSeg not found at {MONUSEG}")
    return MONUSEG


@pytest.fixture(scope="session")
def sample_slide(tmp_path_factory) -> pathlib.Path:
    """The real sample slide, fetched once per session into the user cache (or a temp one)."""
    from simgan_histo import sample_data

    cache = os.environ.get("SIMGAN_HISTO_CACHE")
    return sample_data.sample_slide_path(pathlib.Path(cache) if cache else None)
