"""Networks used by the ``adversarial_reconstruction`` criterion: generators G and critics D."""

from fairseq_mmt_adv.modules.critics import (
    ConditionalFeatureCritic,
    LatentCritic,
    critic_score,
    gradient_penalty,
)
from fairseq_mmt_adv.modules.visual_generators import (
    ConditionalVisualFeatureGenerator,
    VisualFeatureGenerator,
)

__all__ = [
    "ConditionalFeatureCritic",
    "ConditionalVisualFeatureGenerator",
    "LatentCritic",
    "VisualFeatureGenerator",
    "critic_score",
    "gradient_penalty",
]
