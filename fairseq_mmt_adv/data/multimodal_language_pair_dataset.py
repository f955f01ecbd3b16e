"""A fairseq ``LanguagePairDataset`` whose batches also carry each sentence's image feature."""

import numpy as np
from fairseq.data import BaseWrapperDataset, LanguagePairDataset

from fairseq_mmt_adv.data.visual_features import VisualFeatureDataset


class MultimodalLanguagePairDataset(BaseWrapperDataset):
    """Adds ``net_input["visual_features"]`` to the batches of a ``LanguagePairDataset``.

    Features are looked up by each sample's ``id`` (its sentence index in the split) when the
    batch is collated, so they stay aligned whatever fairseq filters, sorts or shuffles.
    """

    def __init__(self, dataset: LanguagePairDataset, features: VisualFeatureDataset | None) -> None:
        """``features`` None: the batches carry none (a text-only model trained without them)."""
        super().__init__(dataset)
        if features is not None and len(features) != len(dataset):
            raise ValueError(
                f"{features.path}: {len(features)} feature rows for {len(dataset)} sentences"
            )
        self.features = features

    def collater(self, samples):
        batch = self.dataset.collater(samples)
        if batch and self.features is not None:  # fairseq collates an empty list to {}
            batch["net_input"]["visual_features"] = self.features.rows(batch["id"])
        return batch

    def batch_by_size(
        self,
        indices: np.ndarray,
        max_tokens=None,
        max_sentences=None,
        required_batch_size_multiple: int = 1,
    ):
        """Like fairseq's, but never drops a sentence.

        fairseq 0.12's batching drops the last batch's remainder when it is not a multiple of
        ``required_batch_size_multiple`` (60 sentences at ``--batch-size 16`` give 56), so
        ``fairseq-generate`` would skip sentences and validation would score a subset. The
        sentences it leaves out form one more, smaller batch, which the ``required batch size
        is a multiple of N *or smaller than N*`` contract allows.
        """
        batches = self.dataset.batch_by_size(
            indices,
            max_tokens=max_tokens,
            max_sentences=max_sentences,
            required_batch_size_multiple=required_batch_size_multiple,
        )
        covered = np.concatenate(batches) if len(batches) else np.empty(0, dtype=np.int64)
        left_out = np.asarray(indices)[~np.isin(indices, covered)]
        if len(left_out):
            batches = list(batches) + [left_out.astype(np.int64)]
        return batches
