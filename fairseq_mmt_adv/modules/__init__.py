"""Networks used by the ``adversarial_reconstruction`` criterion: generators G and critics D."""

from fairseq_mmt_adv.modules.critics import (
    ConditionalFeatureCritic,
    LatentCritic,
    MultilayerCritic,
    wgan_gp_terms,
)
from fairseq_mmt_adv.modules.visual_generators import (
    ConditionalVisualFeatureGenerator,
    VisualFeatureGenerator,
)

__all__ = [
    "ConditionalFeatureCritic",
    "ConditionalVisualFeatureGenerator",
    "LatentCritic",
    "MultilayerCritic",
    "VisualFeatureGenerator",
    "wgan_gp_terms",
]
