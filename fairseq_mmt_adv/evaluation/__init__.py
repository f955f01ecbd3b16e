"""Evaluation: scoring (BLEU, chrF, METEOR) and significance (paired bootstrap)."""
