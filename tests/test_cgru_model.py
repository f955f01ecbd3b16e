"""The cGRU model: incremental decoding, padding invariance, hT, fusions, presets."""

import argparse
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY

import fairseq_mmt_adv  # noqa: F401  (registers the architectures)
from fairseq_mmt_adv.models.cgru_mmt import (
    ConditionalAttention,
    ConditionalGRUMultimodalModel,
)
from fairseq_mmt_adv.models.cgru_steps import gru_step

VISUAL_DIM = 12


def make_dictionary(size: int = 20) -> Dictionary:
    dictionary = Dictionary()
    for i in range(size):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def build_model(arch: str = "cgru_mmt_small", **overrides) -> ConditionalGRUMultimodalModel:
    args = argparse.Namespace(arch=arch, **overrides)
    task = SimpleNamespace(
        source_dictionary=make_dictionary(15),
        target_dictionary=make_dictionary(20),
        visual_feature_dim=VISUAL_DIM,
    )
    ARCH_CONFIG_REGISTRY[arch](args)
    torch.manual_seed(0)
    model = ConditionalGRUMultimodalModel.build_model(args, task)
    return model.eval()


def random_batch(model, lengths_src, lengths_tgt, left_pad_source=True, seed=0):
    """Source/target batches padded the way fairseq pads them (left source, right target)."""
    generator = torch.Generator().manual_seed(seed)
    pad, eos = model.encoder.padding_idx, model.decoder.dictionary.eos()
    bsz = len(lengths_src)
    src = torch.full((bsz, max(lengths_src)), pad)
    prev = torch.full((bsz, max(lengths_tgt)), pad)
    for b, (ls, lt) in enumerate(zip(lengths_src, lengths_tgt, strict=True)):
        tokens = torch.randint(4, 15, (ls,), generator=generator)
        tokens[-1] = eos
        if left_pad_source:
            src[b, src.size(1) - ls :] = tokens
        else:
            src[b, :ls] = tokens
        prev[b, 0] = eos
        prev[b, 1:lt] = torch.randint(4, 20, (lt - 1,), generator=generator)
    visual = torch.rand(bsz, VISUAL_DIM, generator=generator)
    return src, torch.tensor(lengths_src), prev, visual


def test_preset_sizes_follow_the_paper():
    model = build_model("cgru_mmt")
    encoder, decoder = model.encoder, model.decoder
    assert encoder.embed_tokens.embedding_dim == 256
    assert encoder.rnn.hidden_size == 512 and encoder.rnn.bidirectional
    assert decoder.gru1.hidden_size == decoder.gru2.hidden_size == 512
    assert decoder.attention.key_proj.out_features == 1024  # W^s
    assert decoder.attention.query_proj.out_features == 1024  # W^h
    assert decoder.fusion.feature_proj.out_features == 1024  # W^feat
    assert decoder.context_proj.out_features == 512  # W^c
    assert decoder.bottleneck.out_features == 256  # W^bot
    assert encoder.dropout_in.p == encoder.dropout_out.p == 0.3
    assert decoder.dropout_out.p == 0.5


def test_gru_step_matches_torch_gru_cell():
    cell = torch.nn.GRUCell(7, 5)
    x, h = torch.randn(3, 7), torch.randn(3, 5)
    gates = torch.nn.functional.linear(x, cell.weight_ih, cell.bias_ih)
    torch.testing.assert_close(gru_step(gates, h, cell), cell(x, h))


def test_attention_weights_and_gradients_are_those_of_eq_13_with_tanh():
    """The sigmoid evaluation of eq. (13)-(14) equals softmax(W^a tanh(W^h h' + W^s S))."""
    torch.manual_seed(0)
    attention = ConditionalAttention(6, 10, 8).double()
    query = torch.randn(3, 6, dtype=torch.float64, requires_grad=True)
    annotations = torch.randn(3, 5, 10, dtype=torch.float64, requires_grad=True)
    padding_mask = torch.tensor(
        [[False] * 5, [True, False, False, False, False], [True] * 2 + [False] * 3]
    )
    keys, projected_query = attention.keys(annotations), attention.project_query(query)
    weights = attention.weights(projected_query, keys, padding_mask)
    pre_activation = attention.key_proj(annotations) + attention.query_proj(query).unsqueeze(1)
    literal_scores = attention.score_proj(torch.tanh(pre_activation))
    literal = torch.softmax(literal_scores.squeeze(2).masked_fill(padding_mask, -torch.inf), 1)
    torch.testing.assert_close(weights, literal, rtol=1e-12, atol=1e-14)
    assert weights[padding_mask].eq(0).all()
    probe = torch.randn_like(weights)
    inputs = [query, annotations, *attention.parameters()]
    grads = torch.autograd.grad((weights * probe).sum(), inputs, retain_graph=True)
    literal_grads = torch.autograd.grad((literal * probe).sum(), inputs)
    for grad, literal_grad in zip(grads, literal_grads, strict=True):
        torch.testing.assert_close(grad, literal_grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("implementation", ["fused", "reference"])
@pytest.mark.parametrize("fusion", ["ctx-mul", "none"])
@pytest.mark.parametrize("init", ["mean-ctx", "zero"])
def test_incremental_decoding_matches_teacher_forcing(fusion, init, implementation):
    model = build_model(visual_fusion=fusion, decoder_init=init, cgru_implementation=implementation)
    src, src_len, prev, visual = random_batch(model, [5, 3, 7], [6, 6, 6])
    with torch.no_grad():
        full_logits, full_extra = model(src, src_len, prev, visual)
        encoder_out = model.encoder(src, src_len, visual_features=visual)
        state: dict = {}
        steps = [
            model.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)[0]
            for t in range(prev.size(1))
        ]
    torch.testing.assert_close(torch.cat(steps, dim=1), full_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_incremental_state_reorders_with_the_beam(implementation):
    model = build_model(cgru_implementation=implementation)
    src, src_len, prev, visual = random_batch(model, [5, 3, 7], [4, 4, 4])
    order = torch.tensor([2, 0, 1])
    with torch.no_grad():
        encoder_out = model.encoder(src, src_len, visual_features=visual)
        state: dict = {}
        for t in range(2):
            model.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)
        model.decoder.reorder_incremental_state_scripting(state, order)
        reordered_out = model.encoder.reorder_encoder_out(encoder_out, order)
        step = model.decoder(prev[order, :3], reordered_out, incremental_state=state)[0]
        full = model(src[order], src_len[order], prev[order, :3], visual[order])[0]
    torch.testing.assert_close(step[:, -1], full[:, -1], rtol=1e-5, atol=1e-5)


def test_output_does_not_depend_on_the_batch():
    model = build_model()
    src_len, tgt_len = [6, 2, 9, 4], [7, 3, 5, 8]
    src, lengths, prev, visual = random_batch(model, src_len, tgt_len)
    with torch.no_grad():
        batch_logits, batch_extra = model(src, lengths, prev, visual)
        for b in range(len(src_len)):
            alone_src = src[b : b + 1, src.size(1) - src_len[b] :]
            alone_prev = prev[b : b + 1, : tgt_len[b]]
            logits, extra = model(alone_src, lengths[b : b + 1], alone_prev, visual[b : b + 1])
            torch.testing.assert_close(
                batch_logits[b, : tgt_len[b]], logits[0], rtol=1e-5, atol=1e-5
            )
            # hT is the state at this sentence's own last real step
            torch.testing.assert_close(
                batch_extra["final_hidden"][b], extra["final_hidden"][0], rtol=1e-5, atol=1e-5
            )


def test_final_hidden_is_the_last_real_state_not_a_padded_one():
    model = build_model()
    src, lengths, prev, visual = random_batch(model, [4, 4], [6, 3])
    with torch.no_grad():
        encoder_out = model.encoder(src, lengths, visual_features=visual)
        states, _ = model.decoder.extract_features(prev, encoder_out)
        _, extra = model(src, lengths, prev, visual)
    torch.testing.assert_close(extra["final_hidden"][0], states[0, 5])
    torch.testing.assert_close(extra["final_hidden"][1], states[1, 2])
    assert not torch.allclose(extra["final_hidden"][1], states[1, 5])


def test_right_and_left_padded_sources_agree():
    model = build_model()
    left = random_batch(model, [6, 2, 4], [5, 5, 5], left_pad_source=True)
    right = random_batch(model, [6, 2, 4], [5, 5, 5], left_pad_source=False)
    with torch.no_grad():
        torch.testing.assert_close(model(*left)[0], model(*right)[0])


def test_visual_fusion_uses_the_image_and_none_ignores_it():
    src, lengths, prev, visual = random_batch(build_model(), [5, 3], [4, 4])
    other = torch.rand_like(visual)
    for fusion, changes in (("ctx-mul", True), ("none", False)):
        model = build_model(visual_fusion=fusion)
        with torch.no_grad():
            a = model(src, lengths, prev, visual)[0]
            b = model(src, lengths, prev, other)[0]
        assert (not torch.allclose(a, b)) == changes, fusion


def test_spatial_features_are_averaged_for_ctx_mul():
    model = build_model()
    src, lengths, prev, visual = random_batch(model, [5, 3], [4, 4])
    spatial = visual.unsqueeze(1) + torch.randn(2, 9, VISUAL_DIM)
    spatial = spatial - spatial.mean(dim=1, keepdim=True) + visual.unsqueeze(1)
    with torch.no_grad():
        torch.testing.assert_close(
            model(src, lengths, prev, spatial)[0], model(src, lengths, prev, visual)[0]
        )


def test_tied_output_projection_shares_the_embedding():
    model = build_model(share_decoder_input_output_embed=True)
    assert model.decoder.output_projection.weight is model.decoder.embed_tokens.weight
    with pytest.raises(ValueError, match="decoder-out-embed-dim"):
        build_model(share_decoder_input_output_embed=True, decoder_out_embed_dim=32)


def test_missing_visual_features_is_a_clear_error_and_a_text_only_model_needs_none():
    model = build_model()
    src, lengths, prev, visual = random_batch(model, [5, 3], [4, 4])
    # what fairseq-interactive hands the model: no image; the message says where to go
    with pytest.raises(ValueError, match="fairseq-interactive cannot carry them.*fairseq-mmt-"):
        model(src, lengths, prev, None)
    text_only = build_model(visual_fusion="none")
    with torch.no_grad():
        torch.testing.assert_close(
            text_only(src, lengths, prev, None)[0], text_only(src, lengths, prev, visual)[0]
        )


def test_decoder_init_and_implementation_are_checked():
    with pytest.raises(ValueError, match="unknown --decoder-init 'zeros'"):
        build_model(decoder_init="zeros")
    with pytest.raises(ValueError, match="unknown --cgru-implementation 'fast'"):
        build_model(cgru_implementation="fast")


def test_the_fused_steps_refuse_a_fusion_that_is_not_linear_in_the_context(monkeypatch):
    from fairseq_mmt_adv.fusions.ctx_mul import ContextMultiplicativeFusion

    monkeypatch.setattr(ContextMultiplicativeFusion, "linear_in_context", False)
    with pytest.raises(ValueError, match="needs a fusion that is linear in the context"):
        build_model(cgru_implementation="fused")
    assert build_model(cgru_implementation="reference").decoder.implementation == "reference"


CUDA = pytest.mark.cuda  # skipped without a CUDA device (conftest.py)


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
@pytest.mark.parametrize("fusion", ["ctx-mul", "none"])
def test_fused_decoder_equals_the_reference_in_outputs_and_gradients(fusion, device):
    """Same parameters, same function: logits, hT, attention and every gradient agree."""
    reference = build_model(visual_fusion=fusion, cgru_implementation="reference")
    fused = build_model(visual_fusion=fusion, cgru_implementation="fused")
    fused.load_state_dict(reference.state_dict())
    reference, fused = reference.to(device, torch.float64), fused.to(device, torch.float64)
    assert (reference.decoder.implementation, fused.decoder.implementation) == (
        "reference",
        "fused",
    )
    batch = random_batch(reference, [6, 2, 9, 4], [7, 3, 5, 8])
    src, lengths, prev, visual = (x.to(device) for x in batch)
    results = []
    for model in (reference, fused):
        logits, extra = model(src, lengths, prev, visual.double())
        target = torch.randint(0, logits.size(-1), logits.shape[:2], generator=torch.Generator())
        target = target.to(device)
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target)
        loss = loss + extra["final_hidden"].pow(2).sum()
        model.zero_grad()
        loss.backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
        results.append((logits, extra["final_hidden"], extra["attn"][0], grads))
    (ref_logits, ref_h, ref_attn, ref_grads), (logits, h, attn, grads) = results
    torch.testing.assert_close(logits, ref_logits)
    torch.testing.assert_close(h, ref_h)
    torch.testing.assert_close(attn, ref_attn)
    assert grads.keys() == ref_grads.keys() and len(grads) > 10
    for name, grad in grads.items():
        torch.testing.assert_close(grad, ref_grads[name], msg=lambda m, name=name: f"{name}: {m}")


@CUDA
@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_bf16_autocast_on_cuda_follows_float32(implementation):
    """Mixed precision (fairseq --amp --amp-dtype bfloat16): finite logits and gradients that
    stay near the float32 ones; the attention's softmax runs in float32."""
    model = build_model(cgru_implementation=implementation).cuda().train()
    model.apply(lambda m: setattr(m, "p", 0.0) if isinstance(m, torch.nn.Dropout) else None)
    batch = random_batch(model, [6, 2, 9, 4], [7, 3, 5, 8])
    src, lengths, prev, visual = (x.cuda() for x in batch)
    results = []
    for autocast in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast):
            logits, extra = model(src, lengths, prev, visual)
        model.zero_grad()
        logits.float().logsumexp(-1).sum().backward()
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((logits.float(), extra["attn"][0].float(), grads))
    (logits32, attn32, grads32), (logits16, attn16, grads16) = results
    assert torch.isfinite(logits16).all() and torch.isfinite(grads16).all()
    torch.testing.assert_close(logits16, logits32, rtol=0.05, atol=0.05)
    torch.testing.assert_close(attn16.sum(-1), torch.ones_like(attn16.sum(-1)), rtol=0, atol=1e-2)
    torch.testing.assert_close(attn16, attn32, rtol=0.05, atol=0.02)
    cosine = torch.nn.functional.cosine_similarity(grads16, grads32, dim=0)
    assert cosine > 0.99


@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_beam_rows_share_one_per_sentence_state(implementation):
    """fairseq repeats each sentence's encoder rows for its hypotheses: the decoder computes
    the per-sentence state once per sentence and gets what separate sentences would give."""
    model = build_model(cgru_implementation=implementation)
    src, lengths, prev, visual = random_batch(model, [5, 3, 7], [4, 4, 4])
    beam = torch.tensor([0, 0, 1, 1, 1, 2, 2])
    calls = []
    original = model.decoder.initial_state

    def counting_initial_state(encoder_out):
        calls.append(encoder_out["annotations"].size(0))
        return original(encoder_out)

    model.decoder.initial_state = counting_initial_state
    with torch.no_grad():
        expanded = model.encoder.reorder_encoder_out(
            model.encoder(src, lengths, visual_features=visual), beam
        )
        shared: dict = {}
        separate: dict = {}
        repeated = model.encoder(src[beam], lengths[beam], visual_features=visual[beam])
        for t in range(prev.size(1)):
            a = model.decoder(prev[beam, : t + 1], expanded, incremental_state=shared)[0]
            b = model.decoder(prev[beam, : t + 1], repeated, incremental_state=separate)[0]
            torch.testing.assert_close(a, b)
    assert calls == [3, 7]  # once per sentence for the beam, once per row without repeats


@pytest.mark.parametrize("implementation", ["fused", "reference"])
def test_reordering_within_sentences_copies_no_per_sentence_tensor(implementation):
    """Beam search reorders hypotheses of the same sentence at every step: the encoder output
    and the per-sentence state stay in place, the hidden state moves, and the result equals
    decoding the reordered hypotheses from scratch."""
    model = build_model(cgru_implementation=implementation)
    src, lengths, prev, visual = random_batch(model, [5, 3], [4, 4])
    rows = torch.tensor([0, 0, 0, 1, 1, 1])
    prev = prev[rows]
    prev[:, 1] = torch.tensor([4, 5, 6, 7, 8, 9])  # different hypotheses per sentence
    within = torch.tensor([2, 0, 0, 4, 5, 3])
    with torch.no_grad():
        encoder_out = model.encoder.reorder_encoder_out(
            model.encoder(src, lengths, visual_features=visual), rows
        )
        state: dict = {}
        for t in range(2):
            model.decoder(prev[:, : t + 1], encoder_out, incremental_state=state)
        before = model.decoder.get_incremental_state(state, "state")
        model.decoder.reorder_incremental_state_scripting(state, within)
        after = model.decoder.get_incremental_state(state, "state")
        assert model.encoder.reorder_encoder_out(encoder_out, within) is encoder_out
        assert after["keys"] is before["keys"]
        torch.testing.assert_close(after["hidden"], before["hidden"][within])
        reordered = torch.cat([prev[within, :2], prev[:, 2:3]], dim=1)
        step = model.decoder(reordered, encoder_out, incremental_state=state)[0]
        full = model(src[rows], lengths[rows], reordered, visual[rows])[0]
    torch.testing.assert_close(step[:, -1], full[:, -1], rtol=1e-5, atol=1e-5)


def test_weights_are_he_normal_and_padding_rows_zero():
    model = build_model("cgru_mmt")
    for param, fan_in in (
        (model.decoder.attention.key_proj.weight, 1024),
        (model.encoder.rnn.weight_hh_l0, 512),
        (model.decoder.output_projection.weight, 256),
        (model.encoder.embed_tokens.weight, 256),
    ):
        std = param.detach().std().item()
        assert abs(std / (2 / fan_in) ** 0.5 - 1) < 0.1, (param.shape, std)
    for embed in (model.encoder.embed_tokens, model.decoder.embed_tokens):
        assert embed.weight[embed.padding_idx].abs().sum() == 0
