"""Visual fusions: how the image feature enters a model (:mod:`.registry`), one file each.

Importing this package registers the plugin's fusions; a new fusion is one file with
``@register_fusion`` (imported by the user's code, or added to the imports below).
"""

from fairseq_mmt_adv.fusions import ctx_mul, gated, none, selective_attention  # noqa: F401
from fairseq_mmt_adv.fusions.registry import (
    DECODER_CONTEXT,
    ENCODER_OUTPUT,
    FUSION_REGISTRY,
    Fusion,
    build_fusion,
    fusion_names,
    register_fusion,
)

__all__ = [
    "DECODER_CONTEXT",
    "ENCODER_OUTPUT",
    "FUSION_REGISTRY",
    "Fusion",
    "build_fusion",
    "fusion_names",
    "register_fusion",
]
