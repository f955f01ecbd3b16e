"""Transformer multimodal translation models (``--arch transformer_mmt``, ``transformer_mmt_tiny``).

fairseq's own Transformer, with the image fused into the encoder output (``--visual-fusion``,
see :mod:`fairseq_mmt_adv.fusions`): ``gated`` (Wu et al., 2021),
``selective-attn`` (Li et al., 2022) or ``none``, the text-only model on the same code path,
which computes what fairseq's ``transformer`` computes with the same weights. The decoder also
returns hT (``extra["final_hidden"]``), each sentence's top-layer state at its last real target
position, which the ``adversarial_reconstruction`` criterion reconstructs v from.

The options are fairseq's ``TransformerConfig`` plus the fusion's (:class:`TransformerMMTConfig`),
registered the way fairseq registers its own ``transformer``: flat flags generated from the
dataclass, and the architecture presets as ``register_model_architecture`` functions. Not with
``register_model(..., dataclass=TransformerMMTConfig)``: ``TransformerConfig`` nests the encoder's
and decoder's options (``encoder.embed_dim``), and fairseq 0.12's conversion of the command line
into a dataclass config looks those up under their nested names (``embed_dim``), so flags such as
``--encoder-embed-dim 16`` would be dropped without a word (``fairseq.dataclass.utils.
_override_attr``; checked: the override list for ``encoder_embed_dim=16`` holds no ``embed_dim``).
The checkpoints therefore keep an ``argparse.Namespace`` (on torch's allow-list,
:mod:`fairseq_mmt_adv.checkpoints.loading`); ``fairseq-hydra-train`` trains both families from YAML
(``examples/hydra``).
"""

from dataclasses import dataclass, field

from fairseq.dataclass.utils import gen_parser_from_dataclass
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import (
    TransformerConfig,
    TransformerDecoderBase,
    TransformerEncoderBase,
    TransformerModel,
    base_architecture,
)
from torch import Tensor

from fairseq_mmt_adv.fusions.registry import ENCODER_OUTPUT, Fusion
from fairseq_mmt_adv.models.contract import MultimodalModel, last_real_state, visual_features_of
from fairseq_mmt_adv.models.text_start import as_attributes, config_options
from fairseq_mmt_adv.models.visual_input import VisualInput


@dataclass
class TransformerMMTConfig(TransformerConfig):
    visual_fusion: str = field(
        default="gated",
        metadata={
            "help": "how v enters the encoder output: a fusion of the registry (gated, "
            "selective-attn, none)"
        },
    )
    selective_attention_heads: int = field(
        default=1, metadata={"help": "heads of the selective attention over image regions"}
    )
    freeze_text_model: bool = field(
        default=False,
        metadata={"help": "train the fusion only: the text model's weights stay as loaded"},
    )


# Options that a fine-tuning run may set otherwise than its text model: regularization, memory,
# positions (sinusoidal; learned ones are checked by their shapes) and pruning.
TRAINING_OPTIONS = {
    "_name", "dropout", "attention_dropout", "activation_dropout", "relu_dropout",
    "adaptive_softmax_dropout", "checkpoint_activations", "offload_activations",
    "min_params_to_wrap", "max_source_positions", "max_target_positions", "export",
    "encoder__name", "encoder_embed_path", "encoder_layerdrop", "encoder_layers_to_keep",
    "encoder_xformers_att_config", "decoder__name", "decoder_embed_path", "decoder_layerdrop",
    "decoder_layers_to_keep", "decoder_xformers_att_config", "quant_noise__name",
    "quant_noise_pq", "quant_noise_pq_block_size", "quant_noise_scalar",
}  # fmt: skip


DEFAULTS = TransformerMMTConfig()


def _config(args) -> TransformerConfig:
    """The model's options as a config object (fairseq hands either a namespace or one)."""
    return (
        args if isinstance(args, TransformerConfig) else TransformerMMTConfig.from_namespace(args)
    )


class TransformerMMTEncoder(TransformerEncoderBase):
    """fairseq's Transformer encoder whose output H is fused with v: H' = fusion(H, v)."""

    def __init__(self, cfg, dictionary, embed_tokens) -> None:
        super().__init__(cfg, dictionary, embed_tokens)
        # set by TransformerMMTModel.build_model, which knows the task's features
        self.fusion: Fusion | None = None
        self.visual_input: VisualInput | None = None

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None = None,
        visual_features: Tensor | None = None,
        return_all_hiddens: bool = False,
        token_embeddings: Tensor | None = None,
    ):
        visual_features = self.visual_input(visual_features)
        encoder_out = super().forward(src_tokens, src_lengths, return_all_hiddens, token_embeddings)
        encoder_out["encoder_out"] = [self.fusion(encoder_out["encoder_out"][0], visual_features)]
        return encoder_out


class TransformerMMTDecoder(TransformerDecoderBase):
    """fairseq's Transformer decoder that also returns hT as ``extra["final_hidden"]``."""

    @property
    def final_hidden_size(self) -> int:
        return self.output_embed_dim

    def forward(
        self,
        prev_output_tokens,
        encoder_out=None,
        incremental_state=None,
        features_only: bool = False,
        **kwargs,
    ):
        features, extra = super().forward(
            prev_output_tokens, encoder_out, incremental_state, features_only=True, **kwargs
        )
        extra["final_hidden"] = last_real_state(
            features, prev_output_tokens, self.padding_idx, incremental_state is not None
        )
        return (features if features_only else self.output_layer(features)), extra


@register_model("transformer_mmt")
class TransformerMMTModel(MultimodalModel, TransformerModel):
    """fairseq's ``transformer`` with a visual fusion in the encoder and hT from the decoder."""

    fusion_site, fusion_owner = ENCODER_OUTPUT, "encoder"
    arch_name = "transformer_mmt"
    text_model_families = ("transformer",)

    @classmethod
    def architecture_options(cls, model_cfg) -> dict:
        """fairseq's ``TransformerConfig`` options but those a fine-tuning run may change."""
        config = TransformerConfig.from_namespace(as_attributes(model_cfg))
        options = config_options(config, TransformerConfig)
        return {name: value for name, value in options.items() if name not in TRAINING_OPTIONS}

    @classmethod
    def add_args(cls, parser) -> None:
        gen_parser_from_dataclass(
            parser, TransformerMMTConfig(), delete_default=True, with_prefix=""
        )

    @classmethod
    def build_model(cls, args, task) -> "TransformerMMTModel":
        transformer_mmt(args)
        features = visual_features_of(task, cls.arch_name)
        if args.share_all_embeddings and task.source_dictionary != task.target_dictionary:
            raise ValueError(
                "--share-all-embeddings needs one dictionary for both languages, but the data "
                "has one per language: binarize with fairseq-preprocess --joined-dictionary "
                "(scripts/prepare-multi30k.sh --joined-dictionary), or drop the flag"
            )
        model = super().build_model(args, task)
        encoder, cfg = model.encoder, _config(args)
        encoder.fusion = cls.build_model_fusion(
            cfg.visual_fusion, features, encoder.embed_tokens.embedding_dim, cfg
        )
        encoder.visual_input = cls.build_visual_input(cfg.visual_fusion, features)
        if cfg.freeze_text_model:
            model.freeze_text_model()
        return model

    @classmethod
    def build_encoder(cls, args, src_dict, embed_tokens) -> TransformerMMTEncoder:
        return TransformerMMTEncoder(_config(args), src_dict, embed_tokens)

    @classmethod
    def build_decoder(cls, args, tgt_dict, embed_tokens) -> TransformerMMTDecoder:
        cfg = _config(args)
        return TransformerMMTDecoder(
            cfg, tgt_dict, embed_tokens, no_encoder_attn=cfg.no_cross_attention
        )

    def forward(
        self,
        src_tokens,
        src_lengths,
        prev_output_tokens,
        visual_features=None,
        return_all_hiddens: bool = True,
        features_only: bool = False,
        alignment_layer=None,
        alignment_heads=None,
    ):
        """Teacher-forced pass: ``(logits, {"attn", "inner_states", "final_hidden"})``."""
        encoder_out = self.encoder(
            src_tokens,
            src_lengths=src_lengths,
            visual_features=visual_features,
            return_all_hiddens=return_all_hiddens,
        )
        return self.decoder(
            prev_output_tokens,
            encoder_out=encoder_out,
            features_only=features_only,
            alignment_layer=alignment_layer,
            alignment_heads=alignment_heads,
            src_lengths=src_lengths,
            return_all_hiddens=return_all_hiddens,
        )


@register_model_architecture("transformer_mmt", "transformer_mmt")
def transformer_mmt(args) -> None:
    """fairseq's base Transformer sizes (``transformer``), gated fusion by default."""
    args.visual_fusion = getattr(args, "visual_fusion", DEFAULTS.visual_fusion)
    args.selective_attention_heads = getattr(
        args, "selective_attention_heads", DEFAULTS.selective_attention_heads
    )
    args.freeze_text_model = getattr(args, "freeze_text_model", DEFAULTS.freeze_text_model)
    base_architecture(args)


@register_model_architecture("transformer_mmt", "transformer_mmt_tiny")
def transformer_mmt_tiny(args) -> None:
    """Wu et al. (2021)'s tiny Transformer for Multi30K: 4 + 4 layers, embeddings 128, FFN 256,
    4 heads, dropout 0.3."""
    args.encoder_layers = getattr(args, "encoder_layers", 4)
    args.decoder_layers = getattr(args, "decoder_layers", 4)
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 128)
    args.encoder_ffn_embed_dim = getattr(args, "encoder_ffn_embed_dim", 256)
    args.encoder_attention_heads = getattr(args, "encoder_attention_heads", 4)
    args.decoder_attention_heads = getattr(args, "decoder_attention_heads", 4)
    args.dropout = getattr(args, "dropout", 0.3)
    transformer_mmt(args)
