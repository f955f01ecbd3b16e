"""Translating new captions with their images: the translator, its command line, the
preprocessing record of a data directory, the image feature extractor, and the tokenizers that
fairseq lacks (imported here: they register with fairseq)."""

from fairseq_mmt_adv.translation import tokenizers  # noqa: F401  (they register)
