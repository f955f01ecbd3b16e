"""Install the fairseq-mmt-adv plugin (the ``fairseq_mmt_adv`` user-dir package).

fairseq comes from ``fairseq-fixed`` (import name ``fairseq``): PyPI's ``fairseq==0.12.2`` cannot
be built or imported on Python 3.11. Install torch first (``scripts/setup-env.sh`` does) so that
pip does not pull a multi-GB CUDA build, then ``pip install --no-build-isolation -e .``.
"""

from setuptools import find_packages, setup

setup(
    name="fairseq-mmt-adv",
    version="0.1.0",
    description="Multimodal machine translation with adversarial visual reconstruction (fairseq)",
    packages=find_packages(include=["fairseq_mmt_adv", "fairseq_mmt_adv.*"]),
    python_requires=">=3.11",
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
    ],
    install_requires=[
        "torch>=2.0",
        "numpy",
        "fairseq-fixed==0.12.3.1",
        "sacrebleu>=2.0",
        "subword-nmt",
    ],
    entry_points={
        "console_scripts": [
            "fairseq-mmt-translate = fairseq_mmt_adv.translation.cli:cli_main",
            "fairseq-mmt-evaluate = fairseq_mmt_adv.evaluation.cli:cli_main",
        ],
    },
    extras_require={
        "test": [
            "pytest",
            "pytest-xdist",
            "pytest-timeout",
            "ruff",
            "sacremoses",
            "pillow",
            "matplotlib",
            "torchvision==0.28.0",  # the release made for torch 2.13.0 (see scripts/setup-env.sh)
        ],
        "plots": ["matplotlib"],
        "tok": ["sacremoses"],
        "features": ["pillow", "tqdm", "torchvision==0.28.0"],
        # fairseq-train --tensorboard-logdir (fairseq prints "Please install tensorboardX" without)
        "tensorboard": ["tensorboardX"],
    },
)
