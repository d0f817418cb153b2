"""A tiny real SavedModel export whose maps mean something (dark pixels are nuclei), and a
small real H&E slide cut from the sample slide.

Two hand-set convolutions, no training: segmentation = sigmoid(k · (t − mean RGB)) with t
halfway between the test slides' nucleus and tissue colours (model range [-1, 1]), detection
= sigmoid of a 5×5 mean of the segmentation near 1 (nucleus centres). It goes through the
real export (`training.export.export_task_model`: SavedModel + inference.json), so the
engines load it exactly as a trained model, in about a second, and it finds the drawn discs
of `helpers` slides and the dark nuclei of real H&E.
"""

import pathlib

import numpy as np

from tests.wsi import helpers

MPP = 0.5  # µm/px the export declares
_BUILT = {}


def darkness_net():
    """The Keras functional model (outputs `segmentation`, `detection`), weights set by hand."""
    import keras  # pylint: disable=import-outside-toplevel
    from keras import layers  # pylint: disable=import-outside-toplevel

    image = keras.Input((None, None, 3), name="darkness_image")
    segmentation = layers.Conv2D(1, 1, activation="sigmoid",
                                 name="darkness_segmentation")(image)
    detection = layers.Conv2D(1, 5, padding="same", activation="sigmoid",
                              name="darkness_detection")(segmentation)
    model = keras.Model(image, {"segmentation": segmentation, "detection": detection},
                        name="darkness")
    nucleus = np.mean(helpers.NUCLEUS) / 127.5 - 1.0  # -0.30
    tissue = np.mean(helpers.TISSUE) / 127.5 - 1.0  # 0.62
    threshold, slope = (nucleus + tissue) / 2, 12.0
    model.get_layer("darkness_segmentation").set_weights(
        [np.full((1, 1, 3, 1), -slope / 3, np.float32), np.array([slope * threshold],
                                                                  np.float32)])
    model.get_layer("darkness_detection").set_weights(
        [np.full((5, 5, 1, 1), 20.0 / 25, np.float32), np.array([-20.0 * 0.9], np.float32)])
    return model


def darkness_export(tmp_path_factory) -> pathlib.Path:
    """The export folder (built once per test session)."""
    if "path" not in _BUILT:
        from simgan_histo import config as config_lib  # pylint: disable=import-outside-toplevel
        from simgan_histo.training import export  # pylint: disable=import-outside-toplevel

        config = config_lib.tiny()
        settings = export.inference_settings(config, None, mpp=MPP)
        root = tmp_path_factory.mktemp("darkness") / "model"
        export.export_task_model(darkness_net(), root, config, settings)
        _BUILT["path"] = root
    return _BUILT["path"]


def sample_crop(sample_slide, path, box=(300, 1700, 1100, 1100)) -> pathlib.Path:
    """A pyramidal TIFF (lossless) of a level-0 box of the real CC0 sample slide.

    The default box holds ~0.2 mm² of tissue with some glass (~1000 nuclei for
    `darkness_net`, 23 tissue tiles of 256 px at 0.5 µm/px): real H&E at a test's cost.
    """
    from simgan_histo.wsi import pyramid, reader  # pylint: disable=import-outside-toplevel

    with reader.open_slide(sample_slide) as slide:
        rgb = slide.read_level0(*box)
        mpp = slide.mpp
    return pyramid.write_pyramid(path, rgb, mpp, compression="deflate")
