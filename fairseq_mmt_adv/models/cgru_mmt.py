"""The cGRU multimodal translation model of the paper's Appendix A.

Bi-GRU encoder -> annotations S; conditional-GRU decoder (eq. 11):
h'_t = GRU1(y_{t-1}, h_{t-1}); c_t = ATT(h'_t, v, S) (eq. 12-16); h_t = GRU2(c_t, h'_t);
output b_t = tanh(W^bot h_t), p_t = softmax(W^proj b_t) (eq. 17-18).

The decoder has two implementations of the same function and parameters
(``--cgru-implementation``): ``reference`` follows the equations step by step; ``fused`` (the
default) moves the linear maps that follow the attention out of the time loop. Because the
attention weights sum to one and the fusion is linear in the context, GRU2's input gates are
``W_ih (W^c (c'_t * i) + b^c) + b_ih = sum_s a_ts [W_ih (W^c (S_s * i) + b^c) + b_ih]``: the
bracket is computed once per source position (batched matrix products instead of two small ones
per step), and h'_t goes through W^h and GRU2's W_hh in one product. In beam search these
per-sentence tensors are computed once per source sentence, not once per hypothesis.

The image feature enters through the encoder (fairseq hands every ``net_input`` key except
``prev_output_tokens`` to the encoder) and travels in the encoder output, so beam search,
``--eval-bleu`` validation and checkpoint ensembles work with fairseq's own generator.
"""

import torch
import torch.nn.functional as F
from fairseq import utils
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

from fairseq_mmt_adv.modules.visual_fusion import VISUAL_FUSIONS, build_visual_fusion

DEFAULT_MAX_POSITIONS = int(1e5)
CGRU_IMPLEMENTATIONS = ("fused", "reference")


def initialize_parameters(model: nn.Module) -> None:
    """He-normal weights (std sqrt(2 / fan_in)) for every matrix and embedding table, padding
    rows zero; biases keep PyTorch's defaults.

    With PyTorch's defaults (N(0, 1) embeddings, weights U(+-1/sqrt(fan_in))) the attention
    starts almost uniform and the cGRU is slow to read its source: on Multi30K en-de, text-only,
    lr 1e-3 and batch 32, validation NLL after 300 updates was 6.10 bits, against 5.13 with this
    initialization. fairseq ``lstm``'s U(-0.1, 0.1) everywhere is worse: the annotations start
    at a standard deviation of ~0.05 and, on the demo corpus, a text-only cGRU gave the same
    output for every sentence after 12 epochs.
    """
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if param.dim() > 1:
                nn.init.kaiming_normal_(param)
        if isinstance(module, nn.Embedding) and module.padding_idx is not None:
            with torch.no_grad():
                module.weight[module.padding_idx].zero_()


EncoderOut = dict[str, Tensor]


@register_model("cgru_mmt")
class ConditionalGRUMultimodalModel(FairseqEncoderDecoderModel):
    """Visually conditioned cGRU translation model (``--arch cgru_mmt``)."""

    @staticmethod
    def add_args(parser) -> None:
        # fmt: off
        parser.add_argument("--encoder-embed-dim", type=int, metavar="N",
                            help="source embedding size (paper: 256)")
        parser.add_argument("--encoder-hidden-size", type=int, metavar="N",
                            help="GRU size per direction; annotations S are twice this (512)")
        parser.add_argument("--encoder-dropout-in", type=float, metavar="D",
                            help="dropout on source embeddings (0.3)")
        parser.add_argument("--encoder-dropout-out", type=float, metavar="D",
                            help="dropout on the annotations S (0.3)")
        parser.add_argument("--decoder-embed-dim", type=int, metavar="N",
                            help="target embedding size (256)")
        parser.add_argument("--decoder-hidden-size", type=int, metavar="N",
                            help="size of GRU1 and GRU2 (512)")
        parser.add_argument("--decoder-attention-dim", type=int, metavar="N",
                            help="size of the attention's W^h and W^s outputs (1024)")
        parser.add_argument("--decoder-out-embed-dim", type=int, metavar="N",
                            help="bottleneck size of W^bot (256)")
        parser.add_argument("--decoder-dropout-in", type=float, metavar="D",
                            help="dropout on target embeddings (0)")
        parser.add_argument("--decoder-dropout-out", type=float, metavar="D",
                            help="dropout on the bottleneck b_t (0.5)")
        parser.add_argument("--share-decoder-input-output-embed", action="store_true",
                            help="tie W^proj to the target embeddings "
                                 "(needs --decoder-out-embed-dim == --decoder-embed-dim)")
        parser.add_argument("--decoder-init", choices=["zero", "mean-ctx"],
                            help="initial decoder state: zeros, or tanh(W mean of S over the "
                                 "real source tokens)")
        parser.add_argument("--visual-fusion", choices=sorted(VISUAL_FUSIONS),
                            help="how v modulates the attention context: ctx-mul (eq. 15-16) "
                                 "or none (the text-only ablation)")
        parser.add_argument("--cgru-implementation", choices=CGRU_IMPLEMENTATIONS,
                            help="fused (fast, default) or reference (step-by-step equations); "
                                 "same parameters and outputs, so checkpoints work with either")
        # fmt: on

    @classmethod
    def build_model(cls, args, task) -> "ConditionalGRUMultimodalModel":
        base_architecture(args)
        if not hasattr(task, "visual_feature_dim"):
            raise ValueError("--arch cgru_mmt needs --task multimodal_translation")
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
        )
        decoder = ConditionalGRUDecoder(
            task.target_dictionary,
            context_dim=encoder.output_dim,
            visual_feature_dim=task.visual_feature_dim,
            embed_dim=args.decoder_embed_dim,
            hidden_size=args.decoder_hidden_size,
            attention_dim=args.decoder_attention_dim,
            out_embed_dim=args.decoder_out_embed_dim,
            dropout_in=args.decoder_dropout_in,
            dropout_out=args.decoder_dropout_out,
            share_input_output_embed=args.share_decoder_input_output_embed,
            init=args.decoder_init,
            visual_fusion=args.visual_fusion,
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
    ) -> None:
        super().__init__(dictionary)
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
        """Encode a (left- or right-padded) batch; ``visual_features`` ride along unchanged."""
        if visual_features is None:
            raise ValueError(
                "cgru_mmt needs net_input['visual_features']: train and decode with "
                "--task multimodal_translation --visual-features DIR"
            )
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
        return {
            "annotations": self.dropout_out(annotations),  # B x S x 2H
            "padding_mask": padding_mask,  # B x S
            "visual_features": visual_features.to(annotations.dtype),  # B x D or B x K x D
            # which source sentence each row is: beam search repeats rows, see decoder_state
            "sentence_ids": torch.arange(src_tokens.size(0), device=src_tokens.device),
        }

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


def gru_step(input_gates: Tensor, hidden: Tensor, cell: nn.GRUCell) -> Tensor:
    """One step of ``cell`` whose input projection W_ih x + b_ih was computed beforehand."""
    return gru_update(input_gates, F.linear(hidden, cell.weight_hh, cell.bias_hh), hidden)


def gru_update(input_gates: Tensor, hidden_gates: Tensor, hidden: Tensor) -> Tensor:
    """A GRU cell's new state from W_ih x + b_ih, W_hh h + b_hh and h (r, z, n gate order)."""
    in_r, in_z, in_n = input_gates.chunk(3, dim=-1)
    hid_r, hid_z, hid_n = hidden_gates.chunk(3, dim=-1)
    reset = torch.sigmoid(in_r + hid_r)
    update = torch.sigmoid(in_z + hid_z)
    candidate = torch.tanh(in_n + reset * hid_n)
    return candidate + update * (hidden - candidate)


class ConditionalGRUDecoder(FairseqIncrementalDecoder):
    """Conditional GRU decoder with visually modulated attention (eq. 11-18).

    Returns ``(logits, {"attn": [B x T x S], "final_hidden": B x H})`` where ``final_hidden``
    is hT of eq. (1): each sentence's state at its own last real target step.
    """

    def __init__(
        self,
        dictionary,
        context_dim: int,
        visual_feature_dim: int,
        embed_dim: int = 256,
        hidden_size: int = 512,
        attention_dim: int = 1024,
        out_embed_dim: int = 256,
        dropout_in: float = 0.0,
        dropout_out: float = 0.5,
        share_input_output_embed: bool = False,
        init: str = "mean-ctx",
        visual_fusion: str = "ctx-mul",
        implementation: str = "fused",
    ) -> None:
        super().__init__(dictionary)
        if implementation not in CGRU_IMPLEMENTATIONS:
            raise ValueError(
                f"unknown --cgru-implementation {implementation!r}; choose from "
                f"{list(CGRU_IMPLEMENTATIONS)}"
            )
        self.implementation = implementation
        self.padding_idx = dictionary.pad()
        self.hidden_size = hidden_size
        self.embed_tokens = nn.Embedding(len(dictionary), embed_dim, self.padding_idx)
        self.dropout_in = nn.Dropout(dropout_in)
        self.gru1 = nn.GRUCell(embed_dim, hidden_size)
        self.attention = ConditionalAttention(hidden_size, context_dim, attention_dim)
        self.fusion = build_visual_fusion(visual_fusion, visual_feature_dim, context_dim)
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
        return self.output_layer(hidden_states), {
            "attn": [attention],
            "final_hidden": self.last_real_state(hidden_states, prev_output_tokens),
        }

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
        run_steps = self.fused_steps if self.implementation == "fused" else self.reference_steps
        outputs, attentions, hidden = run_steps(input_gates, state, encoder_out)
        if incremental_state is not None:
            self.set_incremental_state(incremental_state, "state", {**state, "hidden": hidden})
        return torch.stack(outputs, dim=1), torch.stack(attentions, dim=1)

    def reference_steps(
        self, input_gates: Tensor, state: dict[str, Tensor], encoder_out: EncoderOut
    ) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """Eq. (11)-(16) as written, one target step at a time."""
        annotations, padding_mask = encoder_out["annotations"], encoder_out["padding_mask"]
        hidden, keys, fused_visual = state["hidden"], state["keys"], state.get("visual")
        outputs, attentions = [], []
        for step_gates in input_gates.unbind(1):
            query = gru_step(step_gates, hidden, self.gru1)  # h'_t
            context, weights = self.attention(query, annotations, keys, padding_mask)
            context = self.context_proj(self.fusion(context, fused_visual))  # c_t
            hidden = self.gru2(context, query)  # h_t
            outputs.append(hidden)
            attentions.append(weights)
        return outputs, attentions, hidden

    def fused_steps(
        self, input_gates: Tensor, state: dict[str, Tensor], encoder_out: EncoderOut
    ) -> tuple[list[Tensor], list[Tensor], Tensor]:
        """The same steps with GRU2's input gates taken as a_t-weighted sums of
        ``state["context_gates"]`` and one product for 2 W^h h'_t and GRU2's W_hh h'_t."""
        padding_mask = encoder_out["padding_mask"]
        hidden, keys, context_gates = state["hidden"], state["keys"], state["context_gates"]
        split = [keys.size(-1), 3 * self.hidden_size]
        # 2 W^h as in ConditionalAttention.project_query: doubling is exact in floating point
        query_weight = torch.cat([2 * self.attention.query_proj.weight, self.gru2.weight_hh])
        query_bias = torch.cat([self.gru2.bias_hh.new_zeros(split[0]), self.gru2.bias_hh])
        outputs, attentions = [], []
        # unbind, not input_gates[:, t]: the backward of each index would fill a zero tensor of
        # input_gates' size; unbind's stacks the steps' gradients once
        for step_gates in input_gates.unbind(1):
            query = gru_step(step_gates, hidden, self.gru1)  # h'_t
            projected = F.linear(query, query_weight, query_bias)
            projected_query, hidden_gates = projected.split(split, dim=1)
            weights = self.attention.weights(projected_query, keys, padding_mask)
            gates = torch.bmm(weights.unsqueeze(1), context_gates).squeeze(1)  # W_ih c_t + b_ih
            hidden = gru_update(gates, hidden_gates, query)  # h_t
            outputs.append(hidden)
            attentions.append(weights)
        return outputs, attentions, hidden

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
        """h_0, the keys W^s S, the rows' ``sentence_ids`` and the fusion's per-sentence part
        (``visual``), or for the fused steps GRU2's input gates at each source position
        (``context_gates``). Everything but ``hidden`` is the same for rows of one sentence."""
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
        fused_visual = self.fusion.precompute(encoder_out["visual_features"])
        if self.implementation == "fused":
            per_position = None if fused_visual is None else fused_visual.unsqueeze(1)
            fused_annotations = self.context_proj(self.fusion(annotations, per_position))
            state["context_gates"] = F.linear(
                fused_annotations, self.gru2.weight_ih, self.gru2.bias_ih
            )
        elif fused_visual is not None:
            state["visual"] = fused_visual
        return state

    def last_real_state(self, hidden_states: Tensor, prev_output_tokens: Tensor) -> Tensor:
        """hT: each sentence's hidden state at its last non-padding target position."""
        if hidden_states.size(1) != prev_output_tokens.size(1):  # incremental: one step
            return hidden_states[:, -1]
        last = prev_output_tokens.ne(self.padding_idx).sum(dim=1) - 1
        index = last.view(-1, 1, 1).expand(-1, 1, hidden_states.size(2))
        return hidden_states.gather(1, index).squeeze(1)

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


@register_model_architecture("cgru_mmt", "cgru_mmt")
def base_architecture(args) -> None:
    """The paper's sizes (Appendix A)."""
    args.encoder_embed_dim = getattr(args, "encoder_embed_dim", 256)
    args.encoder_hidden_size = getattr(args, "encoder_hidden_size", 512)
    args.encoder_dropout_in = getattr(args, "encoder_dropout_in", 0.3)
    args.encoder_dropout_out = getattr(args, "encoder_dropout_out", 0.3)
    args.decoder_embed_dim = getattr(args, "decoder_embed_dim", 256)
    args.decoder_hidden_size = getattr(args, "decoder_hidden_size", 512)
    args.decoder_attention_dim = getattr(args, "decoder_attention_dim", 1024)
    args.decoder_out_embed_dim = getattr(args, "decoder_out_embed_dim", 256)
    args.decoder_dropout_in = getattr(args, "decoder_dropout_in", 0.0)
    args.decoder_dropout_out = getattr(args, "decoder_dropout_out", 0.5)
    args.share_decoder_input_output_embed = getattr(args, "share_decoder_input_output_embed", False)
    args.decoder_init = getattr(args, "decoder_init", "mean-ctx")
    args.visual_fusion = getattr(args, "visual_fusion", "ctx-mul")
    args.cgru_implementation = getattr(args, "cgru_implementation", "fused")


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
    base_architecture(args)
