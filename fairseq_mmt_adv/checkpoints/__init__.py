"""Checkpoint files: loading fairseq checkpoints under torch >= 2.6, damaged files named."""
