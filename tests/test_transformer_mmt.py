"""transformer_mmt: fairseq's Transformer with the image fused into the encoder output."""

import argparse
from types import SimpleNamespace

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.models import ARCH_CONFIG_REGISTRY, ARCH_MODEL_REGISTRY
from fairseq.sequence_generator import SequenceGenerator

from fairseq_mmt_adv.fusions.gated import GatedFusion
from fairseq_mmt_adv.fusions.selective_attention import SelectiveAttentionFusion

VISUAL_DIM = 12
SMALL = dict(
    encoder_layers=2, decoder_layers=2, encoder_embed_dim=16, encoder_ffn_embed_dim=32,
    encoder_attention_heads=2, decoder_attention_heads=2, dropout=0.0,
)  # fmt: skip


def make_dictionary(size: int = 20) -> Dictionary:
    dictionary = Dictionary()
    for i in range(size):
        dictionary.add_symbol(f"w{i}")
    return dictionary


def build(arch: str = "transformer_mmt_tiny", joined: bool = True, **overrides):
    args = argparse.Namespace(arch=arch, **{**SMALL, **overrides})
    source = make_dictionary()
    task = SimpleNamespace(
        source_dictionary=source,
        target_dictionary=source if joined else make_dictionary(22),
        visual_feature_dim=VISUAL_DIM,
    )
    ARCH_CONFIG_REGISTRY[arch](args)
    torch.manual_seed(0)
    return ARCH_MODEL_REGISTRY[arch].build_model(args, task).eval()


def batch(lengths_src=(7, 4, 6), lengths_tgt=(5, 3, 6), seed=0, spatial=0):
    """Left-padded sources, right-padded targets (fairseq's defaults) and features."""
    generator = torch.Generator().manual_seed(seed)
    pad, eos = 1, 2
    src = torch.full((len(lengths_src), max(lengths_src)), pad)
    prev = torch.full((len(lengths_tgt), max(lengths_tgt)), pad)
    for b, (ls, lt) in enumerate(zip(lengths_src, lengths_tgt, strict=True)):
        src[b, src.size(1) - ls :] = torch.randint(4, 20, (ls,), generator=generator)
        src[b, -1] = eos
        prev[b, :lt] = torch.randint(4, 20, (lt,), generator=generator)
        prev[b, 0] = eos
    shape = (len(lengths_src), spatial, VISUAL_DIM) if spatial else (len(lengths_src), VISUAL_DIM)
    return src, torch.tensor(lengths_src), prev, torch.randn(shape, generator=generator)


@pytest.mark.parametrize("share", [True, False])
def test_text_only_model_computes_what_fairseqs_transformer_computes(share):
    stock = build("transformer", share_all_embeddings=share)
    ours = build(visual_fusion="none", share_all_embeddings=share)
    ours.load_state_dict(stock.state_dict(), strict=True)  # the same parameters, by name
    src, lengths, prev, _ = batch()
    expected, stock_extra = stock(src, lengths, prev)
    logits, extra = ours(src, lengths, prev)  # no image needed
    torch.testing.assert_close(logits, expected, rtol=0, atol=0)
    torch.testing.assert_close(extra["attn"][0], stock_extra["attn"][0], rtol=0, atol=0)


def test_presets_have_the_anchor_sizes():
    tiny = build(**{k: None for k in ()})
    args = argparse.Namespace(arch="transformer_mmt_tiny")
    ARCH_CONFIG_REGISTRY["transformer_mmt_tiny"](args)
    assert (args.encoder_layers, args.decoder_layers, args.encoder_embed_dim) == (4, 4, 128)
    assert (args.encoder_ffn_embed_dim, args.decoder_ffn_embed_dim) == (256, 256)
    assert (args.encoder_attention_heads, args.decoder_attention_heads, args.dropout) == (4, 4, 0.3)
    assert args.visual_fusion == "gated"
    base = argparse.Namespace(arch="transformer_mmt")
    ARCH_CONFIG_REGISTRY["transformer_mmt"](base)
    assert (base.encoder_layers, base.encoder_embed_dim, base.encoder_ffn_embed_dim) == (
        6,
        512,
        2048,
    )
    assert isinstance(tiny.encoder.fusion, GatedFusion)


def test_gated_fusion_is_h_plus_lambda_times_wv():
    fusion = GatedFusion(VISUAL_DIM, 16)
    h, v = torch.randn(5, 3, 16), torch.randn(3, VISUAL_DIM)
    image = fusion.feature_proj(v).unsqueeze(0).expand(5, -1, -1)  # W v at every position
    gate = torch.sigmoid(fusion.gate_proj(torch.cat([h, image], dim=-1)))  # Λ = σ(W_λ [H; W v])
    torch.testing.assert_close(fusion(h, v), h + gate * image)
    spatial = torch.randn(3, 4, VISUAL_DIM)
    torch.testing.assert_close(fusion(h, spatial), fusion(h, spatial.mean(dim=1)))


def test_selective_attention_gates_attended_regions_into_h():
    fusion = SelectiveAttentionFusion(VISUAL_DIM, 16).eval()
    h, regions = torch.randn(5, 3, 16), torch.randn(3, 4, VISUAL_DIM)
    keys = fusion.feature_proj(regions).transpose(0, 1)
    attended, _ = fusion.attention(query=h, key=keys, value=keys)
    gate = torch.sigmoid(fusion.gate_proj(torch.cat([h, attended], dim=-1)))
    torch.testing.assert_close(fusion(h, regions), (1 - gate) * h + gate * attended)
    pooled = regions[:, 0]  # one region
    torch.testing.assert_close(fusion(h, pooled), fusion(h, pooled.unsqueeze(1)))


@pytest.mark.parametrize("fusion,spatial", [("gated", 0), ("selective-attn", 3)])
def test_multimodal_fusions_use_the_image_and_none_ignores_it(fusion, spatial):
    src, lengths, prev, visual = batch(spatial=spatial)
    model = build(visual_fusion=fusion)
    with torch.no_grad():
        a = model(src, lengths, prev, visual_features=visual)[0]
        b = model(src, lengths, prev, visual_features=torch.randn_like(visual))[0]
    assert not torch.allclose(a, b)
    text_only = build(visual_fusion="none")
    torch.testing.assert_close(
        text_only(src, lengths, prev, visual_features=visual)[0],
        text_only(src, lengths, prev, visual_features=torch.randn_like(visual))[0],
    )
    with pytest.raises(ValueError, match="--visual-features DIR"):
        model(src, lengths, prev)


def test_final_hidden_is_the_top_state_at_each_last_real_target_position():
    model = build(visual_fusion="gated")
    src, lengths, prev, visual = batch(lengths_tgt=(5, 3, 6))
    with torch.no_grad():
        features, extra = model(src, lengths, prev, visual_features=visual, features_only=True)
        for b, length in enumerate((5, 3, 6)):
            torch.testing.assert_close(extra["final_hidden"][b], features[b, length - 1])
            # the same sentence alone, unpadded, gives the same hT
            alone = model(
                src[b : b + 1], lengths[b : b + 1], prev[b : b + 1, :length],
                visual_features=visual[b : b + 1],
            )[1]["final_hidden"][0]  # fmt: skip
            torch.testing.assert_close(alone, extra["final_hidden"][b], atol=1e-5, rtol=1e-5)
    assert model.final_hidden_size == 16


@pytest.mark.parametrize("fusion,spatial", [("gated", 0), ("selective-attn", 4), ("none", 0)])
def test_beam_search_scores_equal_teacher_forced_scores(fusion, spatial):
    """Incremental decoding with reordered beams scores each hypothesis as a teacher-forced
    pass over it does: the fused encoder output follows the beam."""
    model = build(visual_fusion=fusion)
    src, lengths, _, visual = batch(spatial=spatial)
    generator = SequenceGenerator([model], make_dictionary(), beam_size=3, max_len_b=6)
    sample = {"net_input": {"src_tokens": src, "src_lengths": lengths, "visual_features": visual}}
    hypotheses = generator.forward(sample)
    for b, sentence in enumerate(hypotheses):
        for hypothesis in sentence:
            tokens = hypothesis["tokens"]
            prev = torch.cat([tokens.new_tensor([2]), tokens[:-1]]).unsqueeze(0)
            with torch.no_grad():
                logits = model(
                    src[b : b + 1], lengths[b : b + 1], prev, visual_features=visual[b : b + 1]
                )[0]
            scores = torch.log_softmax(logits[0], dim=-1).gather(1, tokens.unsqueeze(1))[:, 0]
            torch.testing.assert_close(hypothesis["positional_scores"], scores, atol=1e-4, rtol=0)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="--joined-dictionary"):
        build(joined=False, share_all_embeddings=True)
    with pytest.raises(ValueError, match="--visual-fusion 'ctx-mul' does not act on"):
        build(visual_fusion="ctx-mul")
    task = SimpleNamespace(source_dictionary=make_dictionary(), target_dictionary=make_dictionary())
    args = argparse.Namespace(arch="transformer_mmt_tiny", **SMALL)
    ARCH_CONFIG_REGISTRY["transformer_mmt_tiny"](args)
    with pytest.raises(ValueError, match="--task multimodal_translation"):
        ARCH_MODEL_REGISTRY["transformer_mmt_tiny"].build_model(args, task)
