"""Image features aligned with the sentences of a split: loading and normalization.

A split ``{split}`` of the ``multimodal_translation`` task reads ``DIR/{split}.npy``, checked by
:func:`fairseq_mmt_adv.data.feature_files.checked_feature_file` (what a usable file is: float16 or
float32, ``(N, D)`` pooled or ``(N, K, D)`` spatial, row ``i`` for sentence ``i``). The file is
memory-mapped: only the rows of a batch are read.
"""

import numpy as np
import torch

from fairseq_mmt_adv.data.feature_files import CHUNK_ROWS, checked_feature_file


def feature_statistics(array: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-dimension mean and standard deviation over all rows (and locations) of ``array``."""
    dim = array.shape[-1]
    total = np.zeros(dim, dtype=np.float64)
    total_sq = np.zeros(dim, dtype=np.float64)
    count = 0
    for start in range(0, len(array), CHUNK_ROWS):
        chunk = np.asarray(array[start : start + CHUNK_ROWS], dtype=np.float64).reshape(-1, dim)
        total += chunk.sum(axis=0)
        total_sq += np.square(chunk).sum(axis=0)
        count += len(chunk)
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - np.square(mean), 0.0))
    return torch.from_numpy(mean).float(), torch.from_numpy(std).float()


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
        self.array = checked_feature_file(path, num_sentences, expected_dim, expected_shape)
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
        """Raw float32 features of these sentences, in order (B x D or B x K x D); the model
        normalizes them (:mod:`fairseq_mmt_adv.models.visual_input`)."""
        ids = sentence_ids.cpu().numpy()
        if self.row_of_sentence is not None:
            ids = self.row_of_sentence[ids]
        order = np.argsort(ids, kind="stable")  # sorted reads are kinder to the memory map
        block = np.empty((len(ids),) + self.array.shape[1:], dtype=np.float32)
        block[order] = self.array[ids[order]]
        return torch.from_numpy(block)
