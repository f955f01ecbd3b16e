"""Stock fairseq CLIs end to end: preprocess -> train -> generate (beam, ensemble) -> BLEU."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import SPLIT_SIZES, cli_env, task_flags
from helpers import generate as generate_cli
from helpers import train as train_cli

from fairseq_mmt_adv.data.feature_files import VisualFeatureError
from fairseq_mmt_adv.recipes.checkpoint_average import AveragingError, average_checkpoints
from fairseq_mmt_adv.recipes.demo_corpus import DEFAULT_SIZES

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import average_checkpoints as average_script  # noqa: E402


def run(*command: str) -> str:
    done = subprocess.run(command, capture_output=True, text=True, env=cli_env())
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """A cgru_mmt_small model trained 3 epochs (7 updates each), a checkpoint per epoch, with
    BLEU validation through fairseq's own generator."""
    save_dir = tmp_path_factory.mktemp("checkpoints")
    log = train_cli(
        *task_flags(tiny_corpus, tiny_corpus / "features"),
        "--arch",
        "cgru_mmt_small",
        "--optimizer",
        "adam",
        "--lr",
        "0.003",
        "--batch-size",
        "16",
        "--max-epoch",
        "3",
        "--save-dir",
        str(save_dir),
        "--seed",
        "2",
        "--eval-bleu",
        "--eval-bleu-args",
        '{"beam": 2}',
        "--required-batch-size-multiple",
        "8",
    )
    (save_dir / "train.log").write_text(log)
    return save_dir


def test_validation_bleu_runs_beam_search_on_every_valid_sentence(trained):
    log = (trained / "train.log").read_text()
    valid = [line for line in log.splitlines() if "valid on 'valid' subset" in line]
    assert len(valid) == 3 and all(re.search(r"\| bleu \d+(\.\d+)? \|", v) for v in valid)
    # 37 valid sentences, batches of at most 16 in multiples of 8: all 37 are validated
    assert all(re.search(r"\| bsz 12\.3 \|", v) for v in valid), valid


def generate(corpus: Path, *extra: str) -> str:
    """fairseq-generate (in-process) of the test split; its output and log."""
    return generate_cli(
        *task_flags(corpus),
        "--gen-subset",
        "test",
        "--batch-size",
        "16",
        *extra,
    )


def hypotheses(output: str) -> list[int]:
    return sorted(int(m) for m in re.findall(r"^H-(\d+)\t", output, flags=re.M))


def test_beam_search_decodes_every_sentence_and_reports_bleu(tiny_corpus, trained):
    output = generate(
        tiny_corpus,
        "--path",
        str(trained / "checkpoint_last.pt"),
        "--beam",
        "5",
        "--visual-features",
        str(tiny_corpus / "features"),
    )
    # 61 sentences at --batch-size 16: stock fairseq 0.12 would decode 56
    assert hypotheses(output) == list(range(SPLIT_SIZES["test"]))
    assert re.search(r"BLEU4 = \d+\.\d+", output)


def test_ensemble_of_two_checkpoints_decodes(tiny_corpus, trained):
    paths = f"{trained / 'checkpoint1.pt'}:{trained / 'checkpoint3.pt'}"
    output = generate(tiny_corpus, "--path", paths, "--beam", "5")
    assert hypotheses(output) == list(range(SPLIT_SIZES["test"]))


def test_averaged_checkpoint_is_the_mean_model_and_decodes(tiny_corpus, trained, tmp_path):
    inputs = [trained / f"checkpoint{epoch}.pt" for epoch in (1, 2, 3)]
    output = tmp_path / "checkpoint_avg.pt"
    # the script's main() in-process, as fairseq's tests run its CLIs
    assert average_script.main(["--inputs", *map(str, inputs), "--output", str(output)]) == 0
    models = [torch.load(path, map_location="cpu", weights_only=False)["model"] for path in inputs]
    averaged = torch.load(output, map_location="cpu")  # the plugin's safe globals suffice
    assert "last_optimizer_state" not in averaged
    for name, tensor in averaged["model"].items():
        expected = sum(model[name].double() for model in models) / 3
        torch.testing.assert_close(tensor.double(), expected, rtol=1e-6, atol=1e-7)
    assert not torch.equal(averaged["model"][name], models[-1][name])  # it did average
    decoded = generate(tiny_corpus, "--path", str(output), "--beam", "2")
    assert hypotheses(decoded) == list(range(SPLIT_SIZES["test"]))


def test_averaging_refuses_checkpoints_of_other_shapes(trained, tmp_path, capsys):
    state = torch.load(trained / "checkpoint1.pt", map_location="cpu", weights_only=False)
    name = next(iter(state["model"]))
    state["model"][name] = state["model"][name][:1]
    other = tmp_path / "other.pt"
    torch.save(state, other)
    argv = ["--inputs", str(other), str(trained / "checkpoint2.pt")]
    assert average_script.main([*argv, "--output", str(tmp_path / "avg.pt")]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith("average_checkpoints: error: ")
    assert f"{name} is " in stderr and str(other) in stderr
    assert not (tmp_path / "avg.pt").exists()


@pytest.mark.parametrize(
    "section, key, value",
    [("criterion", "sentence_avg", True), ("model", "visual_fusion", "none")],
)
def test_averaging_refuses_checkpoints_of_other_systems(trained, tmp_path, section, key, value):
    """Same shapes, another model or criterion configuration (e.g. a q-waae and a g-wgan run):
    refused, naming the first difference, instead of decoding with the last input's."""
    state = torch.load(trained / "checkpoint1.pt", map_location="cpu", weights_only=False)
    state["cfg"][section][key] = value
    other = tmp_path / "other.pt"
    torch.save(state, other)
    with pytest.raises(AveragingError) as error:
        average_checkpoints([other, trained / "checkpoint2.pt"])
    assert f"{section}.{key} is {value!r} here" in str(error.value)
    assert str(other) in str(error.value)
    same = average_checkpoints([trained / "checkpoint1.pt", trained / "checkpoint2.pt"])
    assert same["cfg"][section][key] != value


def test_features_can_move_and_the_flag_overrides_the_stored_directory(
    tiny_corpus, trained, tmp_path
):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_corpus / "features", moved)
    checkpoint = tmp_path / "model.pt"
    shutil.copy(trained / "checkpoint_last.pt", checkpoint)
    stored = generate(tiny_corpus, "--path", str(checkpoint), "--beam", "2")
    overridden = generate(
        tiny_corpus, "--path", str(checkpoint), "--beam", "2", "--visual-features", str(moved)
    )
    assert f"from {moved}/test.npy" in overridden
    assert f"from {tiny_corpus / 'features'}/test.npy" in stored
    assert hypotheses(overridden) == hypotheses(stored)

    nowhere = tmp_path / "nowhere"
    with pytest.raises(VisualFeatureError, match=re.escape(f"{nowhere}/test.npy does not exist")):
        generate(tiny_corpus, "--path", str(checkpoint), "--visual-features", str(nowhere))


def test_visual_model_beats_text_only_on_the_demo_corpus(tmp_path):
    """The demo corpus needs the image for its ambiguous nouns: ctx-mul (cGRU) and gated
    (Transformer) must use it, and the text-only model (the Transformer's, the quicker of the
    two families') cannot. On 1200 of the demo's 4000 training sentences, the cGRU at twice the
    demo's learning rate; one job, one thread: the test suite's other worker has the other core."""
    out = tmp_path / "demo"
    output = run(
        sys.executable,
        str(SCRIPTS / "run_demo.py"),
        *("--out", str(out), "--systems", "transformer-text-only,ctx-mul,gated,finetuned-gated"),
        *("--train-sentences", "1200", "--epochs", "8", "--lr", "0.006"),
        *("--transformer-epochs", "3", "--jobs", "1", "--threads", "1", "--curve-interval", "30"),
    )
    results = json.loads((out / "results.json").read_text())
    systems = ["transformer-text-only", "ctx-mul", "gated", "finetuned-gated"]
    assert [r["system"] for r in results] == systems
    results = {r["system"]: r for r in results}
    text = results["transformer-text-only"]
    # the gated fusion, from scratch and fine-tuned from the text-only model: the updates each
    # needs to get the ambiguous words right, measured on checkpoints 30 updates apart
    assert "updates to 95%" in output and "finetuned-gated: fine-tuned from" in output
    for name in ("gated", "finetuned-gated"):
        curve = json.loads((out / name / "learning-curve.json").read_text())["curve"]
        assert [updates for updates, _ in curve][:3] == [30, 60, 90]
        assert results[name]["updates_to_learn"] == next(u for u, a in curve if a >= 95)
        assert not list((out / name).glob("checkpoint_*_*.pt"))  # scored, then deleted
    tuned = torch.load(out / "finetuned-gated" / "checkpoint_best.pt", weights_only=True)
    assert tuned["cfg"]["checkpoint"]["finetune_from_model"].endswith(
        "transformer-text-only/checkpoint_best.pt"
    )
    for visual in (results["ctx-mul"], results["gated"], results["finetuned-gated"]):
        assert visual["bleu"] > text["bleu"] + 3, results
        assert visual["ambiguous_accuracy"] > 85, results
        assert visual["contrastive_accuracy"] > 75, results  # the new column
    assert text["ambiguous_accuracy"] < 70, results
    assert text["contrastive_accuracy"] == 50.0, results  # a text-only model: exactly half
    assert len((out / "corpus" / "raw" / "train.en").read_text().splitlines()) == 1200
    gated_log = (out / "gated" / "train.log").read_text()
    assert "transformer_mmt_tiny" in gated_log and "epoch 003" in gated_log
    # each step is the console script's own process: it imports the plugin once (--user-dir),
    # its log reads as the console script's, and nothing of multiprocessing's leaks
    assert re.search(
        r"^\d{4}-\d\d-\d\d [\d:]{8} \| INFO \| fairseq_cli\.train \| ", gated_log, re.M
    )
    assert "has already been imported" not in gated_log
    assert "leaked" not in output, output[-3000:]


def test_the_demo_refuses_an_empty_training_corpus(capsys):
    import run_demo

    with pytest.raises(SystemExit):
        run_demo.parse_args(["--train-sentences", "0"])
    assert "--train-sentences must be at least 1" in capsys.readouterr().err
    assert run_demo.parse_args([]).train_sentences == DEFAULT_SIZES["train"]
