"""The cGRU multimodal translation model of the paper's Appendix A.

Bi-GRU encoder -> annotations S; conditional-GRU decoder (eq. 11):
h'_t = GRU1(y_{t-1}, h_{t-1}); c_t = ATT(h'_t, v, S) (eq. 12-16); h_t = GRU2(c_t, h'_t);
output b_t = tanh(W^bot h_t), p_t = softmax(W^proj b_t) (eq. 17-18).

The decoder's time loop has two implementations of the same function and parameters
(``--cgru-implementation``, :mod:`fairseq_mmt_adv.models.cgru_steps`): ``reference`` follows
the equations step by step; ``fused`` (the default) moves the linear maps that follow the
attention out of the loop. In beam search the per-sentence tensors are computed once per source
sentence, not once per hypothesis.

The image feature enters through the encoder (fairseq hands every ``net_input`` key except
``prev_output_tokens`` to the encoder) and travels in the encoder output, so beam search,
``--eval-bleu`` validation and checkpoint ensembles work with fairseq's own generator.
"""

from argparse import Namespace
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from fairseq import utils
from fairseq.dataclass import ChoiceEnum, FairseqDataclass
from fairseq.models import (
    FairseqEncoder,
    FairseqEncoderDecoderModel,
    FairseqIncrementalDecoder,
    register_model,
    register_model_architecture,
)
from torch import Tensor, nn
from torch.nn import Linear
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from fairseq_mmt_adv.fusions.registry import DECODER_CONTEXT, Fusion
from fairseq_mmt_adv.models.cgru_steps import CGRU_IMPLEMENTATIONS, build_steps
from fairseq_mmt_adv.models.contract import (
    MultimodalModel,
    last_real_state,
    visual_features_of,
)
from fairseq_mmt_adv.models.visual_input import VisualInput

DEFAULT_MAX_POSITIONS = int(1e5)
DECODER_INITS = ("mean-ctx", "zero")


@dataclass
class CGRUMMTConfig(FairseqDataclass):
    """Options of ``cgru_mmt``; the defaults are the paper's sizes (Appendix A)."""

    encoder_embed_dim: int = field(default=256, metadata={"help": "source embedding size"})
    encoder_hidden_size: int = field(
        default=512, metadata={"help": "GRU size per direction (annotations S: twice this)"}
    )
    encoder_dropout_in: float = field(
        default=0.3, metadata={"help": "dropout on source embeddings"}
    )
    encoder_dropout_out: float = field(default=0.3, metadata={"help": "dropout on S"})
    decoder_embed_dim: int = field(default=256, metadata={"help": "target embedding size"})
    decoder_hidden_size: int = field(default=512, metadata={"help": "size of GRU1 and GRU2"})
    decoder_attention_dim: int = field(
        default=1024, metadata={"help": "output size of the attention's W^h and W^s"}
    )
    decoder_out_embed_dim: int = field(default=256, metadata={"help": "bottleneck size of W^bot"})
    decoder_dropout_in: float = field(
        default=0.0, metadata={"help": "dropout on target embeddings"}
    )
    decoder_dropout_out: float = field(default=0.5, metadata={"help": "dropout on the bottleneck"})
    share_decoder_input_output_embed: bool = field(
        default=False, metadata={"help": "tie W^proj to the target embeddings"}
    )
    decoder_init: ChoiceEnum(DECODER_INITS) = field(  # type: ignore[valid-type]
        default="mean-ctx", metadata={"help": "initial decoder state: tanh(W mean S), or zeros"}
    )
    visual_fusion: str = field(
        default="ctx-mul",
        metadata={"help": "how v modulates the context: a fusion of the registry (ctx-mul, none)"},
    )
    cgru_implementation: ChoiceEnum(CGRU_IMPLEMENTATIONS) = field(  # type: ignore[valid-type]
        default="fused", metadata={"help": "fused (fast) or reference: the same function"}
    )


def initialize_parameters(model: nn.Module) -> None:
    """He-normal weights (std sqrt(2 / fan_in)) for every matrix and embedding table, padding
    rows zero; biases keep PyTorch's defaults.

    With PyTorch's defaults (N(0, 1) embeddings, weights U(+-1/sqrt(fan_in))) the attention
    starts almost uniform and the cGRU is slow to read its source; fairseq ``lstm``'s
    U(-0.1, 0.1) starts the annotations near zero. The measurement behind this choice is in
    examples/multi30k/RESULTS.md ("What came before this run").
    """
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.dim() > 1:
                nn.init.kaiming_normal_(param)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


EncoderOut = dict[str, Tensor]


@register_model("cgru_mmt", dataclass=CGRUMMTConfig)
class ConditionalGRUMultimodalModel(MultimodalModel, FairseqEncoderDecoderModel):
    """Visually conditioned cGRU translation model (``--arch cgru_mmt``)."""

    fusion_site, fusion_owner = DECODER_CONTEXT, "decoder"
    arch_name = "cgru_mmt"

    @classmethod
    def build_model(cls, args, task) -> "ConditionalGRUMultimodalModel":
        """Build from the config (or, for checkpoints written before the config was a
        dataclass, from the ``argparse.Namespace`` they store)."""
        if isinstance(args, Namespace):
            args = CGRUMMTConfig.from_namespace(args)
        features = visual_features_of(task, cls.arch_name)
        if args.share_decoder_input_output_embed and (
            args.decoder_out_embed_dim != args.decoder_embed_dim
        ):
            raise ValueError(
                "--share-decoder-input-output-embed needs --decoder-out-embed-dim "
                f"({args.decoder_out_embed_dim}) == --decoder-embed-dim ({args.decoder_embed_dim})"
            )
        encoder = BiGRUEncoder(
            task.source_dictionary,
            embed_dim=args.encoder_embed_dim,
            hidden_size=args.encoder_hidden_size,
            dropout_in=args.encoder_dropout_in,
            dropout_out=args.encoder_dropout_out,
            visual_input=cls.build_visual_input(args.visual_fusion, features),
        )
        decoder = ConditionalGRUDecoder(
            task.target_dictionary,
            context_dim=encoder.output_dim,
            fusion=cls.build_model_fusion(args.visual_fusion, features, encoder.output_dim),
            embed_dim=args.decoder_embed_dim,
            hidden_size=args.decoder_hidden_size,
            attention_dim=args.decoder_attention_dim,
            out_embed_dim=args.decoder_out_embed_dim,
            dropout_in=args.decoder_dropout_in,
            dropout_out=args.decoder_dropout_out,
            share_input_output_embed=args.share_decoder_input_output_embed,
            init=args.decoder_init,
            implementation=args.cgru_implementation,
        )
        model = cls(encoder, decoder)
        initialize_parameters(model)
        return model

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor,
        prev_output_tokens: Tensor,
        visual_features: Tensor | None = None,
    ):
        """Teacher-forced pass: ``(logits, {"attn": [B x T x S], "final_hidden": hT})``."""
        encoder_out = self.encoder(src_tokens, src_lengths, visual_features=visual_features)
        return self.decoder(prev_output_tokens, encoder_out=encoder_out)


class BiGRUEncoder(FairseqEncoder):
    """Bidirectional GRU over source embeddings; annotations S = [forward; backward]."""

    def __init__(
        self,
        dictionary,
        embed_dim: int = 256,
        hidden_size: int = 512,
        dropout_in: float = 0.3,
        dropout_out: float = 0.3,
        visual_input: VisualInput | None = None,
    ) -> None:
        super().__init__(dictionary)
        self.visual_input = visual_input  # checks and normalizes the raw features
        self.padding_idx = dictionary.pad()
        self.embed_tokens = nn.Embedding(len(dictionary), embed_dim, self.padding_idx)
        self.dropout_in = nn.Dropout(dropout_in)
        self.rnn = nn.GRU(embed_dim, hidden_size, batch_first=True, bidirectional=True)
        self.dropout_out = nn.Dropout(dropout_out)
        self.output_dim = 2 * hidden_size

    def forward(
        self,
        src_tokens: Tensor,
        src_lengths: Tensor | None = None,
        visual_features: Tensor | None = None,
    ) -> EncoderOut:
        """Encode a (left- or right-padded) batch; the raw ``visual_features`` ride along
        normalized (a text-only model, ``--visual-fusion none``, needs none)."""
        visual_features = self.visual_input(visual_features)
        # fairseq left-pads sources by default; packing wants right padding
        src_tokens = utils.convert_padding_direction(
            src_tokens, self.padding_idx, left_to_right=True
        )
        padding_mask = src_tokens.eq(self.padding_idx)
        lengths = (~padding_mask).sum(dim=1)
        x = self.dropout_in(self.embed_tokens(src_tokens))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        annotations, _ = self.rnn(packed)
        annotations, _ = pad_packed_sequence(
            annotations, batch_first=True, total_length=src_tokens.size(1)
        )
        encoder_out = {
            "annotations": self.dropout_out(annotations),  # B x S x 2H
            "padding_mask": padding_mask,  # B x S
            # which source sentence each row is: beam search repeats rows, see decoder_state
            "sentence_ids": torch.arange(src_tokens.size(0), device=src_tokens.device),
        }
        if visual_features is not None:  # B x D or B x K x D
            encoder_out["visual_features"] = visual_features.to(annotations.dtype)
        return encoder_out

    def reorder_encoder_out(self, encoder_out: EncoderOut, new_order: Tensor) -> EncoderOut:
        if keeps_sentences(encoder_out["sentence_ids"], new_order):
            return encoder_out  # every row stays on its sentence: nothing changes
        return {key: value.index_select(0, new_order) for key, value in encoder_out.items()}

    def max_positions(self) -> int:
        return DEFAULT_MAX_POSITIONS


def keeps_sentences(sentence_ids: Tensor, new_order: Tensor) -> bool:
    """Whether ``new_order`` maps every row to a row of the same source sentence, as beam search
    does when it reorders the hypotheses of each sentence: per-sentence tensors are then left
    as they are instead of copied."""
    return new_order.numel() == sentence_ids.numel() and torch.equal(
        sentence_ids.index_select(0, new_order), sentence_ids
    )


class ConditionalAttention(nn.Module):
    """Eq. (12)-(14): a'_t = W^a tanh(W^h h'_t + W^s S), a_t = softmax(a'_t), c'_t = sum a_t S.

    The S x attention_dim non-linearity is the costliest elementwise work of a decoder step,
    and on CPUs ``torch.tanh`` costs about 3x ``torch.sigmoid`` per value. So eq. (13) is
    evaluated through tanh(x) = 2 sigmoid(2x) - 1: W^a tanh(x) = 2 W^a sigmoid(2x) - W^a 1, and
    the softmax of eq. (14) ignores the constant -W^a 1 (W^a has no bias). The factor 2 inside
    the sigmoid is carried by the keys and the projected query (``keys``, ``project_query``),
    which scales them exactly, so that a step does one pass less over its S x attention_dim
    values. The weights and their gradients are those of the tanh form (tested).
    """

    def __init__(self, query_dim: int, context_dim: int, attention_dim: int) -> None:
        super().__init__()
        self.query_proj = Linear(query_dim, attention_dim, bias=False)  # W^h
        self.key_proj = Linear(context_dim, attention_dim)  # W^s
        self.score_proj = Linear(attention_dim, 1, bias=False)  # W^a

    def keys(self, annotations: Tensor) -> Tensor:
        """2 W^s S, computed once per sentence rather than at every target step."""
        return self.key_proj(annotations).mul_(2)

    def project_query(self, query: Tensor) -> Tensor:
        """2 W^h h'_t."""
        return self.query_proj(query).mul_(2)

    def weights(self, projected_query: Tensor, keys: Tensor, padding_mask: Tensor) -> Tensor:
        """a_t (B x S) from ``project_query(h'_t)`` and ``keys(S)`` (eq. 13-14)."""
        scores = 2 * self.score_proj(keys.add(projected_query.unsqueeze(1)).sigmoid_()).squeeze(2)
        # softmax in at least float32 (fp16/bf16 training)
        scores = scores.to(torch.promote_types(scores.dtype, torch.float32))
        scores = scores.masked_fill(padding_mask, float("-inf"))
        return F.softmax(scores, dim=1).type_as(keys)

    def forward(
        self, query: Tensor, annotations: Tensor, keys: Tensor, padding_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
        weights = self.weights(self.project_query(query), keys, padding_mask)
        context = torch.bmm(weights.unsqueeze(1), annotations).squeeze(1)
        return context, weights


class ConditionalGRUDecoder(FairseqIncrementalDecoder):
    """Conditional GRU decoder with visually modulated attention (eq. 11-18).

    Returns ``(logits, {"attn": [B x T x S], "final_hidden": B x H})`` where ``final_hidden``
    is hT of eq. (1): each sentence's state at its own last real target step.
    """

    def __init__(
        self,
        dictionary,
        context_dim: int,
        fusion: Fusion,
        embed_dim: int = 256,
        hidden_size: int = 512,
        attention_dim: int = 1024,
        out_embed_dim: int = 256,
        dropout_in: float = 0.0,
        dropout_out: float = 0.5,
        share_input_output_embed: bool = False,
        init: str = "mean-ctx",
        implementation: str = "fused",
    ) -> None:
        super().__init__(dictionary)
        if init not in DECODER_INITS:
            raise ValueError(f"unknown --decoder-init {init!r}; choose from {list(DECODER_INITS)}")
        self.implementation = implementation
        self.padding_idx = dictionary.pad()
        self.hidden_size = self.final_hidden_size = hidden_size  # hT is h_t of GRU2
        self.embed_tokens = nn.Embedding(len(dictionary), embed_dim, self.padding_idx)
        self.dropout_in = nn.Dropout(dropout_in)
        self.gru1 = nn.GRUCell(embed_dim, hidden_size)
        self.attention = ConditionalAttention(hidden_size, context_dim, attention_dim)
        self.fusion = fusion  # built from the registry by the model
        self.steps = build_steps(implementation, self.fusion)
        self.context_proj = Linear(context_dim, hidden_size)  # W^c
        self.gru2 = nn.GRUCell(hidden_size, hidden_size)
        self.init_proj = Linear(context_dim, hidden_size) if init == "mean-ctx" else None
        self.bottleneck = Linear(hidden_size, out_embed_dim)  # W^bot
        self.dropout_out = nn.Dropout(dropout_out)
        if share_input_output_embed:
            self.output_projection = nn.Linear(out_embed_dim, len(dictionary), bias=False)
            self.output_projection.weight = self.embed_tokens.weight
        else:
            self.output_projection = Linear(out_embed_dim, len(dictionary))  # W^proj

    def forward(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut,
        incremental_state: dict[str, dict[str, Tensor | None]] | None = None,
        **unused,
    ):
        hidden_states, attention = self.extract_features(
            prev_output_tokens, encoder_out, incremental_state
        )
        final_hidden = last_real_state(
            hidden_states, prev_output_tokens, self.padding_idx, incremental_state is not None
        )
        return self.output_layer(hidden_states), {"attn": [attention], "final_hidden": final_hidden}

    def extract_features(
        self,
        prev_output_tokens: Tensor,
        encoder_out: EncoderOut,
        incremental_state: dict[str, dict[str, Tensor | None]] | None = None,
        **unused,
    ) -> tuple[Tensor, Tensor]:
        """Run the cGRU over the target prefix: hidden states B x T x H, attention B x T x S."""
        if incremental_state is not None:
            prev_output_tokens = prev_output_tokens[:, -1:]
        state = self.decoder_state(encoder_out, incremental_state)
        embedded = self.dropout_in(self.embed_tokens(prev_output_tokens))
        input_gates = F.linear(embedded, self.gru1.weight_ih, self.gru1.bias_ih)  # hoisted
        outputs, attentions, hidden = self.steps.run(self, input_gates, state, encoder_out)
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "state", {**state, "hidden": hidden})
        return torch.stack(outputs, dim=1), torch.stack(attentions, dim=1)

    def decoder_state(
        self,
        encoder_out: EncoderOut,
        incremental_state: dict[str, dict[str, Tensor | None]] | None,
    ) -> dict[str, Tensor]:
        """Initial hidden state and per-sentence precomputations, cached across steps.

        When decoding, the rows of a source sentence's hypotheses are identical here, so the
        state is computed once per sentence and then repeated.
        """
        if incremental_state is None:
            return self.initial_state(encoder_out)
        cached = self.get_incremental_state(incremental_state, "state")
        if cached is not None:
            return cached
        sentences, rows = torch.unique(encoder_out["sentence_ids"], return_inverse=True)
        if sentences.numel() == rows.numel():
            return self.initial_state(encoder_out)
        first_row = rows.new_empty(sentences.numel()).scatter_(
            0, rows, torch.arange(rows.numel(), device=rows.device)
        )
        unique_out = {key: value.index_select(0, first_row) for key, value in encoder_out.items()}
        state = self.initial_state(unique_out)
        return {key: value.index_select(0, rows) for key, value in state.items()}

    def initial_state(self, encoder_out: EncoderOut) -> dict[str, Tensor]:
        """h_0, the keys W^s S, the rows' ``sentence_ids`` and the per-sentence tensors of the
        implementation (``self.steps.precompute``). Everything but ``hidden`` is the same for
        the rows of one sentence."""
        annotations, padding_mask = encoder_out["annotations"], encoder_out["padding_mask"]
        if self.init_proj is None:
            hidden = annotations.new_zeros(annotations.size(0), self.hidden_size)
        else:
            real = (~padding_mask).unsqueeze(2).type_as(annotations)
            mean_context = (annotations * real).sum(dim=1) / real.sum(dim=1)
            hidden = torch.tanh(self.init_proj(mean_context))
        state = {
            "hidden": hidden,
            "keys": self.attention.keys(annotations),
            "sentence_ids": encoder_out["sentence_ids"],
        }
        fused_visual = self.fusion.precompute(encoder_out.get("visual_features"))
        return {**state, **self.steps.precompute(self, encoder_out, fused_visual)}

    def output_layer(self, hidden_states: Tensor) -> Tensor:
        """Eq. (17)-(18) up to the softmax: W^proj dropout(tanh(W^bot h_t))."""
        return self.output_projection(self.dropout_out(torch.tanh(self.bottleneck(hidden_states))))

    def reorder_incremental_state(
        self,
        incremental_state: dict[str, dict[str, Tensor | None]],
        new_order: Tensor,
    ) -> None:
        cached = self.get_incremental_state(incremental_state, "state")
        if cached is None:
            return
        per_row = ["hidden"]
        if not keeps_sentences(cached["sentence_ids"], new_order):
            per_row = list(cached)
        reordered = {key: cached[key].index_select(0, new_order) for key in per_row}
        self.set_incremental_state(incremental_state, "state", {**cached, **reordered})

    def max_positions(self) -> int:
        return DEFAULT_MAX_POSITIONS


@register_model_architecture("cgru_mmt", "cgru_mmt_small")
def cgru_mmt_small(args) -> None:
    """A small preset for tests and the CPU demo."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 64)
    args.encoder_hidden_size = getattr(args, "encoder_hidden_size", 128)
    args.encoder_dropout_in = getattr(args, "encoder_dropout_in", 0.1)
    args.encoder_dropout_out = getattr(args, "encoder_dropout_out", 0.1)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 64)
    args.decoder_hidden_size = getattr(args, "decoder_hidden_size", 128)
    args.decoder_attention_dim = getattr(args, "decoder_attention_dim", 128)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 64)
    args.decoder_dropout_out = getattr(args, "decoder_dropout_out", 0.2)
