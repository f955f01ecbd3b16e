"""Feature files: the one definition of a usable image-feature file of a split.

``DIR/{split}.npy`` is a float16 or float32 array of shape ``(N, D)`` (pooled features, e.g.
ResNet-50 pool5, D = 2048) or ``(N, K, D)`` (spatial features, e.g. res4f, K = 196, D = 1024),
one row per sentence of the split, finite. :func:`checked_feature_file` makes every check the
task makes when it loads a split; ``scripts/prepare-multi30k.sh`` links features through the
same function (``fairseq_mmt_adv.recipes.features``). numpy only: checking needs no torch.
"""

import os

import numpy as np

CHUNK_ROWS = 4096


class VisualFeatureError(ValueError):
    """A feature file that cannot be used as it is; the message names the file and the fix."""


def feature_path(features_dir: str, split: str) -> str:
    return os.path.join(features_dir, f"{split}.npy")


def open_feature_file(path: str) -> np.ndarray:
    """Memory-map a feature file, checking that it exists and has a usable dtype and rank."""
    if not os.path.isfile(path):
        raise VisualFeatureError(
            f"visual feature file {path} does not exist: every split needs DIR/<split>.npy "
            "with one row per sentence (give the directory with --visual-features)"
        )
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as err:
        raise VisualFeatureError(f"cannot read visual feature file {path} as .npy: {err}") from err
    if array.dtype not in (np.float16, np.float32):
        raise VisualFeatureError(
            f"visual feature file {path} has dtype {array.dtype}; expected float16 or float32 "
            "(convert it with numpy: np.save(path, a.astype(np.float32)))"
        )
    if array.ndim not in (2, 3):
        raise VisualFeatureError(
            f"visual feature file {path} has shape {array.shape}; expected (N, D) pooled or "
            "(N, K, D) spatial features, one row per sentence"
        )
    return array


def first_nonfinite_row(array: np.ndarray) -> int | None:
    """The first row holding NaN or inf, or ``None`` (scanned in chunks: a mapped file stays
    mapped); the translator checks its features with it too."""
    for start in range(0, len(array), CHUNK_ROWS):
        chunk = np.asarray(array[start : start + CHUNK_ROWS])
        finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not finite.all():
            return start + int(np.flatnonzero(~finite)[0])
    return None


def check_finite(array: np.ndarray, path: str) -> None:
    """Raise on the first row holding NaN or inf."""
    row = first_nonfinite_row(array)
    if row is not None:
        raise VisualFeatureError(
            f"visual feature file {path}: row {row} (sentence {row}) holds NaN or inf; "
            "re-extract the features of that image"
        )


def describe_shape(shape) -> str:
    """A feature row's shape in words: pooled (D) or spatial (K regions of D)."""
    if shape is None:
        return "unknown shape"
    if len(shape) == 1:
        return f"pooled (D={shape[0]})"
    return f"spatial (K={shape[0]} regions of D={shape[-1]})"


def checked_feature_file(
    path: str,
    num_sentences: int,
    expected_dim: int | None = None,
    expected_shape: list[int] | None = None,
) -> np.ndarray:
    """The memory-mapped feature file of a split of ``num_sentences``, after every check: it
    exists, has a usable dtype and rank, a row per sentence, the expected feature size D and row
    shape (``[D]`` pooled, ``[K, D]`` spatial) when given, and no NaN or inf."""
    array = open_feature_file(path)
    if len(array) != num_sentences:
        raise VisualFeatureError(
            f"visual feature file {path} has {len(array)} rows but the split has "
            f"{num_sentences} sentences; row i must hold the image feature of sentence i "
            "(extract the features in the order of the split's image list)"
        )
    if expected_dim is not None and array.shape[-1] != expected_dim:
        raise VisualFeatureError(
            f"visual feature file {path} has feature size D={array.shape[-1]} but "
            f"{expected_dim} is expected (the size of the train split's features, which the "
            "model is built for); use features from the same extractor and layer for every split"
        )
    shape = [int(n) for n in array.shape[1:]]
    if expected_shape is not None and shape != list(expected_shape):
        raise VisualFeatureError(
            f"visual feature file {path} holds {describe_shape(shape)} features but the "
            f"model was trained on {describe_shape(expected_shape)} ones; use features of "
            "the same extractor and layer as for training"
        )
    check_finite(array, path)
    return array
