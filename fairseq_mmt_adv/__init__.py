"""fairseq-mmt-adv: multimodal translation with adversarial visual reconstruction.

``import fairseq_mmt_adv`` registers the plugin with fairseq, as other fairseq plugins do: the
``multimodal_translation`` task, the ``cgru_mmt`` and ``transformer_mmt`` architectures, the
visual fusions, the ``adversarial_reconstruction`` criterion, the tokenizers fairseq lacks
(``moses_lowercase``, ``lowercase``), and the loading of fairseq checkpoints under
torch >= 2.6. ``fairseq-train --user-dir fairseq_mmt_adv`` imports it the same
way. ``from fairseq_mmt_adv import MultimodalTranslator`` translates new captions with their
images (``fairseq-mmt-translate`` from the shell).
"""

from fairseq_mmt_adv import criterions, fusions, models, tasks, translation  # noqa: F401
from fairseq_mmt_adv.checkpoints import loading  # noqa: F401  (torch's allow-list)

__version__ = "0.1.0"


def __getattr__(name: str):
    """``MultimodalTranslator`` is imported when first asked for (it imports fairseq's hub)."""
    if name == "MultimodalTranslator":
        from fairseq_mmt_adv.translation.translator import MultimodalTranslator

        return MultimodalTranslator
    raise AttributeError(f"module 'fairseq_mmt_adv' has no attribute {name!r}")
