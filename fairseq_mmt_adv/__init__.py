"""fairseq-mmt-adv: multimodal translation with adversarial visual reconstruction.

Use as a fairseq user directory: ``fairseq-train --user-dir fairseq_mmt_adv ...``. Importing the
package registers the ``multimodal_translation`` task, the ``cgru_mmt`` model architectures and
the ``adversarial_reconstruction`` criterion, and lets torch >= 2.6 load fairseq checkpoints.
"""

from fairseq_mmt_adv import (  # noqa: F401
    checkpoint_compat,  # noqa: F401  (must precede any checkpoint load)
    criterions,
    models,
    tasks,
)

__version__ = "0.1.0"
