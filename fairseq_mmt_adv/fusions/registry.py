"""The visual fusion registry: how the image feature enters a model, one file per fusion.

A fusion is an ``nn.Module`` registered with :func:`register_fusion`, as fairseq registers its
own parts::

    @register_fusion("my-fusion", sites=(ENCODER_OUTPUT,), shapes=("pooled",), identity="exact")
    class MyFusion(Fusion):
        ...

It declares

* where it acts (``sites``): the encoder output H (T x B x C), which the Transformer family
  fuses (``forward(H, v) -> H'``), or the attention context of the cGRU decoder (``precompute(v)``
  once per sentence, then ``forward(c'_t, precomputed)`` at every target step);
* whether it uses the image (``uses_image``, a class attribute);
* the feature shapes it takes: ``pooled`` (B x D), ``spatial`` (B x K x D), or both;
* its identity initialization (``identity``): ``"exact"`` when :meth:`Fusion.init_identity`
  sets parameters for which the fused model computes the text-only model's function,
  ``"approximate"`` when it comes as close as the fusion's form allows, ``None`` when there is
  none.

Every fusion is built as ``cls(visual_feature_dim, model_dim, cfg)``: ``model_dim`` is the size
of what it fuses (C, or the context's size), ``cfg`` the model's options. ``--visual-fusion``
takes any registered fusion that acts where the model fuses (:func:`fusion_names`).
"""

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn

ENCODER_OUTPUT = "encoder-output"
DECODER_CONTEXT = "decoder-context"
SITES = (ENCODER_OUTPUT, DECODER_CONTEXT)
SHAPES = ("pooled", "spatial")
IDENTITIES = ("exact", "approximate", None)


class Fusion(nn.Module):
    """Base class of the fusions. Subclasses set ``uses_image`` and implement ``forward``
    (and ``precompute`` for the decoder context, ``init_identity`` if they declare one)."""

    uses_image = True
    # the decoder-context fusions: forward is linear in the context (the fused cGRU loop needs it)
    linear_in_context = False

    def precompute(self, visual_features: Tensor | None) -> Tensor | None:
        """Per-sentence part of a decoder-context fusion, from B x D or B x K x D features."""
        return visual_features

    def init_identity(self) -> None:
        """Set the parameters for which the fused model computes the text-only model."""
        raise NotImplementedError(f"{type(self).__name__} declares no identity initialization")


@dataclass(frozen=True)
class FusionSpec:
    """What a fusion declares when it registers."""

    name: str
    cls: type
    sites: tuple[str, ...]
    shapes: tuple[str, ...]
    identity: str | None

    @property
    def uses_image(self) -> bool:
        return bool(self.cls.uses_image)


FUSION_REGISTRY: dict[str, FusionSpec] = {}


def register_fusion(
    name: str,
    sites: tuple[str, ...],
    shapes: tuple[str, ...] = SHAPES,
    identity: str | None = None,
) -> Callable[[type], type]:
    """Class decorator: register a :class:`Fusion` subclass as ``--visual-fusion name``."""

    def register(cls: type) -> type:
        if name in FUSION_REGISTRY:
            raise ValueError(f"cannot register duplicate visual fusion {name!r}")
        if not issubclass(cls, Fusion):
            raise ValueError(f"visual fusion {name!r} ({cls.__name__}) must extend Fusion")
        if not sites or set(sites) - set(SITES):
            raise ValueError(f"visual fusion {name!r}: sites must be among {SITES}, not {sites}")
        if not shapes or set(shapes) - set(SHAPES):
            raise ValueError(f"visual fusion {name!r}: shapes must be among {SHAPES}")
        if identity not in IDENTITIES:
            raise ValueError(f"visual fusion {name!r}: identity must be one of {IDENTITIES}")
        FUSION_REGISTRY[name] = FusionSpec(name, cls, tuple(sites), tuple(shapes), identity)
        return cls

    return register


def fusion_names(site: str) -> list[str]:
    """The registered fusions that act at ``site``, in registration order."""
    return [name for name, spec in FUSION_REGISTRY.items() if site in spec.sites]


def fusion_spec(name: str, site: str, arch: str) -> FusionSpec:
    """The spec of ``--visual-fusion name`` for a model of ``arch`` that fuses at ``site``."""
    spec = FUSION_REGISTRY.get(name)
    if spec is None or site not in spec.sites:
        raise ValueError(
            f"--visual-fusion {name!r} does not act on the {site.replace('-', ' ')} that "
            f"{arch} fuses; choose from {fusion_names(site)}"
        )
    return spec


def feature_kind(shape: list[int] | None) -> str | None:
    """``pooled`` for a ``[D]`` feature row, ``spatial`` for ``[K, D]``, None if unknown."""
    if shape is None:
        return None
    return "pooled" if len(shape) == 1 else "spatial"


def build_fusion(
    name: str, site: str, arch: str, visual_feature_dim: int, model_dim: int, cfg=None, shape=None
) -> Fusion:
    """Build ``--visual-fusion name`` for ``arch``; ``shape`` (a feature row's, if known) must be
    one that the fusion takes."""
    spec = fusion_spec(name, site, arch)
    kind = feature_kind(shape)
    if kind is not None and kind not in spec.shapes:
        raise ValueError(
            f"--visual-fusion {name} takes {' or '.join(spec.shapes)} features, and the data's "
            f"are {kind} ({'x'.join(map(str, shape))}): give --visual-features a directory of "
            f"{' or '.join(spec.shapes)} features, or choose another fusion"
        )
    return spec.cls(visual_feature_dim, model_dim, cfg)
