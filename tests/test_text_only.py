"""A model and criterion that use no image train, validate and decode without
``--visual-features``; anything that needs the image keeps the task's error."""

import shlex
from pathlib import Path

import pytest
import torch
from helpers import PACKAGE_DIR, generate, hypotheses, train

from fairseq_mmt_adv.data.feature_files import NEEDS_FEATURES, VisualFeatureError

ARCHS = {
    "cgru": shlex.split("--arch cgru_mmt_small --encoder-hidden-size 16 --decoder-hidden-size 16"),
    "transformer": shlex.split(
        "--arch transformer_mmt_tiny --encoder-layers 1 --decoder-layers 1 "
        "--encoder-embed-dim 16 --decoder-embed-dim 16 --encoder-ffn-embed-dim 32 "
        "--decoder-ffn-embed-dim 32 --encoder-attention-heads 2 --decoder-attention-heads 2"
    ),
}
TASK = ["--user-dir", PACKAGE_DIR, "--task", "multimodal_translation"]


def train_without_features(corpus: Path, save_dir: Path, arch: str, *extra: str) -> str:
    return train(
        str(corpus / "bin"), *TASK, *ARCHS[arch], "--optimizer", "adam", "--lr", "0.005",
        "--batch-size", "16", "--seed", "1", "--save-dir", str(save_dir),
        "--no-epoch-checkpoints", *extra,
    )  # fmt: skip


@pytest.mark.parametrize("arch", ["cgru", "transformer"])
def test_a_text_only_model_trains_validates_and_decodes_without_features(
    tiny_corpus, tmp_path, arch
):
    log = train_without_features(
        tiny_corpus, tmp_path, arch, "--visual-fusion", "none", "--max-epoch", "2",
        "--criterion", "label_smoothed_cross_entropy",
    )  # fmt: skip
    assert "valid on 'valid' subset" in log and "no visual features" in log
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["task_state"]["visual_feature_dim"] is None
    output = generate(
        str(tiny_corpus / "bin"), *TASK, "--path", str(tmp_path / "checkpoint_last.pt"),
        "--gen-subset", "test", "--beam", "2", "--batch-size", "16",
    )  # fmt: skip
    assert len(hypotheses(output)) == 61
    # resuming it without features too
    log = train_without_features(
        tiny_corpus, tmp_path, arch, "--visual-fusion", "none", "--max-epoch", "3",
        "--criterion", "label_smoothed_cross_entropy",
    )  # fmt: skip
    assert "epoch 003" in log


@pytest.mark.parametrize(
    "arch, extra",
    [
        ("cgru", ["--visual-fusion", "ctx-mul"]),
        ("transformer", ["--visual-fusion", "gated"]),
        ("cgru", ["--visual-fusion", "none", "--criterion", "adversarial_reconstruction"]),
    ],
    ids=["ctx-mul", "gated", "reconstruction"],
)
def test_what_needs_the_image_keeps_the_tasks_error(tiny_corpus, tmp_path, arch, extra):
    with pytest.raises(VisualFeatureError, match="needs --visual-features DIR") as error:
        train_without_features(tiny_corpus, tmp_path, arch, "--max-update", "1", *extra)
    assert NEEDS_FEATURES in str(error.value)
