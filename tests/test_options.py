"""The plugin's command-line options: short help texts (the reasoning lives in docs/)."""

import dataclasses

import pytest

from fairseq_mmt_adv.criterions.adversarial_reconstruction import (
    AdversarialReconstructionCriterionConfig,
)
from fairseq_mmt_adv.models.cgru_mmt import CGRUMMTConfig
from fairseq_mmt_adv.models.transformer_mmt import TransformerMMTConfig
from fairseq_mmt_adv.tasks.multimodal_translation import MultimodalTranslationConfig

# Two terminal lines of `fairseq-train --help`.
MAX_HELP = 160


def own_fields(config) -> list[dataclasses.Field]:
    """The fields a plugin config declares itself (not those it inherits from fairseq's)."""
    own = config.__dict__.get("__annotations__", {})
    return [field for field in dataclasses.fields(config) if field.name in own]


@pytest.mark.parametrize(
    "config",
    [
        MultimodalTranslationConfig,
        AdversarialReconstructionCriterionConfig,
        CGRUMMTConfig,
        TransformerMMTConfig,
    ],
)
def test_every_option_has_a_help_of_at_most_two_lines(config):
    fields = own_fields(config)
    assert fields
    for field in fields:
        if field.metadata.get("help") is None:  # only links to fairseq's own options
            assert str(field.default).startswith("${"), f"--{field.name}: no help"
            continue
        text = field.metadata["help"]
        assert 0 < len(text) <= MAX_HELP, (
            f"--{field.name.replace('_', '-')}: {len(text)} characters"
        )
