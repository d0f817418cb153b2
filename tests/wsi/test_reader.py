"""Slide reading: pyramids OpenSlide reads, MPP sources and fallbacks, exact resampling, errors."""

import cv2
import numpy as np
import openslide
import pytest

from simgan_histo.wsi import pyramid, reader


@pytest.fixture(scope="module")
def texture():
    rng = np.random.default_rng(0)
    noise = (rng.random((900, 1300, 3)) * 255).astype(np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), 1.5)


@pytest.mark.parametrize("aperio, vendor", [(True, "aperio"), (False, "generic-tiff")])
def test_openslide_reads_written_pyramid_with_mpp(tmp_path, texture, aperio, vendor):
    path = pyramid.write_pyramid(tmp_path / "s.tif", texture, 0.22, compression="deflate",
                                 aperio=aperio, min_level_px=200)
    handle = openslide.OpenSlide(str(path))
    assert handle.properties["openslide.vendor"] == vendor
    assert float(handle.properties["openslide.mpp-x"]) == pytest.approx(0.22)
    assert handle.level_dimensions[:3] == ((1300, 900), (650, 450), (325, 225))
    region = np.asarray(handle.read_region((7, 11), 0, (300, 200)))[..., :3]
    np.testing.assert_array_equal(region, texture[11:211, 7:307])  # deflate is lossless


@pytest.mark.parametrize("mpp", [0.25, 0.5, 0.22])
@pytest.mark.parametrize("backend", ["openslide", "tifffile"])
def test_mpp_is_read_from_the_file(tmp_path, texture, mpp, backend):
    path = pyramid.write_pyramid(tmp_path / "s.svs", texture, mpp)
    with reader.open_slide(path, backend=backend) as slide:
        assert slide.mpp == pytest.approx(mpp) and slide.backend == backend
        assert slide.dimensions == (1300, 900)


def test_generic_tiff_mpp_comes_from_resolution_tags(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.tif", texture, 0.5, aperio=False)
    with reader.open_slide(path) as slide:
        assert slide.backend == "tifffile" and slide.mpp_source == "tiff-resolution"
        assert slide.mpp == pytest.approx(0.5)


def test_missing_mpp_needs_an_override(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.tif", texture, None)
    with reader.open_slide(path) as slide:
        assert slide.mpp is None
        with pytest.raises(reader.MissingMppError, match="--mpp"):
            reader.require_mpp(slide)
    with reader.open_slide(path, mpp=0.3) as slide:
        assert reader.require_mpp(slide) == 0.3 and slide.mpp_source == "override"


def test_objective_power_is_the_last_resort(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.svs", texture, None, app_mag=20)
    for backend in ("openslide", "tifffile"):
        with reader.open_slide(path, backend=backend) as slide:
            assert slide.mpp == pytest.approx(0.5) and slide.mpp_source == "objective-power"


def test_override_wins_over_the_file(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.svs", texture, 0.25)
    with reader.open_slide(path, mpp=0.5) as slide:
        assert slide.mpp == 0.5


def test_implausible_resolution_tags_are_ignored():
    assert reader.mpp_from_resolution(72.0, "inch") is None  # 352 µm/px: a default, not a scan
    assert reader.mpp_from_resolution(40000.0, "centimeter") == pytest.approx(0.25)
    assert reader.mpp_from_resolution(101600.0, "inch") == pytest.approx(0.25)
    assert reader.mpp_from_resolution(40000.0, "none") is None


@pytest.mark.parametrize("downsample", [1.0, 0.5, 0.88, 2.0, 3.0, 1.37])
def test_tiles_read_separately_match_one_read_of_the_region(tmp_path, texture, downsample):
    path = pyramid.write_pyramid(tmp_path / "s.tif", texture, 0.25, compression="deflate",
                                 min_level_px=200)
    step = 64  # output px per tile
    with reader.open_slide(path) as slide:
        whole = slide.read(13.0, 7.0, 4 * step * downsample, 3 * step * downsample, downsample)
        assert whole.shape == (3 * step, 4 * step, 3)
        for row in range(3):
            for col in range(4):
                tile = slide.read(13.0 + col * step * downsample, 7.0 + row * step * downsample,
                                  step * downsample, step * downsample, downsample)
                expected = whole[row * step:(row + 1) * step, col * step:(col + 1) * step]
                difference = np.abs(tile.astype(int) - expected)
                assert difference.max() <= 1 and difference.mean() < 0.01


def test_resampling_keeps_the_geometry(tmp_path):
    """A dark square at known level-0 px stays where it is at any downsample."""
    image = np.full((800, 800, 3), 255, np.uint8)
    image[300:400, 200:260] = 0  # x 200..260, y 300..400 (corner frame)
    path = pyramid.write_pyramid(tmp_path / "s.tif", image, 0.25, compression="deflate",
                                 min_level_px=100)
    with reader.open_slide(path) as slide:
        for downsample in (0.5, 0.88, 1.0, 2.0, 4.0, 2.6):
            out = slide.read(0, 0, 800, 800, downsample)
            dark = (255.0 - out[..., 0].astype(np.float64)) / 255.0
            rows, cols = np.mgrid[0:out.shape[0], 0:out.shape[1]]
            centre_x = ((cols + 0.5) * dark).sum() / dark.sum() * downsample
            centre_y = ((rows + 0.5) * dark).sum() / dark.sum() * downsample
            assert centre_x == pytest.approx(230.0, abs=0.3)
            assert centre_y == pytest.approx(350.0, abs=0.3)
            assert dark.sum() * downsample ** 2 == pytest.approx(6000, rel=0.02)


def test_best_level_is_the_coarsest_not_coarser_than_asked(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.svs", texture, 0.25, min_level_px=100)
    with reader.open_slide(path) as slide:
        assert slide.level_downsamples[:4] == pytest.approx((1.0, 2.0, 4.0, 8.0), rel=0.01)
        assert [slide.best_level(d) for d in (0.5, 1.0, 1.9, 2.0, 5.0, 100.0)] == [
            0, 0, 0, 1, 2, len(slide.level_downsamples) - 1]


def test_backends_agree(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.svs", texture, 0.25)  # JPEG tiles
    with reader.open_slide(path, backend="openslide") as a, \
            reader.open_slide(path, backend="tifffile") as b:
        for downsample in (1.0, 2.0, 0.7):
            np.testing.assert_array_equal(a.read(90, 33, 700, 500, downsample),
                                          b.read(90, 33, 700, 500, downsample))


def test_outside_the_slide_reads_white(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.tif", texture, 0.25)
    with reader.open_slide(path) as slide:
        region = slide.read(-50, 850, 100, 100, 1.0)
        assert (region[50:] == 255).all() and (region[:, :50] == 255).all()
        assert (region[:50, 50:] != 255).any()


def test_plain_image(tmp_path, texture):
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), cv2.cvtColor(texture, cv2.COLOR_RGB2BGR))
    with reader.open_slide(path, mpp=0.25) as slide:
        assert slide.backend == "image" and slide.mpp == 0.25
        np.testing.assert_array_equal(slide.read_level0(5, 6, 40, 30), texture[6:36, 5:45])


@pytest.mark.parametrize("name, content", [
    ("random.svs", b"\x00\x01garbage" * 100),
    ("text.png", b"not an image"),
    ("empty.tif", b""),
])
def test_unreadable_files_give_a_clear_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(reader.SlideReadError, match=name):
        reader.open_slide(path)


def test_truncated_pyramid_gives_a_clear_error(tmp_path, texture):
    path = pyramid.write_pyramid(tmp_path / "s.tif", texture, 0.25)
    data = path.read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[:len(data) // 2])
    with pytest.raises(reader.SlideReadError, match="cut.tif"):
        with reader.open_slide(tmp_path / "cut.tif") as slide:
            slide.read(0, 0, 1300, 900, 1.0)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(reader.SlideReadError, match="no such file"):
        reader.open_slide(tmp_path / "nope.svs")
    with pytest.raises(reader.SlideReadError, match="directory"):
        reader.open_slide(tmp_path)


def test_ome_subifd_pyramid_is_read_with_its_levels_and_scale(tmp_path, texture):
    """OpenSlide sees one level of a SubIFD/OME pyramid; the tifffile backend sees all three."""
    import tifffile

    path = tmp_path / "s.ome.tif"
    options = dict(tile=(256, 256), photometric="rgb", compression="zlib")
    with tifffile.TiffWriter(path, ome=True) as writer:
        writer.write(texture, subifds=2, metadata={"axes": "YXS", "PhysicalSizeX": 0.25,
                                                   "PhysicalSizeXUnit": "µm"}, **options)
        for size in ((650, 450), (325, 225)):
            writer.write(cv2.resize(texture, size, interpolation=cv2.INTER_AREA),
                         subfiletype=1, **options)
    assert openslide.OpenSlide(str(path)).level_count == 1
    with reader.open_slide(path) as slide:
        assert slide.backend == "tifffile" and slide.mpp_source == "ome-physical-size"
        assert slide.mpp == pytest.approx(0.25)
        assert slide.level_downsamples == (1.0, 2.0, 4.0)
        np.testing.assert_array_equal(slide.read_level0(10, 20, 300, 200),
                                      texture[20:220, 10:310])
        assert slide.best_level(4.0) == 2


def test_aperio_svs_is_read_by_tifffile_exactly_as_openslide_reads_it(sample_slide):
    """The real Aperio JPEG SVS: `auto` picks tifffile, and its pixels and MPP match OpenSlide's."""
    with reader.open_slide(sample_slide) as fast, \
            reader.open_slide(sample_slide, backend="openslide") as reference:
        assert fast.backend == "tifffile" and reference.backend == "openslide"
        assert fast.mpp == reference.mpp == pytest.approx(0.499)
        assert fast.dimensions == reference.dimensions
        for box in [(0, 0, *fast.dimensions), (37, 911, 700, 333)]:
            for downsample in (1.0, 0.5, 2.5):
                np.testing.assert_array_equal(fast.read(*box, downsample),
                                              reference.read(*box, downsample))
