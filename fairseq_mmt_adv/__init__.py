"""fairseq-mmt-adv: multimodal translation with adversarial visual reconstruction.

Use as a fairseq user directory: ``fairseq-train --user-dir fairseq_mmt_adv ...``. When fairseq
imports the package (``--user-dir``), or fairseq is loaded already, importing it registers the
``multimodal_translation`` task, the ``cgru_mmt`` and ``transformer_mmt`` architectures and the
``adversarial_reconstruction`` criterion, and lets torch >= 2.6 load fairseq checkpoints. The
tools (``fairseq_mmt_adv.scoring``, ``fairseq_mmt_adv.demo_corpus``, feature extraction) import
without fairseq; ``register()`` registers everything explicitly. ``from fairseq_mmt_adv import
MultimodalTranslator`` translates new captions with their images (``fairseq-mmt-translate`` from
the shell); it loads fairseq when first asked for.
"""

import sys

__version__ = "0.1.0"


def register() -> None:
    """Register the plugin's task, models and criterion with fairseq (what --user-dir does)."""
    from fairseq_mmt_adv import checkpoint_compat, criterions, models, tasks  # noqa: F401


if "fairseq" in sys.modules:
    register()


def __getattr__(name: str):
    """``MultimodalTranslator`` loads fairseq, so it is imported when first asked for."""
    if name == "MultimodalTranslator":
        from fairseq_mmt_adv.translator import MultimodalTranslator

        return MultimodalTranslator
    raise AttributeError(f"module 'fairseq_mmt_adv' has no attribute {name!r}")
