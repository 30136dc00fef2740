"""Installation script for skdqn."""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "skdqn" / "_version.py").read_text()).group(1)

setup(
    name="skdqn",
    version=VERSION,
    description="Supervised deep product quantization (Deep Quantization Network) for scikit-learn",
    long_description=(HERE / "README.rst").read_text(encoding="utf-8"),
    long_description_content_type="text/x-rst",
    license="BSD-3-Clause",
    packages=find_packages(include=["skdqn", "skdqn.*"]),
    python_requires=">=3.9",
    install_requires=[
        "numpy>=1.22",
        "scipy>=1.8",
        "scikit-learn>=1.6",
        "torch>=2.1",
        "joblib>=1.2",
        "tqdm>=4.60",
    ],
    extras_require={
        # The test extra includes the optional dependencies, so that their
        # tests (faiss interop, search on a dask cluster, feature names from
        # pandas, the documentation build's hooks) run in CI instead of being
        # skipped.
        "test": [
            "pytest>=7",
            "hypothesis>=6",
            "faiss-cpu>=1.7.4",
            "dask[distributed]>=2023.1",
            "pandas>=1.5",
            "sphinx>=7",
            "matplotlib>=3.6",
        ],
        # faiss interop (AQDNeighbors.to_faiss/from_faiss) and cluster search.
        "scale": ["faiss-cpu>=1.7.4", "dask[distributed]>=2023.1"],
        "docs": [
            "sphinx>=7",
            "sphinx-gallery>=0.15",
            "numpydoc>=1.6",
            "pydata-sphinx-theme>=0.15",
            # MathJax copied into the built pages: the math renders offline, no CDN.
            "sphinx-mathjax-offline>=0.0.2",
            "matplotlib>=3.6",
        ],
        "bench": ["faiss-cpu>=1.7.4", "matplotlib>=3.6", "dask[distributed]>=2023.1"],
    },
    entry_points={"console_scripts": ["skdqn=skdqn.cli:main"]},
    classifiers=[
        "Intended Audience :: Science/Research",
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
