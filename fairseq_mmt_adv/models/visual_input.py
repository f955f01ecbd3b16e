"""The image feature as a model of the plugin takes it in: checked and normalized.

Every route into a model (``forward``, ``fairseq-generate``, the translator, a scorer asking for
log-probabilities, a fine-tuning loop) hands the encoder *raw* features; the encoder's
:class:`VisualInput` normalizes them as training did, with the statistics of the train split
kept as buffers in the model's state. Checkpoints written when the task normalized have no such
buffers: they are filled from the task state the model was built from (the same statistics),
so those checkpoints decode as before.
"""

import torch
from torch import Tensor, nn

NORMALIZATIONS = ("none", "l2", "standardize")
# a dimension whose train-split std is at most this carries nothing: it becomes 0
CONSTANT = 1e-6


def missing_image_error(arch: str, fusion: str) -> ValueError:
    """Where image features come from, for a ``--visual-fusion fusion`` model of ``arch``."""
    return ValueError(
        f"this {arch} model fuses the image (--visual-fusion {fusion}) but its input has no "
        "image features. fairseq-interactive cannot carry them: translate with "
        "fairseq-mmt-translate DATA --path CKPT --input FILE (one 'caption<TAB>image path' a "
        "line) or fairseq_mmt_adv.MultimodalTranslator; fairseq-train and fairseq-generate "
        "need --task multimodal_translation --visual-features DIR"
    )


class FeatureNormalizer(nn.Module):
    """``none``, ``l2`` (unit norm per vector) or ``standardize`` (minus the train-split mean,
    over its standard deviation, per dimension; a dimension constant over the train split is
    0 whatever its value, since its weights never learnt to read it).

    The method and statistics are buffers (``mean``, ``scale``, ``unit_norm``), so the model's
    state says how its features are normalized.
    """

    def __init__(
        self, method: str, dim: int, mean: Tensor | None = None, std: Tensor | None = None
    ):
        super().__init__()
        if method not in NORMALIZATIONS:
            raise ValueError(f"unknown visual feature normalization {method!r}: {NORMALIZATIONS}")
        if method == "standardize" and (mean is None or std is None):
            raise ValueError("standardize needs the train-split mean and standard deviation")
        scale = torch.ones(dim)
        if method == "standardize":
            scale = torch.where(std > CONSTANT, 1 / std.float().clamp_min(CONSTANT), 0.0)
        else:
            mean = torch.zeros(dim)
        self.register_buffer("mean", mean.float().clone())
        self.register_buffer("scale", scale)
        self.register_buffer("unit_norm", torch.tensor(method == "l2"))

    def forward(self, features: Tensor) -> Tensor:
        if self.unit_norm:
            return features / features.norm(dim=-1, keepdim=True).clamp_min(1e-6)
        return (features - self.mean.to(features)) * self.scale.to(features)

    def upgrade_state_dict_named(self, state_dict: dict, name: str) -> None:
        """A checkpoint written before the model normalized: take this module's buffers, built
        from the task state that the checkpoint's model was trained with."""
        prefix = f"{name}." if name else ""
        for key, buffer in self.named_buffers():
            state_dict.setdefault(prefix + key, buffer.clone())


class VisualInput(nn.Module):
    """What an encoder does with the raw feature first: refuse a missing one that the model's
    fusion needs, and normalize it (``normalizer``)."""

    def __init__(self, arch: str, fusion: str, required: bool, normalizer: FeatureNormalizer):
        super().__init__()
        self.arch, self.fusion, self.required = arch, fusion, required
        self.normalizer = normalizer

    def forward(self, visual_features: Tensor | None) -> Tensor | None:
        if visual_features is None:
            if self.required:
                raise missing_image_error(self.arch, self.fusion)
            return None
        return self.normalizer(visual_features.float())
