from fairseq_mmt_adv.data.multimodal_language_pair_dataset import MultimodalLanguagePairDataset
from fairseq_mmt_adv.data.visual_features import (
    FeatureNormalizer,
    VisualFeatureDataset,
    VisualFeatureError,
)

__all__ = [
    "FeatureNormalizer",
    "MultimodalLanguagePairDataset",
    "VisualFeatureDataset",
    "VisualFeatureError",
]
