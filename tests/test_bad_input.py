"""No silent wrong result: the bad inputs and faults of a new user, each refused clearly or
handled correctly (fairseq's CLIs in-process on the tiny corpus)."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from fairseq import options
from fairseq.dataclass.utils import convert_namespace_to_omegaconf
from fairseq_cli import interactive as interactive_cli
from helpers import (
    FEATURE_DIM,
    PACKAGE_DIR,
    SPLIT_SIZES,
    captured_log,
    cli_env,
    fairseq_cli,
    generate,
    hypotheses,
    setup_task,
    task_flags,
    train,
)

from fairseq_mmt_adv.checkpoints.loading import CheckpointError, resume_order
from fairseq_mmt_adv.criterions.adversarial_reconstruction import CriterionStateMismatch
from fairseq_mmt_adv.data import VisualFeatureError
from fairseq_mmt_adv.models.visual_input import FeatureNormalizer

SMALL = ["--encoder-hidden-size", "16", "--decoder-hidden-size", "16"]


def train_small(corpus: Path, save_dir: Path, *extra: str, features=None) -> str:
    return train(
        *task_flags(corpus, features or corpus / "features"),
        "--arch", "cgru_mmt_small", *SMALL, "--optimizer", "adam", "--lr", "0.005",
        "--batch-size", "16", "--save-dir", str(save_dir), "--seed", "1", *extra,
    )  # fmt: skip


def decode(corpus: Path, checkpoint: Path, *extra: str, features=None) -> dict[int, str]:
    output = generate(
        *task_flags(corpus, features), "--path", str(checkpoint), "--gen-subset", "test",
        "--beam", "2", "--batch-size", "16", *extra,
    )  # fmt: skip
    return hypotheses(output)


def copy_features(corpus: Path, directory: Path) -> Path:
    shutil.copytree(corpus / "features", directory)
    return directory


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory) -> Path:
    """Two epochs of a q-waae cgru_mmt_small, a checkpoint per epoch."""
    save_dir = tmp_path_factory.mktemp("trained")
    train_small(
        tiny_corpus, save_dir, "--max-epoch", "2", "--criterion", "adversarial_reconstruction",
        "--reconstruction", "q-waae", "--critic-iters", "1",
    )  # fmt: skip
    return save_dir


# 1. a dimension constant over the train split carries nothing when decoding


def test_a_constant_train_dimension_is_zero_whatever_its_value():
    mean, std = torch.tensor([1.0, 5.0]), torch.tensor([2.0, 0.0])
    normalizer = FeatureNormalizer("standardize", 2, mean, std)
    normalized = normalizer(torch.tensor([[3.0, 1e6], [1.0, -7]]))
    torch.testing.assert_close(normalized, torch.tensor([[1.0, 0.0], [0.0, 0.0]]))


def test_decoding_ignores_the_test_values_of_a_constant_train_dimension(tiny_corpus, tmp_path):
    features = copy_features(tiny_corpus, tmp_path / "features")
    train_rows = np.load(features / "train.npy")
    train_rows[:, 3] = 0.25  # constant over the train split
    np.save(features / "train.npy", train_rows)
    log = train_small(tiny_corpus, tmp_path / "run", "--max-update", "6", features=features)
    assert "1 of 16 feature dimensions are constant" in log
    checkpoint = tmp_path / "run" / "checkpoint_last.pt"
    wild = copy_features(tiny_corpus, tmp_path / "wild")
    test = np.load(wild / "test.npy")
    test[:, 3] = np.random.RandomState(0).uniform(-1e3, 1e3, len(test))  # ~2.5e6 std units off
    np.save(wild / "test.npy", test)
    assert decode(tiny_corpus, checkpoint, features=wild) == decode(
        tiny_corpus, checkpoint, features=features
    )


# 3. the feature directory is stored absolute, and its use is logged


def test_a_relative_feature_directory_is_stored_absolute(tiny_corpus, tmp_path, monkeypatch):
    home = tmp_path / "home"
    copy_features(tiny_corpus, home / "feats")
    monkeypatch.chdir(home)
    train_small(tiny_corpus, home / "run", "--max-update", "2", features="feats")
    state = torch.load(home / "run" / "checkpoint_last.pt", weights_only=True)
    assert state["task_state"]["visual_features_dir"] == str(home / "feats")
    elsewhere = tmp_path / "elsewhere"
    decoy = copy_features(tiny_corpus, elsewhere / "feats")
    np.save(decoy / "test.npy", np.zeros((SPLIT_SIZES["test"], FEATURE_DIM), np.float32))
    monkeypatch.chdir(elsewhere)  # has a feats/ of its own: the stored absolute path wins
    output = generate(
        *task_flags(tiny_corpus), "--path", str(home / "run" / "checkpoint_last.pt"),
        "--gen-subset", "test", "--beam", "2",
    )  # fmt: skip
    assert f"directory stored in the checkpoint: {home / 'feats'}" in output
    assert f"from {home / 'feats' / 'test.npy'}" in output


# 4. a resumed run keeps what it was trained on


def test_resuming_on_other_train_features_is_refused_unless_accepted(
    trained, tiny_corpus, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    same = copy_features(tiny_corpus, tmp_path / "same")  # same content, other directory
    other = copy_features(tiny_corpus, tmp_path / "other")
    np.save(other / "train.npy", 3 * np.load(other / "train.npy") + 1)
    stored = torch.load(run / "checkpoint_last.pt", weights_only=True)["task_state"]
    with pytest.raises(VisualFeatureError, match="trained on other features") as error:
        train_small(tiny_corpus, run, "--max-epoch", "3", features=other)
    assert "visual_feature_stats" in str(error.value) and str(other) in str(error.value)
    assert "--accept-new-train-features" in str(error.value)
    common = ["--criterion", "adversarial_reconstruction", "--reconstruction", "q-waae"]
    log = train_small(
        tiny_corpus, run, "--max-epoch", "3", *common, "--critic-iters", "1",
        "--accept-new-train-features", features=other,
    )  # fmt: skip
    assert "--accept-new-train-features: visual_feature_stats" in log
    resumed = torch.load(run / "checkpoint_last.pt", weights_only=True)["task_state"]
    for kept, original in zip(
        resumed["visual_feature_stats"], stored["visual_feature_stats"], strict=True
    ):
        torch.testing.assert_close(kept, original)  # normalized as the model was trained
    train_small(tiny_corpus, run, "--max-epoch", "4", *common, "--critic-iters", "1", features=same)


# 5. features of another kind than the model was trained on


def test_spatial_features_for_a_pooled_model_are_refused(trained, tiny_corpus, tmp_path):
    spatial = tmp_path / "spatial"
    spatial.mkdir()
    np.save(spatial / "test.npy", np.ones((SPLIT_SIZES["test"], 4, FEATURE_DIM), np.float32))
    state = torch.load(trained / "checkpoint_last.pt", weights_only=True)["task_state"]
    assert state["visual_feature_shape"] == [FEATURE_DIM]
    with pytest.raises(VisualFeatureError, match="holds spatial .* trained on pooled"):
        decode(tiny_corpus, trained / "checkpoint_last.pt", features=spatial)


# 7. one normalization, whatever path a sample takes


def test_a_hand_built_net_input_with_raw_features_translates_as_the_dataset_does(
    trained, tiny_corpus
):
    from fairseq import checkpoint_utils

    task, cfg = setup_task(tiny_corpus / "bin", "--visual-features", str(tiny_corpus / "features"))
    models, _ = checkpoint_utils.load_model_ensemble(
        [str(trained / "checkpoint_last.pt")], task=task
    )
    task.load_dataset("test")
    dataset = task.dataset("test")
    sample = dataset.collater([dataset[i] for i in range(8)])
    generator = task.build_generator(models, cfg.generation)
    via_dataset = task.inference_step(generator, models, sample)
    raw = torch.from_numpy(np.load(tiny_corpus / "features" / "test.npy")[sample["id"].numpy()])
    net_input = {key: sample["net_input"][key] for key in ("src_tokens", "src_lengths")}
    by_hand = task.inference_step(
        generator, models, {"net_input": {**net_input, "visual_features": raw}}
    )
    for a, b in zip(via_dataset, by_hand, strict=True):
        assert torch.equal(a[0]["tokens"], b[0]["tokens"])
        assert a[0]["score"] == pytest.approx(b[0]["score"])
    # normalized once, by the model's encoder: not by the task, not twice
    normalizer = models[0].encoder.visual_input.normalizer
    once = normalizer(raw)
    torch.testing.assert_close(models[0].encoder.visual_input(raw), once)
    assert not torch.allclose(normalizer(once), once)


# 9. a damaged checkpoint is named, with a way out


def test_a_truncated_checkpoint_is_named_with_the_intact_one_to_resume_from(
    trained, tiny_corpus, tmp_path
):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    last = run / "checkpoint_last.pt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="damaged") as error:
        train_small(tiny_corpus, run, "--max-epoch", "3")
    assert str(last) in str(error.value)
    assert f"--restore-file {run / 'checkpoint2.pt'}" in str(error.value)
    with pytest.raises(CheckpointError, match=f"checkpoint {last} cannot be read"):
        decode(tiny_corpus, last)


def test_the_newest_training_state_is_the_one_suggested(tmp_path):
    """fairseq names mid-epoch checkpoints checkpoint_E_U.pt: they come after the earlier
    epochs' and before their own epoch's end, whatever the files' times."""
    names = ["checkpoint_best.pt", "checkpoint_1_50.pt", "checkpoint1.pt", "checkpoint_2_150.pt",
             "checkpoint_2_200.pt", "checkpoint2.pt", "checkpoint_10_900.pt"]  # fmt: skip
    for name in reversed(names):  # the oldest file last
        (tmp_path / name).touch()
    paths = [str(tmp_path / name) for name in names]
    assert sorted(reversed(paths), key=resume_order) == paths


# 10. half precision on the CPU


@pytest.mark.parametrize("flags", [["--fp16"], ["--bf16"], ["--amp"]])
def test_half_precision_on_the_cpu_says_what_works(tiny_corpus, tmp_path, flags):
    with pytest.raises(ValueError, match=f"{flags[0]} on the CPU.*train and decode in float32"):
        train_small(tiny_corpus, tmp_path, "--max-update", "1", *flags)


# 11. resuming with another criterion: the plugin's message is the last line


def test_resuming_with_another_reconstruction_names_the_cause_last(trained, tiny_corpus, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    with pytest.raises(CriterionStateMismatch, match="mse has none"):
        train_small(
            tiny_corpus, run, "--max-epoch", "3", "--criterion", "adversarial_reconstruction",
            "--reconstruction", "mse",
        )  # fmt: skip
    done = subprocess.run(
        [fairseq_cli("train"), *task_flags(tiny_corpus, tiny_corpus / "features"), "--arch",
         "cgru_mmt_small", *SMALL, "--optimizer", "adam", "--batch-size", "16", "--cpu",
         "--save-dir", str(run), "--max-epoch", "3", "--criterion", "adversarial_reconstruction",
         "--reconstruction", "mse"],
        capture_output=True, text=True, env=cli_env(),
    )  # fmt: skip
    last_line = done.stderr.strip().splitlines()[-1]
    assert done.returncode != 0
    assert last_line.startswith("fairseq_mmt_adv.criterions.adversarial_reconstruction.")
    assert "does not fit --reconstruction mse" in last_line


# 13. fairseq-interactive: where image features come from


def test_fairseq_interactive_points_a_multimodal_model_to_the_translator(
    trained, tiny_corpus, tmp_path
):
    source = tmp_path / "input.en"
    source.write_text("w1 w2 w3\n")
    parser = options.get_interactive_generation_parser()
    args = options.parse_args_and_arch(
        parser,
        [*task_flags(tiny_corpus, tiny_corpus / "features"), "--path",
         str(trained / "checkpoint_last.pt"), "--input", str(source), "--cpu", "--beam", "2"],
    )  # fmt: skip
    with captured_log(), pytest.raises(ValueError, match="fairseq-interactive cannot carry them"):
        interactive_cli.main(convert_namespace_to_omegaconf(args))


# 14. dictionaries that are not the model's (another fairseq-preprocess run, other data)


def swapped_dictionary(corpus: Path, directory: Path, drop_last: bool = False) -> Path:
    """The binarized corpus with ``dict.de.txt`` in another order (or one line shorter)."""
    shutil.copytree(corpus / "bin", directory)
    lines = (directory / "dict.de.txt").read_text().splitlines()
    lines = lines[:-1] if drop_last else [lines[1], lines[0], *lines[2:]]
    (directory / "dict.de.txt").write_text("\n".join(lines) + "\n")
    return directory


@pytest.mark.parametrize("drop_last", [False, True], ids=["reordered", "one-line-shorter"])
def test_a_checkpoint_refuses_dictionaries_that_are_not_its_own(
    trained, tiny_corpus, tmp_path, drop_last
):
    data = swapped_dictionary(tiny_corpus, tmp_path / "bin", drop_last)
    checkpoint = trained / "checkpoint_last.pt"
    flags = ["--user-dir", PACKAGE_DIR, "--task", "multimodal_translation"]
    flags += ["--visual-features", str(tiny_corpus / "features"), "--path", str(checkpoint)]
    with pytest.raises(ValueError, match="trained with other dictionaries") as error:
        generate(str(data), *flags, "--gen-subset", "test", "--beam", "2")
    assert f"{data / 'dict.de.txt'} (target)" in str(error.value)
    assert str(checkpoint) in str(error.value)
    how = "entries, the model's" if drop_last else "in another order"
    assert how in str(error.value)
    # resuming on them: refused before fairseq loads the model
    run = tmp_path / "run"
    shutil.copytree(trained, run)
    with pytest.raises(ValueError, match="trained with other dictionaries"):
        train(
            str(data), *flags[:-2], "--arch", "cgru_mmt_small", *SMALL, "--optimizer", "adam",
            "--batch-size", "16", "--save-dir", str(run), "--max-epoch", "3",
            "--criterion", "adversarial_reconstruction", "--reconstruction", "q-waae",
        )  # fmt: skip
    assert decode(tiny_corpus, checkpoint)  # its own dictionaries still decode
