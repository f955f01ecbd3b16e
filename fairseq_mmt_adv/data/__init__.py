"""Image features aligned with sentences (:mod:`.visual_features`, numpy and torch only) and the
dataset that adds them to fairseq's batches (:mod:`.multimodal_language_pair_dataset`)."""

from fairseq_mmt_adv.data.feature_files import VisualFeatureError
from fairseq_mmt_adv.data.visual_features import VisualFeatureDataset

__all__ = ["VisualFeatureDataset", "VisualFeatureError"]
