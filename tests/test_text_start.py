"""Starting a multimodal Transformer from a text model (``--finetune-from-model TEXT.pt``):
stock fairseq ``transformer`` checkpoints and the plugin's ``--visual-fusion none`` ones load,
the fusion starts at its identity (the text model's translations, exactly for ``gated``),
``--freeze-text-model`` keeps every text weight, every reconstruction mode trains, and what
cannot start from the text model is refused with both sides named."""

import json
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import PACKAGE_DIR, generate, preprocess, single_thread, train, write_tiny_corpus

from fairseq_mmt_adv import MultimodalTranslator
from fairseq_mmt_adv.evaluation import cli as evaluate
from fairseq_mmt_adv.fusions.registry import build_fusion
from fairseq_mmt_adv.fusions.selective_attention import IDENTITY_GATE_BIAS
from fairseq_mmt_adv.models.text_start import TextStartError
from fairseq_mmt_adv.recipes.checkpoint_average import average_checkpoints

SIZES = shlex.split(
    "--encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 --decoder-embed-dim 16 "
    "--encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 --encoder-attention-heads 2 "
    "--decoder-attention-heads 2"
)
OPTIMIZER = ["--optimizer", "adam", "--batch-size", "16", "--seed", "1"]
# one update with learning rate 0: the saved model is the model as it starts
LR_0 = ["--lr", "0", "--lr-scheduler", "fixed", "--max-update", "1"]
# every sentence in one batch, so that fairseq's stock task drops none (its batches are
# multiples of 8 and the 61 test sentences are not)
DECODE = ["--gen-subset", "test", "--beam", "2", "--batch-size", "64",
          "--required-batch-size-multiple", "1"]  # fmt: skip


def multimodal(corpus: Path) -> list[str]:
    return [str(corpus / "bin"), "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation",
            "--visual-features", str(corpus / "features")]  # fmt: skip


def train_text_model(corpus: Path, save_dir: Path, *extra: str) -> Path:
    """A stock fairseq ``transformer``, trained with ``--task translation``."""
    train(
        str(corpus / "bin"), "--task", "translation", "--arch", "transformer", *SIZES, *OPTIMIZER,
        "--lr", "0.005", "--max-epoch", "2", "--save-dir", str(save_dir),
        "--no-epoch-checkpoints", *extra,
    )  # fmt: skip
    return save_dir / "checkpoint_last.pt"


def finetune(corpus: Path, save_dir: Path, text: Path, *extra: str, fusion: str = "gated"):
    train(
        *multimodal(corpus), "--arch", "transformer_mmt_tiny", "--visual-fusion", fusion, *SIZES,
        *OPTIMIZER, "--save-dir", str(save_dir), "--no-epoch-checkpoints",
        "--finetune-from-model", str(text), *extra,
    )  # fmt: skip
    return save_dir / "checkpoint_last.pt"


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def decoded(output: str) -> dict[str, tuple[str, str]]:
    """``{id: (score, hypothesis)}`` of fairseq-generate's H- lines."""
    lines = [line.split("\t") for line in output.splitlines() if line.startswith("H-")]
    return {head: (score, text) for head, score, text in lines}


@pytest.fixture(scope="module")
def text_model(tiny_corpus, tmp_path_factory) -> Path:
    return train_text_model(tiny_corpus, tmp_path_factory.mktemp("text"))


@pytest.fixture(scope="module", params=["gated", "selective-attn"])
def at_identity(request, tiny_corpus, text_model, tmp_path_factory) -> tuple[str, Path]:
    """``(fusion, checkpoint)``: fine-tuned from the text model with learning rate 0."""
    save_dir = tmp_path_factory.mktemp(request.param)
    return request.param, finetune(tiny_corpus, save_dir, text_model, *LR_0, fusion=request.param)


def test_with_learning_rate_0_the_model_decodes_as_the_text_model(
    tiny_corpus, text_model, at_identity
):
    fusion, tuned = at_identity
    text, both = weights(text_model), weights(tuned)
    assert all(torch.equal(text[key], both[key]) for key in text)
    added = sorted(set(both) - set(text))
    assert added and all(k.startswith(("encoder.fusion.", "encoder.visual_input.")) for k in added)
    if fusion == "gated":  # W = 0: H' = H exactly
        assert not both["encoder.fusion.feature_proj.weight"].any()
    stock = generate(str(tiny_corpus / "bin"), "--task", "translation", "--path", str(text_model),
                     *DECODE)  # fmt: skip
    ours = generate(*multimodal(tiny_corpus), "--path", str(tuned), *DECODE)
    assert len(decoded(stock)) == 61
    if fusion == "gated":  # exactly, scores included
        assert decoded(ours) == decoded(stock)
        return
    # selective-attn starts within sigmoid(-10) of the text model: the same hypotheses
    for key, (score, text) in decoded(stock).items():
        assert decoded(ours)[key][1] == text
        assert float(decoded(ours)[key][0]) == pytest.approx(float(score), abs=1e-3)


def test_the_translator_and_evaluate_take_a_fine_tuned_checkpoint(
    tiny_corpus, text_model, at_identity, tmp_path
):
    """At its identity the model ignores the image: the translator gives the text model's
    translations with any image, and incongruent images cost exactly nothing."""
    fusion, tuned = at_identity
    stock = generate(str(tiny_corpus / "bin"), "--task", "translation", "--path", str(text_model),
                     *DECODE)  # fmt: skip
    expected = [text for _, text in sorted((int(k[2:]), v[1]) for k, v in decoded(stock).items())]
    sources = (tiny_corpus / "test.en").read_text().splitlines()
    features = np.load(tiny_corpus / "features" / "test.npy")
    translator = MultimodalTranslator.from_pretrained(
        tuned.parent, tuned.name, str(tiny_corpus / "bin"), cpu=True
    )
    with single_thread():
        assert translator.translate(sources, features=features, beam=2) == expected
        assert translator.translate(sources, features=features[::-1].copy(), beam=2) == expected
        flags = ["--gen-subset", "test", "--permutations", "1", "--cpu"]
        result = tmp_path / "incongruent.json"
        argv = ["incongruent", str(tiny_corpus / "bin"), "--path", str(tuned), *flags]
        assert evaluate.main([*argv, "--json", str(result)]) == 0
    scores = json.loads(result.read_text())
    assert scores["delta"] == 0 and scores["p_value"] == 1


def test_selective_attention_starts_within_sigmoid_minus_30():
    """|H' - H| <= sigmoid(-10) |A - H|, elementwise (plus float32 rounding of H)."""
    torch.manual_seed(0)
    fusion = build_fusion("selective-attn", "encoder-output", "transformer_mmt", 8, 16)
    fusion.init_identity()
    encoder_out, regions = torch.randn(5, 3, 16) * 10, torch.randn(3, 4, 8) * 10
    fused = fusion(encoder_out, regions)
    keys = fusion.feature_proj(regions).transpose(0, 1)
    attended, _ = fusion.attention(query=encoder_out, key=keys, value=keys, static_kv=True)
    bound = torch.sigmoid(torch.tensor(IDENTITY_GATE_BIAS)) * (attended - encoder_out).abs()
    rounding = torch.finfo(torch.float32).eps * encoder_out.abs()
    assert ((fused - encoder_out).abs() <= bound + rounding).all()
    assert (fused - encoder_out).abs().max() > 0  # close, not exact


@pytest.mark.parametrize("mode", ["mse", "q-waae", "g-wgan"])
def test_every_reconstruction_mode_fine_tunes_and_freezing_keeps_the_text_weights(
    tiny_corpus, text_model, tmp_path, mode
):
    criterion = ["--criterion", "adversarial_reconstruction", "--reconstruction", mode,
                 "--critic-hidden", "8", "--critic-iters", "1", "--noise-dim", "4"]  # fmt: skip
    run = ["--lr", "0.01", "--freeze-text-model", *criterion]
    tuned = finetune(tiny_corpus, tmp_path, text_model, *run, "--max-update", "3")
    text, both = weights(text_model), weights(tuned)
    assert all(torch.equal(text[key], both[key]) for key in text)  # bit for bit
    assert both["encoder.fusion.feature_proj.weight"].abs().sum() > 0  # the fusion trained
    state = torch.load(tuned, weights_only=True)
    assert any(key.startswith("generator.") for key in state["criterion"])
    # the run resumes from its checkpoint_last.pt (fairseq drops --finetune-from-model then)
    resumed = finetune(tiny_corpus, tmp_path, text_model, *run, "--max-update", "5")
    assert torch.load(resumed, weights_only=True)["optimizer_history"][-1]["num_updates"] == 5
    assert all(torch.equal(text[key], weights(resumed)[key]) for key in text)


def test_a_plugin_text_only_model_and_restore_file_with_resets(tiny_corpus, tmp_path):
    text_only = tmp_path / "none"
    train(
        *multimodal(tiny_corpus)[:5], "--arch", "transformer_mmt_tiny", "--visual-fusion", "none",
        *SIZES, *OPTIMIZER, "--lr", "0.005", "--max-epoch", "1", "--save-dir", str(text_only),
        "--criterion", "label_smoothed_cross_entropy",
    )  # fmt: skip
    source = text_only / "checkpoint_last.pt"
    tuned = train(
        *multimodal(tiny_corpus), "--arch", "transformer_mmt_tiny", "--visual-fusion", "gated",
        *SIZES, *OPTIMIZER, *LR_0, "--save-dir", str(tmp_path / "gated"),
        "--restore-file", str(source), "--reset-optimizer", "--reset-dataloader",
        "--reset-lr-scheduler", "--reset-meters",
    )  # fmt: skip
    assert f"starting from the text model {source}" in tuned
    text, both = weights(source), weights(tmp_path / "gated" / "checkpoint_last.pt")
    assert all(torch.equal(text[k], both[k]) for k in text if "visual_input" not in k)
    assert both["encoder.visual_input.normalizer.mean"].numel() == 16  # this run's features
    # the recipes start from the text-only run's averaged checkpoint (scripts/average_checkpoints)
    averaged = tmp_path / "checkpoint_avg.pt"
    torch.save(average_checkpoints([text_only / "checkpoint1.pt", source]), averaged)
    finetune(tiny_corpus, tmp_path / "from-avg", averaged, *LR_0)
    assert all(torch.equal(v, weights(tmp_path / "from-avg" / "checkpoint_last.pt")[k])
               for k, v in weights(averaged).items() if "visual_input" not in k)  # fmt: skip


# ---------------------------------------------------------------- refusals, both sides named


def refusal(corpus: Path, tmp_path: Path, source: Path, *extra: str, arch=None) -> str:
    arch = arch or ["--arch", "transformer_mmt_tiny", "--visual-fusion", "gated", *SIZES]
    with pytest.raises(TextStartError) as error:
        train(*multimodal(corpus), *arch, *OPTIMIZER, *LR_0, "--save-dir", str(tmp_path / "run"),
              "--finetune-from-model", str(source), *extra)  # fmt: skip
    assert str(source) in str(error.value)
    return str(error.value)


def rewritten(path: Path, out: Path, **task: object) -> Path:
    """``path`` with its task configuration changed (what another task would have stored)."""
    state = torch.load(path, weights_only=True)
    state["cfg"]["task"].update(task)
    torch.save(state, out)
    return out


def test_dictionaries_of_another_size_or_content_are_refused(tiny_corpus, text_model, tmp_path):
    bigger = tmp_path / "bigger"
    bigger.mkdir()
    write_tiny_corpus(bigger)
    with open(bigger / "train.en", "a") as lines:
        lines.write("w12 w0\n")
    with open(bigger / "train.de", "a") as lines:
        lines.write("W0 W12\n")
    preprocess(bigger, bigger / "bin")
    message = refusal(bigger, tmp_path, text_model)
    assert (
        f"{bigger / 'bin' / 'dict.en.txt'} (source): 24 entries, the model's 16" in message
    )  # padded to 8s
    assert "--srcdict" in message
    # the same words in another order
    symbols = (tiny_corpus / "bin" / "dict.en.txt").read_text().splitlines()
    reordered = tmp_path / "dict.en.txt"
    reordered.write_text("\n".join([symbols[1], symbols[0], *symbols[2:]]) + "\n")
    other = tmp_path / "other"
    preprocess(tiny_corpus, other / "bin", "--srcdict", str(reordered))
    (other / "features").symlink_to(tiny_corpus / "features")
    message = refusal(other, tmp_path, text_model)
    assert "(source): the same 16 entries in another order or with other words" in message


def test_another_family_a_multilingual_model_and_another_pair_are_refused(
    tiny_corpus, text_model, tmp_path
):
    lstm = tmp_path / "lstm"
    train(str(tiny_corpus / "bin"), "--task", "translation", "--arch", "lstm",
          "--encoder-embed-dim", "8", "--encoder-hidden-size", "8", "--decoder-embed-dim", "8",
          "--decoder-hidden-size", "8", "--decoder-out-embed-dim", "8", *OPTIMIZER,
          "--lr", "0.005", "--max-epoch", "1", "--save-dir", str(lstm))  # fmt: skip
    message = refusal(tiny_corpus, tmp_path, lstm / "checkpoint_last.pt")
    assert "(--arch lstm, --task translation) is a model of another family (lstm)" in message
    assert (
        "fairseq's transformer (--arch transformer*) or transformer_mmt --visual-fusion none"
        in message
    )
    many = rewritten(text_model, tmp_path / "m.pt", _name="translation_multi_simple_epoch",
                     decoder_langtok=True)  # fmt: skip
    message = refusal(tiny_corpus, tmp_path, many)
    assert "is a multilingual model (--decoder-langtok True)" in message
    assert "language tokens" in message and "--task multimodal_translation" in message
    french = rewritten(text_model, tmp_path / "fr.pt", source_lang="en", target_lang="fr")
    message = refusal(tiny_corpus, tmp_path, french)
    assert "translates en-fr, and this run en-de (--target-lang)" in message


def test_options_that_change_the_function_are_named(tiny_corpus, text_model, tmp_path):
    message = refusal(tiny_corpus, tmp_path, text_model, "--encoder-normalize-before")
    assert "--encoder-normalize-before is False there, True here" in message
    message = refusal(tiny_corpus, tmp_path, text_model, "--decoder-ffn-embed-dim", "64")
    assert "--decoder-ffn-embed-dim is 32 there, 64 here" in message
    # what a fine-tuning run may change
    finetune(tiny_corpus, tmp_path / "ok", text_model, *LR_0, "--dropout", "0.3")


def test_a_model_of_the_same_kind_loads_as_it_is_if_its_features_fit(
    tiny_corpus, text_model, tmp_path
):
    gated = finetune(tiny_corpus, tmp_path / "gated", text_model, *LR_0)
    again = finetune(tiny_corpus, tmp_path / "again", gated, *LR_0, "--max-update", "2")
    assert torch.equal(weights(again)["encoder.fusion.gate_proj.weight"],
                       weights(gated)["encoder.fusion.gate_proj.weight"])  # fmt: skip
    wider = tmp_path / "wider"
    shutil.copytree(tiny_corpus / "bin", wider / "bin")
    (wider / "features").mkdir()
    for split in ("train", "valid", "test"):
        rows = np.load(tiny_corpus / "features" / f"{split}.npy")
        np.save(wider / "features" / f"{split}.npy", np.concatenate([rows, rows], axis=1))
    message = refusal(wider, tmp_path, gated)
    assert "trained on 16-dimensional image features" in message and "are 32-dimensional" in message


def test_a_fusion_without_identity_and_freezing_nothing_are_refused(tiny_corpus, tmp_path):
    cgru = ["--arch", "cgru_mmt_small", "--encoder-hidden-size", "16", "--decoder-hidden-size",
            "16"]  # fmt: skip
    train(*multimodal(tiny_corpus), *cgru, "--visual-fusion", "none", *OPTIMIZER, "--lr", "0.005",
          "--max-epoch", "1", "--save-dir", str(tmp_path / "none"))  # fmt: skip
    source = tmp_path / "none" / "checkpoint_last.pt"
    message = refusal(tiny_corpus, tmp_path, source, arch=[*cgru, "--visual-fusion", "ctx-mul"])
    assert "--visual-fusion ctx-mul declares no identity" in message
    assert "drop --finetune-from-model" in message
    with pytest.raises(TextStartError, match="--freeze-text-model keeps .* this run loads none"):
        train(*multimodal(tiny_corpus), "--arch", "transformer_mmt_tiny", *SIZES, *OPTIMIZER,
              *LR_0, "--save-dir", str(tmp_path / "frozen"), "--freeze-text-model")  # fmt: skip
