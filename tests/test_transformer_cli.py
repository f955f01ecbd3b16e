"""transformer_mmt through the stock CLIs (in-process): every reconstruction mode trains it,
--share-all-embeddings on a joined dictionary, ensembles, and the average of the last epochs."""

import re
import shlex
from pathlib import Path

import pytest
import torch
from helpers import PACKAGE_DIR, SPLIT_SIZES, generate, hypotheses, preprocess, train

from fairseq_mmt_adv.recipes.checkpoint_average import average_checkpoints

# transformer_mmt_tiny made tinier: the CLI plumbing is under test, not the model's quality.
TINY = shlex.split(
    "--arch transformer_mmt_tiny --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 "
    "--decoder-embed-dim 16 --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 "
    "--encoder-attention-heads 2 --decoder-attention-heads 2"
)
# Wu et al.'s optimisation, with a short warm-up.
OPTIMIZATION = shlex.split(
    "--optimizer adam --adam-betas '(0.9, 0.98)' --lr 0.005 --lr-scheduler inverse_sqrt "
    "--warmup-updates 4 --batch-size 32 --seed 1"
)


@pytest.fixture(scope="module")
def joined(tiny_corpus, tmp_path_factory) -> Path:
    """The tiny corpus binarized with one dictionary for both languages."""
    destdir = tmp_path_factory.mktemp("joined")
    preprocess(tiny_corpus, destdir, "--joined-dictionary")
    return destdir


def train_transformer(data: Path, features: Path, save_dir: Path, *extra: str) -> str:
    task = ["--user-dir", PACKAGE_DIR, "--task", "multimodal_translation"]
    task += ["--visual-features", str(features), "--save-dir", str(save_dir)]
    return train(str(data), *task, *TINY, *OPTIMIZATION, *extra)


@pytest.mark.parametrize("mode", ["mse", "q-waae", "g-wgan"])
def test_every_reconstruction_mode_trains_the_transformer(tiny_corpus, tmp_path, mode):
    criterion = ["--criterion", "adversarial_reconstruction", "--reconstruction", mode]
    criterion += ["--label-smoothing", "0.1"]
    log = train_transformer(
        tiny_corpus / "bin",
        tiny_corpus / "features",
        tmp_path,
        "--visual-fusion",
        "gated",
        *criterion,
        *shlex.split("--critic-iters 2 --max-update 4 --no-save"),
    )
    valid = [line for line in log.splitlines() if "valid on 'valid' subset" in line]
    assert valid and re.search(r"\| recon_mse \d", valid[-1]), log[-2000:]
    if mode != "mse":
        assert re.search(r"\| critic_loss -?\d", log), "the critic D was not trained"


@pytest.fixture(scope="module")
def shared_run(tiny_corpus, joined, tmp_path_factory) -> Path:
    """Four epochs of a text-only tiny Transformer with all embeddings shared, keeping the
    checkpoints of the last two epochs (the anchors' --keep-last-epochs recipe)."""
    save_dir = tmp_path_factory.mktemp("shared")
    train_transformer(
        joined,
        tiny_corpus / "features",
        save_dir,
        *shlex.split(
            "--visual-fusion none --share-all-embeddings --max-epoch 4 --keep-last-epochs 2"
        ),
        *shlex.split("--criterion label_smoothed_cross_entropy --label-smoothing 0.1"),
    )
    return save_dir


def decode(joined: Path, tiny_corpus: Path, path: str) -> dict[int, str]:
    task = ["--user-dir", PACKAGE_DIR, "--task", "multimodal_translation"]
    task += ["--visual-features", str(tiny_corpus / "features"), "--path", path]
    output = generate(
        str(joined), *task, *shlex.split("--gen-subset test --beam 5 --batch-size 16")
    )
    return hypotheses(output)


def test_shared_embeddings_keep_last_epochs_ensembles_and_averages(
    tiny_corpus, joined, shared_run, tmp_path
):
    epochs = sorted(path.name for path in shared_run.glob("checkpoint[0-9]*.pt"))
    assert epochs == ["checkpoint3.pt", "checkpoint4.pt"]
    every_sentence = list(range(SPLIT_SIZES["test"]))
    assert sorted(decode(joined, tiny_corpus, str(shared_run / "checkpoint4.pt"))) == every_sentence
    ensemble = f"{shared_run / 'checkpoint3.pt'}:{shared_run / 'checkpoint4.pt'}"
    assert sorted(decode(joined, tiny_corpus, ensemble)) == every_sentence
    torch.save(average_checkpoints([shared_run / n for n in epochs]), tmp_path / "average.pt")
    assert sorted(decode(joined, tiny_corpus, str(tmp_path / "average.pt"))) == every_sentence


def test_shared_embeddings_need_a_joined_dictionary(tiny_corpus, tmp_path):
    with pytest.raises(ValueError, match="--joined-dictionary"):
        train_transformer(
            tiny_corpus / "bin",
            tiny_corpus / "features",
            tmp_path,
            *shlex.split("--visual-fusion none --share-all-embeddings --max-update 1 --no-save"),
        )
