"""Tokenizers that fairseq lacks, in fairseq's tokenizer registry (``--tokenizer NAME``, or
``tokenizer=NAME`` in ``from_pretrained``), for text prepared as ``scripts/prepare-multi30k.sh``
prepares it:

* ``moses_lowercase``: Moses punctuation normalization and lowercasing, then fairseq's ``moses``
  (tokenized, escaped: ``&apos;``, ``&quot;``...); decoding is fairseq's Moses detokenization.
  With ``--moses-no-dash-splits`` it is the tokenization of :mod:`fairseq_mmt_adv.recipes.moses`
  (the data's ``--tokenization moses``, and the official ``*.lc.norm.tok.*`` files);
  ``--moses-keep-case`` leaves out the lowercasing.
* ``lowercase``: fairseq's ``space`` (whitespace runs become one space) and lowercasing, for
  text binarized lowercased but not tokenized; decoding leaves the text as it is.

They register when ``fairseq_mmt_adv.translation`` is imported.
"""

from dataclasses import dataclass, field

from fairseq.data.encoders import register_tokenizer
from fairseq.data.encoders.moses_tokenizer import MosesTokenizer, MosesTokenizerConfig
from fairseq.data.encoders.space_tokenizer import SpaceTokenizer
from fairseq.dataclass import FairseqDataclass


@dataclass
class LowercaseMosesTokenizerConfig(MosesTokenizerConfig):
    moses_keep_case: bool = field(
        default=False,
        metadata={"help": "moses_lowercase without lowercasing (punctuation still normalized)"},
    )


@register_tokenizer("moses_lowercase", dataclass=LowercaseMosesTokenizerConfig)
class LowercaseMosesTokenizer(MosesTokenizer):
    """fairseq's ``moses`` after sacremoses' punctuation normalization and lowercasing."""

    def __init__(self, cfg: LowercaseMosesTokenizerConfig):
        super().__init__(cfg)  # it raises the ImportError that names sacremoses
        from sacremoses import MosesPunctNormalizer

        self.normalizer = MosesPunctNormalizer(lang=cfg.source_lang)

    def encode(self, x: str) -> str:
        x = self.normalizer.normalize(x)
        return super().encode(x if self.cfg.moses_keep_case else x.lower())


@register_tokenizer("lowercase", dataclass=FairseqDataclass)
class LowercaseTokenizer(SpaceTokenizer):
    """fairseq's ``space`` tokenizer, lowercased."""

    def encode(self, x: str) -> str:
        return super().encode(x).lower()
