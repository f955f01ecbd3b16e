"""Shared fixtures (the helpers live in ``helpers.py``): a tiny binarized corpus with features.
With ``SUITE_PROFILE=FILE`` set, each test's wall and CPU time goes to FILE
(``suite_profile.py``).

torch and fairseq are imported where they are used, not here: pytest-xdist's controller loads
this file too, and runs no test."""

import os
from pathlib import Path

import pytest

if os.environ.get("SUITE_PROFILE"):
    from suite_profile import pytest_runtest_protocol  # noqa: F401 (a hook)


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "cuda: needs a CUDA device (skipped without one)")


# The files that take longest, longest first (CPU seconds, `python tests/suite_profile.py FILE`
# after a SUITE_PROFILE=FILE run): pytest-xdist hands out whole files (--dist loadfile) in
# collection order, so these start first and the two workers end close together.
LONGEST_FILES = [
    "test_end_to_end.py",
    "test_adversarial_training.py",
    "test_prepare_multi30k.py",
    "test_benchmarks.py",
    "test_recipes.py",
    "test_translator.py",
    "test_bad_input.py",
]


def pytest_collection_modifyitems(config, items) -> None:
    import torch

    first = {name: rank for rank, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: first.get(item.path.name, len(first)))  # stable within a file

    # Two torch threads on a 2-core machine shared with other processes oversubscribe badly.
    torch.set_num_threads(1)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """``root/bin`` (binarized en-de) and ``root/features/{split}.npy``."""
    from helpers import preprocess, write_tiny_corpus

    root = tmp_path_factory.mktemp("tiny")
    write_tiny_corpus(root)
    preprocess(root, root / "bin")
    return root
