"""The ``multimodal_translation`` task: translation whose samples carry the image's feature."""

import logging
from dataclasses import dataclass, field
from typing import Optional

from fairseq.dataclass import ChoiceEnum
from fairseq.tasks import register_task
from fairseq.tasks.translation import TranslationConfig, TranslationTask

from fairseq_mmt_adv.data.multimodal_language_pair_dataset import MultimodalLanguagePairDataset
from fairseq_mmt_adv.data.visual_features import (
    NORMALIZATIONS,
    FeatureNormalizer,
    VisualFeatureDataset,
    VisualFeatureError,
    feature_path,
    feature_statistics,
    open_feature_file,
)

logger = logging.getLogger(__name__)

# Seed of the fixed permutation used by --shuffle-visual-features (incongruent-image test).
INCONGRUENT_IMAGES_SEED = 1


@dataclass
class MultimodalTranslationConfig(TranslationConfig):
    visual_features: Optional[str] = field(
        default=None,
        metadata={
            "help": "directory with one DIR/{split}.npy per split (train, valid, test, test1, "
            "...): float16/float32, shape (N, D) pooled or (N, K, D) spatial, row i = sentence "
            "i. Given to fairseq-generate it overrides the directory stored in the checkpoint."
        },
    )
    visual_feature_norm: ChoiceEnum(NORMALIZATIONS) = field(
        default="standardize",
        metadata={
            "help": "standardize (default): per-dimension train mean/std, stored in the "
            "checkpoint; gives W^feat v the unit scale its initialization expects (with l2, "
            "tanh(W^feat v) starts at a few hundredths and shrinks the context as much, which "
            "slows learning); l2: unit norm per feature vector; none: raw features. Decoding "
            "always uses the checkpoint's choice."
        },
    )
    shuffle_visual_features: bool = field(
        default=False,
        metadata={
            "help": "evaluation only: give every non-train split's sentences the features of "
            "other sentences (a fixed permutation), to measure how much a model relies on "
            "the right image (incongruent-image test)"
        },
    )
    rebuild_batches: bool = field(
        default=True,
        metadata={
            "help": "build the batches anew for every epoch (seeded by seed + epoch). fairseq "
            "otherwise builds them once, seeded by the epoch it starts at, so a run resumed "
            "from a checkpoint would see other batches than an uninterrupted one"
        },
    )


@register_task("multimodal_translation", dataclass=MultimodalTranslationConfig)
class MultimodalTranslationTask(TranslationTask):
    """Translation whose batches also carry ``net_input["visual_features"]``.

    The feature size of the train split, and with ``--visual-feature-norm standardize`` its
    statistics, are task state: they are saved in checkpoints so that decoding checks and
    normalizes features exactly as training did, without the train features at hand.
    """

    cfg: MultimodalTranslationConfig

    def __init__(self, cfg: MultimodalTranslationConfig, src_dict, tgt_dict) -> None:
        super().__init__(cfg, src_dict, tgt_dict)
        # the model built last; fairseq builds the criterion for it next (see build_model)
        self.trained_model = None
        self.state.add_factory("visual_feature_dim", self._train_feature_dim)
        self.state.add_factory("visual_feature_stats", self._train_feature_statistics)

    @property
    def visual_feature_dim(self) -> int:
        """Feature size D the model is built for (that of the train split's features)."""
        return self.state.visual_feature_dim

    def features_dir(self, task_cfg=None) -> str:
        directory = self.cfg.visual_features or getattr(task_cfg, "visual_features", None)
        if not directory:
            raise VisualFeatureError(
                "the multimodal_translation task needs --visual-features DIR, a directory "
                "holding DIR/{split}.npy for every split"
            )
        return directory

    def _train_feature_path(self) -> str:
        return feature_path(self.features_dir(), self.cfg.train_subset)

    def _train_feature_dim(self) -> int:
        return int(open_feature_file(self._train_feature_path()).shape[-1])

    def _train_feature_statistics(self):
        path = self._train_feature_path()
        logger.info(f"computing visual feature mean/std over {path}")
        return feature_statistics(open_feature_file(path))

    def _normalizer(self, method: str) -> FeatureNormalizer:
        if method == "standardize":
            mean, std = self.state.visual_feature_stats
            return FeatureNormalizer(method, mean, std)
        return FeatureNormalizer(method)

    def load_dataset(self, split: str, epoch: int = 1, combine: bool = False, **kwargs) -> None:
        """Load a split's sentences (as ``translation`` does) and its aligned features.

        ``fairseq-generate`` passes the checkpoint's task config as ``task_cfg``: its feature
        directory is used unless ``--visual-features`` is given, and its normalization always.
        """
        task_cfg = kwargs.pop("task_cfg", None)
        super().load_dataset(split, epoch=epoch, combine=combine, **kwargs)
        sentences = self.datasets[split]
        norm = getattr(task_cfg, "visual_feature_norm", None) or self.cfg.visual_feature_norm
        shuffle = self.cfg.shuffle_visual_features and split != self.cfg.train_subset
        features = VisualFeatureDataset(
            feature_path(self.features_dir(task_cfg), split),
            num_sentences=len(sentences),
            normalizer=self._normalizer(str(norm)),
            expected_dim=self.visual_feature_dim,
            shuffle_seed=INCONGRUENT_IMAGES_SEED if shuffle else None,
        )
        logger.info(
            f"{split}: {len(features)} visual features of shape {features.array.shape[1:]} "
            f"from {features.path} ({norm} normalization{', shuffled' if shuffle else ''})"
        )
        self.datasets[split] = MultimodalLanguagePairDataset(sentences, features)

    def build_model(self, cfg, from_checkpoint: bool = False):
        """Build the model, and remember it as the one that the criterion built next trains:
        ``adversarial_reconstruction`` sizes G and D by its ``final_hidden_size``."""
        self.trained_model = super().build_model(cfg, from_checkpoint)
        return self.trained_model
