"""Image features aligned with the sentences of a split: loading, validation, normalization.

A split ``{split}`` of the ``multimodal_translation`` task reads ``DIR/{split}.npy``: a float16 or
float32 array of shape ``(N, D)`` (pooled features, e.g. ResNet-50 pool5, D = 2048) or
``(N, K, D)`` (spatial features, e.g. res4f, K = 196, D = 1024). Row ``i`` belongs to sentence
``i`` of the split. The file is memory-mapped: only the rows of a batch are read.
"""

import os

import numpy as np
import torch

NORMALIZATIONS = ("none", "l2", "standardize")
_CHUNK_ROWS = 4096


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


def check_finite(array: np.ndarray, path: str) -> None:
    """Raise on the first row holding NaN or inf (scanned in chunks, the file stays mapped)."""
    for start in range(0, len(array), _CHUNK_ROWS):
        chunk = np.asarray(array[start : start + _CHUNK_ROWS])
        finite = np.isfinite(chunk).reshape(len(chunk), -1).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise VisualFeatureError(
                f"visual feature file {path}: row {row} (sentence {row}) holds NaN or inf; "
                "re-extract the features of that image"
            )


def feature_statistics(array: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation over all rows (and locations) of ``array``."""
    dim = array.shape[-1]
    total = np.zeros(dim, dtype=np.float64)
    total_sq = np.zeros(dim, dtype=np.float64)
    count = 0
    for start in range(0, len(array), _CHUNK_ROWS):
        chunk = np.asarray(array[start : start + _CHUNK_ROWS], dtype=np.float64).reshape(-1, dim)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
        count += len(chunk)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


def describe_shape(shape) -> str:
    """A feature row's shape in words: pooled (D) or spatial (K regions of D)."""
    if shape is None:
        return "unknown shape"
    if len(shape) == 1:
        return f"pooled (D={shape[0]})"
    return f"spatial (K={shape[0]} regions of D={shape[-1]})"


class FeatureNormalizer:
    """Normalizes feature rows: ``none``, ``l2`` (unit norm per vector) or ``standardize``.

    ``standardize`` subtracts the train-split mean and divides by its standard deviation, per
    dimension; the statistics travel in the checkpoint so decoding uses the same ones. A
    dimension that is constant over the train split (std <= ``CONSTANT``) carried no information
    in training, so it is 0 whatever its value (its weights never learnt to read it).
    """

    CONSTANT = 1e-6

    def __init__(
        self,
        method: str,
        mean: torch.Tensor | None = None,
        std: torch.Tensor | None = None,
    ) -> None:
        if method not in NORMALIZATIONS:
            raise ValueError(f"unknown visual feature normalization {method!r}: {NORMALIZATIONS}")
        if method == "standardize" and (mean is None or std is None):
            raise ValueError("standardize needs the train-split mean and standard deviation")
        self.method = method
        self.mean = mean
        self.scale = None
        if std is not None:
            informative = std > self.CONSTANT
            self.scale = torch.where(informative, 1 / std.clamp_min(self.CONSTANT), 0.0)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if self.method == "l2":
            return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        if self.method == "standardize":
            mean, scale = self.mean.to(features), self.scale.to(features)
            return (features - mean) * scale
        return features


class VisualFeatureDataset(torch.utils.data.Dataset):
    """The feature rows of one split, validated against its sentences, fetched by sentence id.

    Args:
        path: the split's ``.npy`` file.
        num_sentences: sentences in the split; the file must have exactly as many rows.
        expected_dim: feature size D the model was (or will be) built for, if known.
        expected_shape: a row's shape the model was trained on (``[D]`` pooled, ``[K, D]``
            spatial), if known.
        shuffle_seed: if given, sentence ``i`` gets the row of a fixed random permutation
            (the incongruent-image test).
    """

    def __init__(
        self,
        path: str,
        num_sentences: int,
        expected_dim: int | None = None,
        expected_shape: list[int] | None = None,
        shuffle_seed: int | None = None,
    ) -> None:
        self.path = path
        self.array = open_feature_file(path)
        if len(self.array) != num_sentences:
            raise VisualFeatureError(
                f"visual feature file {path} has {len(self.array)} rows but the split has "
                f"{num_sentences} sentences; row i must hold the image feature of sentence i "
                "(extract the features in the order of the split's image list)"
            )
        if expected_dim is not None and self.dim != expected_dim:
            raise VisualFeatureError(
                f"visual feature file {path} has feature size D={self.dim} but {expected_dim} is "
                "expected (the size of the train split's features, which the model is built "
                "for); use features from the same extractor and layer for every split"
            )
        if expected_shape is not None and list(self.shape) != list(expected_shape):
            raise VisualFeatureError(
                f"visual feature file {path} holds {describe_shape(self.shape)} features but the "
                f"model was trained on {describe_shape(expected_shape)} ones; use features of "
                "the same extractor and layer as for training"
            )
        check_finite(self.array, path)
        self.row_of_sentence: np.ndarray | None = None
        if shuffle_seed is not None:
            self.row_of_sentence = np.random.RandomState(shuffle_seed).permutation(num_sentences)

    @property
    def dim(self) -> int:
        return int(self.array.shape[-1])

    @property
    def shape(self) -> list[int]:
        """A row's shape: ``[D]`` or ``[K, D]``."""
        return [int(n) for n in self.array.shape[1:]]

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.rows(torch.tensor([index]))[0]

    def rows(self, sentence_ids: torch.Tensor) -> torch.Tensor:
        """Raw float32 features of these sentences, in order (B x D or B x K x D); the task
        normalizes them (``normalize_visual_features``)."""
        ids = sentence_ids.cpu().numpy()
        if self.row_of_sentence is not None:
            ids = self.row_of_sentence[ids]
        order = np.argsort(ids, kind="stable")  # sorted reads are kinder to the memory map
        block = np.empty((len(ids),) + self.array.shape[1:], dtype=np.float32)
        block[order] = self.array[ids[order]]
        return torch.from_numpy(block)
