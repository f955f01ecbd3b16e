"""What every model of the plugin is: the contract that the task, the criterion, the translator
and the evaluations rely on, written once.

A model of the plugin (:class:`MultimodalModel`, mixed into a fairseq encoder-decoder model)

* is built for the ``multimodal_translation`` task, whose train features fix the feature size
  D and shape (:func:`visual_features_of`);
* fuses the image where its family does (``fusion_site``), with the ``--visual-fusion`` built
  from the fusion registry (:func:`build_model_fusion`), and says whether translating needs the
  image (``uses_image``);
* takes raw features in its encoder and normalizes them itself (:class:`VisualInput`), which
  the criterion uses for its reconstruction target (``normalize_visual_features``);
* returns hT, each sentence's top-layer decoder state at its last real target position, as
  ``extra["final_hidden"]`` (:func:`last_real_state`), and says its size
  (``final_hidden_size``), so that the criterion sizes G and D from the model it trains.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from torch import Tensor

from fairseq_mmt_adv.data.feature_files import NEEDS_FEATURES, VisualFeatureError
from fairseq_mmt_adv.fusions.registry import Fusion, build_fusion, fusion_spec
from fairseq_mmt_adv.models.final_hidden import last_real_state
from fairseq_mmt_adv.models.visual_input import FeatureNormalizer, VisualInput

__all__ = [
    "MultimodalModel",
    "ReconstructionSource",
    "VisualFeatures",
    "last_real_state",
    "visual_features_of",
]


@dataclass(frozen=True)
class VisualFeatures:
    """What the task's train features fix: the size D, a row's shape, their normalization."""

    dim: int
    shape: list[int] | None
    normalizer: FeatureNormalizer


def visual_features_of(task, arch: str) -> VisualFeatures:
    """The features of ``task`` that a model of ``arch`` is built for."""
    if not hasattr(task, "visual_feature_dim"):
        raise ValueError(f"--arch {arch} needs --task multimodal_translation")
    # a task that says only its feature size (a test's stand-in) gets features as they are
    normalization = getattr(task, "visual_normalization", lambda: ("none", None, None))
    method, mean, std = normalization()
    # None: trained without features (a text-only model): D = 0
    dim, shape = task.visual_feature_dim or 0, getattr(task, "visual_feature_shape", None)
    return VisualFeatures(dim, shape, FeatureNormalizer(method, dim, mean, std))


class MultimodalModel:
    """Mixin of the plugin's models. Subclasses set ``fusion_site``, ``fusion_owner`` and
    ``arch_name``, and build the fusion with :meth:`build_model_fusion` and the encoder's
    ``visual_input`` with :meth:`build_visual_input`."""

    fusion_site: str  # where its fusion acts (fusions.registry.SITES)
    fusion_owner: str  # "encoder" or "decoder": the part that holds the fusion
    arch_name: str
    # fairseq models (their registry names) whose checkpoints are text models of the family,
    # which a model can start from (models/text_start.py) beside its own --visual-fusion none
    text_model_families: tuple[str, ...] = ()
    _text_model_source: str | None = None  # set by start_from_text_model until the next load

    @classmethod
    def build_model_fusion(
        cls, name: str, features: VisualFeatures, model_dim: int, cfg=None
    ) -> Fusion:
        """``--visual-fusion name`` at the family's site, for these features."""
        if features.dim == 0 and fusion_spec(name, cls.fusion_site, cls.arch_name).uses_image:
            raise VisualFeatureError(f"--visual-fusion {name} uses the image: {NEEDS_FEATURES}")
        return build_fusion(
            name, cls.fusion_site, cls.arch_name, features.dim, model_dim, cfg, features.shape
        )

    @classmethod
    def build_visual_input(cls, fusion_name: str, features: VisualFeatures) -> VisualInput:
        """The encoder's checks and normalization of the raw features."""
        required = fusion_spec(fusion_name, cls.fusion_site, cls.arch_name).uses_image
        return VisualInput(cls.arch_name, fusion_name, required, features.normalizer)

    @property
    def fusion(self) -> Fusion:
        return getattr(self, self.fusion_owner).fusion

    @property
    def fusion_name(self) -> str:
        """Its ``--visual-fusion``."""
        return self.encoder.visual_input.fusion

    @classmethod
    def architecture_options(cls, model_cfg) -> dict:
        """The options of ``model_cfg`` (this family's, or a text model's) that shape the
        function, which a text model it starts from must share (flat flag names)."""
        return {}

    def text_model_keys(self) -> list[str]:
        """The state that a text model of the family lacks: the fusion's parameters and the
        encoder's feature normalization."""
        prefixes = (f"{self.fusion_owner}.fusion.", "encoder.visual_input.")
        return [key for key in self.state_dict() if key.startswith(prefixes)]

    def start_from_text_model(self, source: str) -> None:
        """Set the fusion to its identity, and let the next :meth:`load_state_dict` take a text
        model's state (``source``), completed by this model's :meth:`text_model_keys`."""
        self.fusion.init_identity()
        self._text_model_source = source

    def load_state_dict(self, state_dict, strict=True, model_cfg=None, args=None):
        if self._text_model_source is not None:
            own = self.state_dict()
            state_dict = {**state_dict, **{key: own[key] for key in self.text_model_keys()}}
            self._text_model_source = None
        return super().load_state_dict(state_dict, strict=strict, model_cfg=model_cfg, args=args)

    def freeze_text_model(self) -> None:
        """``--freeze-text-model``: only the fusion's parameters train; the text model's stay
        as they are (fairseq's optimizer takes the parameters that require gradients)."""
        trained = f"{self.fusion_owner}.fusion."
        for name, parameter in self.named_parameters():
            parameter.requires_grad = name.startswith(trained)

    @property
    def uses_image(self) -> bool:
        """Whether translating needs the image (False for ``--visual-fusion none``)."""
        return bool(self.fusion.uses_image)

    @property
    def visual_feature_dim(self) -> int:
        """The size D of the features the model was built for."""
        return int(self.encoder.visual_input.normalizer.mean.numel())

    @property
    def final_hidden_size(self) -> int:
        """The size H of ``extra["final_hidden"]`` (the decoder says it)."""
        return int(self.decoder.final_hidden_size)

    def normalize_visual_features(self, features: Tensor) -> Tensor:
        """Raw features normalized as the encoder normalizes them (the criterion's target v)."""
        return self.encoder.visual_input.normalizer(features.float())


@runtime_checkable
class ReconstructionSource(Protocol):
    """What the ``adversarial_reconstruction`` criterion reads of the model it trains (every
    :class:`MultimodalModel` has it): the sizes of hT and v, and v as the model normalizes it."""

    @property
    def final_hidden_size(self) -> int: ...

    @property
    def visual_feature_dim(self) -> int: ...

    def normalize_visual_features(self, features: Tensor) -> Tensor: ...
