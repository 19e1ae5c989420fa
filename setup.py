"""Installs the `deeplab` package: adaptive-superpixel active learning on DeepLabv3+."""

from setuptools import find_packages, setup

setup(
    name="adaptive-superpixel-al",
    version="0.1.0",
    description=(
        "Adaptive Superpixel for Active Learning in Semantic Segmentation (ICCV 2023), "
        "re-created on TensorFlow 2 / Keras 3"
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["deeplab", "deeplab.*"]),
    package_data={"deeplab.annotate": ["page.html"]},
    python_requires=">=3.10",
    install_requires=[
        "tensorflow>=2.16,<2.22",  # Keras 3
        "tensorboard>=2.16",  # TensorFlow 2.21 no longer installs it
        "numpy>=1.26,<3",
        "scipy>=1.11",
        "scikit-image>=0.22",
        # provides cv2 with ximgproc (SEEDS); replaces opencv-python, never install both
        "opencv-contrib-python-headless>=4.8",
        "pillow>=10",
        "tqdm>=4.66",
        "matplotlib>=3.7",
        # sieving's knee detection as the original ran it (Python 3.6: kneed 0.8.5 is the newest
        # release there; 0.9.0 changed the detection). Exact on purpose.
        "kneed==0.8.5",
    ],
    extras_require={
        # EXECUTOR=ray: per-image stages on a local Ray or a cluster (RAY_ADDRESS)
        "ray": ["ray>=2.9,<3"],
        # the tests run the Ray executor too, and drive the annotation page in a real browser
        # (headless Chromium with Debian's chromium-driver; .ci/run installs them)
        "test": ["pytest>=7", "pytest-xdist>=3.8,<4", "ray>=2.9,<3", "selenium>=4.10,<5", "ruff==0.17.6"],
    },
)
