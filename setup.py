"""simgan_histo: label-free nucleus segmentation for H&E (Hou et al., CVPR 2019)."""

import setuptools

setuptools.setup(
      name="simgan_histo",
      version="0.1.0",
      description="Label-free nucleus segmentation for H&E histopathology "
                  "(synthesis + reference-conditioned GAN + importance weights).",
      long_description=open("README.md", encoding="utf-8").read(),
      long_description_content_type="text/markdown",
      license="BSD-3-Clause",
      python_requires=">=3.10",
      # Only the library is installed; the scripts and flags/ run from the checkout (STYLE §3).
      packages=setuptools.find_packages(include=["simgan_histo", "simgan_histo.*"]),
      package_data={"simgan_histo": ["data/*.json"]},
      install_requires=[
          # tensorflow (not tensorflow-cpu) also covers macOS arm64 and GPU users.
          "tensorflow==2.21.*",
          "keras>=3.10,<4",
          "numpy>=1.26,<3",
          "opencv-python-headless>=4.9,<6",
          "scikit-image>=0.24,<0.27",
          "scipy>=1.13,<2",
          "h5py>=3.11,<4",
          "absl-py>=2.1,<3",
          "tensorboard>=2.20,<3",
          "tifffile>=2024.8.0",
          "imagecodecs>=2024.6.1",
          "openslide-python>=1.4,<2",
          "openslide-bin>=4.0,<5",
          "shapely>=2.0,<3",
          "tqdm>=4.66,<5",
          "matplotlib>=3.8,<4",
      ],
      extras_require={
          "test": ["pytest>=8,<10", "dask[distributed]>=2024.8.0", "psutil>=5.9"],
          "distributed": ["dask[distributed]>=2024.8.0", "dask-jobqueue>=0.9"],
      },
)
