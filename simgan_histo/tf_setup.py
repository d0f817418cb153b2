"""TensorFlow start-up: a quiet import, threads, precision policy.

TF's C++ layer writes banners straight to file descriptor 2 before Python logging exists
(CUDA stubs on CPU-only machines, CPU-feature notices). We capture fd 2 while TF imports
and initialises its devices, drop the known banners and replay anything else, so genuine
errors still reach the user.
"""

import contextlib
import os
import re
import sys
import tempfile

_NOISE = re.compile(
    r"cudart_stub|cuInit|cuda_platform|cuda_dnn|cuda_fft|cuda_blas|Unable to register cu|"
    r"absl::InitializeLog|oneDNN custom operations|cpu_feature_guard|rebuild TensorFlow|"
    r"This TensorFlow binary is optimized|computation placer already registered|"
    r"TF-TRT Warning|Could not find cuda drivers|GPU will not be used|"
    r"^To enable the following instructions")


@contextlib.contextmanager
def _quiet_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            kept = [line for line in sink.read().decode(errors="replace").splitlines()
                    if line.strip() and not _NOISE.search(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)


def import_tensorflow():
    """Imports TensorFlow and initialises its devices without the start-up banners."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _quiet_stderr():
        import tensorflow as tf  # pylint: disable=import-outside-toplevel
        tf.config.list_physical_devices()
    return tf


def configure(runtime_config) -> None:
    """Applies a RuntimeConfig: thread counts and the Keras mixed-precision policy.

    Thread counts can only be set before TF executes its first op; a later call keeps the
    settings TF already has.
    """
    tf = import_tensorflow()
    import keras  # pylint: disable=import-outside-toplevel
    try:
        if runtime_config.intra_op_threads:
            tf.config.threading.set_intra_op_parallelism_threads(runtime_config.intra_op_threads)
        if runtime_config.inter_op_threads:
            tf.config.threading.set_inter_op_parallelism_threads(runtime_config.inter_op_threads)
    except RuntimeError:
        pass  # TF already initialised its thread pools
    keras.mixed_precision.set_global_policy(runtime_config.precision)
