"""examples/multi30k: train.sh and experiments.sh (dry runs), multi_seed.py, plot_curves.py."""

import importlib.util
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from helpers import REGISTERED

from fairseq_mmt_adv.recipes import systems

RECIPES = Path(__file__).resolve().parents[1] / "examples" / "multi30k"
TRAIN = RECIPES / "train.sh"
EXPERIMENTS = RECIPES / "experiments.sh"


def load(name: str) -> ModuleType:
    """A recipe module by path (examples/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


multi_seed = load("multi_seed")
plot_curves = load("plot_curves")


def bash(
    script: Path, *args: str, env: dict | None = None, ok: bool = True, stdin: str = ""
) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATA", "SYSTEM", "SEED"}}
    clean.setdefault("PYTHON", sys.executable)  # the scripts' Python: the plugin's environment
    clean.pop("SYSTEMS_TABLE", None)
    done = subprocess.run(
        ["bash", str(script), *args],
        capture_output=True,
        text=True,
        env={**clean, **(env or {})},
        input=stdin,
    )
    assert (done.returncode == 0) == ok, done.stdout + done.stderr
    return done.stdout + done.stderr


def train_commands(output: str) -> list[str]:
    return [line for line in output.splitlines() if "fairseq-train " in line]


def flag(command: str, name: str) -> str:
    match = re.search(rf"{name} (\S+)", command)
    assert match, f"{name} not in {command}"
    return match[1]


# ---------------------------------------------------------------- train.sh

COMMON = [
    "--task multimodal_translation",
    "--visual-features /data/en-de",
    "--arch cgru_mmt",
    "--optimizer adam --lr 4e-4 --clip-norm 1 --batch-size 32",
    "--eval-bleu --eval-bleu-args '{\"beam\": 5}' --eval-bleu-remove-bpe",
    "--best-checkpoint-metric bleu --maximize-best-checkpoint-metric --patience 5",
    "--seed 3",
    "--log-format json",
]
CRITIC = "--lambda-gp 10 --critic-lr 0.0002 --critic-betas '(0.5, 0.9)' --critic-iters 5"
# train.sh's systems: the cGRU ones and the paper's aliases (tests/test_systems.py checks their
# flags against the paper's); each must reach fairseq-train whole and in order.
TRAIN_SYSTEMS = [*systems.names("cgru"), *systems.ALIASES]


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> dict:
    """The environment of train.sh calls that read their system's settings from one table of
    every system (train.sh --systems-table: one Python process, not one per call)."""
    path = tmp_path_factory.mktemp("systems") / "table.tsv"
    runs = [f"--system {name}" for name in [*TRAIN_SYSTEMS, *systems.names("transformer")]]
    runs += ["--system g-wgan --noise-dim 512 --lambda-a 0.5", "--system g-wgan --noise-dim 512"]
    runs += ["--system finetuned-gated+mse --freeze-text-model"]
    path.write_text(bash(TRAIN, "--systems-table", stdin="\n".join(runs)))
    return {"SYSTEMS_TABLE": str(path)}


def quoted(flags: list[str]) -> str:
    return " ".join(f"'{word}'" if " " in word else word for word in flags)


@pytest.mark.parametrize("system", TRAIN_SYSTEMS)
def test_train_dry_run_flags_per_system(system: str, table: dict) -> None:
    env = {"DATA": "/data/en-de", **table}
    out = bash(TRAIN, "--system", system, "--seed", "3", "--dry-run", env=env)
    [command] = train_commands(out)
    assert command.split()[0].endswith("fairseq-train") and command.split()[1] == "/data/en-de"
    for expected in [*COMMON, "--arch cgru_mmt " + quoted(systems.flags(system))]:
        assert expected in command, f"{expected!r} not in {command}"
    assert (CRITIC in command) == systems.get(system).adversarial
    assert re.search(rf"--save-dir checkpoints/{re.escape(system)}(_\S+)?/seed3 ", command)


# Wu et al. (2021)'s optimisation as fairseq-train parses it (the lead's hand-run command, with
# one process of 4096 tokens instead of two of 2048).
WU_ET_AL = {
    "arch": "transformer_mmt_tiny",
    "dropout": 0.3,
    "share_all_embeddings": True,
    "optimizer": "adam",
    "adam_betas": "(0.9, 0.98)",
    "clip_norm": 0.0,
    "lr": [0.005],
    "lr_scheduler": "inverse_sqrt",
    "warmup_updates": 2000,
    "warmup_init_lr": 1e-07,
    "label_smoothing": 0.1,
    "max_tokens": 4096,
    "max_update": 8000,
    "keep_last_epochs": 10,
    "no_epoch_checkpoints": False,
    "seed": 2,
}
# The same recipe fine-tuning a text model (train.sh's TRANSFORMER_FINETUNING): a tenth of the
# learning rate, a quarter of the warm-up and of the updates.
FINETUNING = {**WU_ET_AL, "lr": [0.0005], "warmup_updates": 500, "max_update": 2000}


def parse_train_command(command: str):
    """fairseq-train's arguments of a printed command (fairseq's own parser)."""
    from fairseq import options

    argv = shlex.split(command)[1:]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


@pytest.mark.parametrize("system", systems.names("transformer"))
def test_train_dry_run_of_every_transformer_system(system: str, table: dict) -> None:
    env = {"DATA": "/data/j", **table}
    out = bash(TRAIN, "--system", system, "--seed", "2", "--dry-run", env=env)
    [command] = train_commands(out)
    args = parse_train_command(command)
    expected = systems.get(system)
    recipe = WU_ET_AL if expected.start_from is None else FINETUNING
    assert {key: getattr(args, key) for key in WU_ET_AL} == recipe
    # the start: the checkpoint that decoding uses of the text-only run of the same seed
    start = expected.start_from and f"checkpoints/{expected.start_from}/seed2/checkpoint_avg.pt"
    assert args.finetune_from_model == start
    starts = f"# starts from {start} (system transformer-text-only)\n"
    assert (starts in out) == (start is not None)
    assert args.visual_fusion == expected.fusion
    assert args.criterion == (
        "label_smoothed_cross_entropy"
        if expected.reconstruction is None
        else "adversarial_reconstruction"
    )
    assert getattr(args, "reconstruction", None) == expected.reconstruction
    assert (CRITIC in command) == expected.adversarial
    assert "--eval-bleu" not in command and "--patience" not in command  # 8000 updates, no stop
    save_dir = flag(command, "--save-dir")
    assert re.fullmatch(rf"checkpoints/{re.escape(system)}(_\S+)?/seed2", save_dir)
    [average] = [line for line in out.splitlines() if "average_checkpoints.py" in line]
    assert average.endswith(
        f"--last-epochs 10 --run-dir {save_dir} --output {save_dir}/checkpoint_avg.pt"
    )
    checkpoint = bash(TRAIN, "--system", system, "--print-checkpoint", env=env)
    assert checkpoint.strip() == f"{save_dir.replace('seed2', 'seed1')}/checkpoint_avg.pt"


TWO_RANKS = (
    "--cpu --max-tokens 2048 --distributed-backend gloo --ddp-backend legacy_ddp "
    "--distributed-world-size 2 --distributed-init-method tcp://127.0.0.1:29519 "
    "--distributed-no-spawn --distributed-rank"
)


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_two_rank_transformer_run_averages_on_rank_0_only(rank: str, table: dict) -> None:
    """The README's two-rank CPU variant: 2 x 2048 tokens, rank 0 saves and averages."""
    extra = [*TWO_RANKS.split(), rank]
    env = {"DATA": "/data/j", **table}
    out = bash(TRAIN, "--system", "gated", "--dry-run", "--", *extra, env=env)
    [command] = train_commands(out)
    args = parse_train_command(command)
    assert (args.max_tokens, args.distributed_world_size, args.distributed_rank) == (
        2048,
        2,
        int(rank),
    )
    assert args.share_all_embeddings and args.lr == [0.005] and args.max_update == 8000
    assert ("average_checkpoints.py" in out) == (rank == "0")


def test_the_cgru_recipe_decodes_its_best_checkpoint(table: dict) -> None:
    out = bash(TRAIN, "--system", "mse", "--dry-run", env={"DATA": "/d", **table})
    assert "average_checkpoints" not in out and "--keep-last-epochs" not in out
    checkpoint = bash(TRAIN, "--system", "mse", "--print-checkpoint", env={"DATA": "/d", **table})
    assert checkpoint.strip() == "checkpoints/mse_lr0.2/seed1/checkpoint_best.pt"


def test_a_finetuned_run_starts_from_the_text_only_run_that_train_sh_names(table) -> None:
    """--finetune-from-model: train.sh --system transformer-text-only --print-checkpoint of the
    same data, seed and CHECKPOINTS; --freeze-text-model (or FREEZE_TEXT_MODEL=1) freezes it."""
    env = {"DATA": "/d", "CHECKPOINTS": "/ck/en-de", **table}
    start = bash(
        TRAIN, "--system", "transformer-text-only", "--seed", "4", "--print-checkpoint", env=env
    )
    assert start == "/ck/en-de/transformer-text-only/seed4/checkpoint_avg.pt\n"
    for options, extra_env in (
        (["--freeze-text-model"], {}),
        ([], {"FREEZE_TEXT_MODEL": "1"}),
    ):
        run = ["--system", "finetuned-gated+mse", "--seed", "4", *options, "--dry-run"]
        out = bash(TRAIN, *run, env={**env, **extra_env})
        [command] = train_commands(out)
        assert "--freeze-text-model --criterion adversarial_reconstruction " in command
        assert f" --finetune-from-model {start.strip()} --share-all-embeddings " in command
        assert flag(command, "--save-dir") == "/ck/en-de/finetuned-gated+mse_lr0.2_frozen/seed4"
        assert f"# starts from {start.strip()} (system transformer-text-only)\n" in out
        assert out.index("# starts from") < out.index(command)
    unfrozen = bash(TRAIN, "--system", "finetuned-gated+mse", "--dry-run", env=env)
    assert "--freeze-text-model" not in unfrozen and "/finetuned-gated+mse_lr0.2/seed1 " in unfrozen
    refused = bash(
        TRAIN, "--system", "gated", "--freeze-text-model", "--dry-run", env=env, ok=False
    )
    assert (
        "train.sh: error: --freeze-text-model is for the systems fine-tuned from a text model"
        in (refused)
    )
    assert "not gated, which trains from scratch: drop --freeze-text-model" in refused
    out = bash(
        TRAIN, "--system", "gated", "--dry-run", env={**env, "FREEZE_TEXT_MODEL": "yes"}, ok=False
    )
    assert "FREEZE_TEXT_MODEL must be 1 (--freeze-text-model) or 0, not 'yes'" in out


def fake_epoch_checkpoints(run: Path, epochs) -> None:
    """Checkpoints whose one parameter is the epoch number (and a best and a last)."""
    import torch

    run.mkdir(parents=True, exist_ok=True)
    for epoch in epochs:
        torch.save({"model": {"w": torch.full((2,), float(epoch))}}, run / f"checkpoint{epoch}.pt")
    for name in ("checkpoint_best.pt", "checkpoint_last.pt"):
        torch.save({"model": {"w": torch.full((2,), 100.0)}}, run / name)


def test_the_averaging_step_averages_the_last_ten_epochs(tmp_path: Path, capsys, table) -> None:
    import torch

    run = tmp_path / "run"
    options = ["--data", "/d", "--system", "gated", "--save-dir", str(run), "--dry-run"]
    out = bash(TRAIN, *options, env=table)
    [average] = [line for line in out.splitlines() if "average_checkpoints.py" in line]
    python, script, *argv = shlex.split(average)
    assert Path(script) == RECIPES.parents[1] / "scripts" / "average_checkpoints.py"
    spec = importlib.util.spec_from_file_location("average_checkpoints_script", script)
    average_checkpoints = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(average_checkpoints)  # in-process: torch is loaded already
    fake_epoch_checkpoints(run, range(1, 13))
    assert average_checkpoints.main(argv) == 0
    assert "averaged 10 checkpoints (checkpoint3.pt " in capsys.readouterr().out
    averaged = torch.load(run / "checkpoint_avg.pt")["model"]["w"]
    assert averaged.tolist() == [7.5, 7.5]  # the mean of epochs 3..12
    for epoch in range(1, 13):
        (run / f"checkpoint{epoch}.pt").unlink()
    assert average_checkpoints.main(argv) == 2
    error = capsys.readouterr().err
    assert f"{run} has no epoch checkpoints (checkpointN.pt): train with --keep-last" in error


def fake_trainer(tmp_path: Path, data: Path) -> dict:
    """A stand-in fairseq-train that puts four epoch checkpoints into its --save-dir."""
    made = tmp_path / "made"
    fake_epoch_checkpoints(made, range(1, 5))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "fairseq-train").write_text(
        "#!/usr/bin/env bash\nwhile [[ $1 != --save-dir ]]; do shift; done\n"
        f'cp {made}/checkpoint[0-9]*.pt "$2"\n'
    )
    (bin_dir / "fairseq-train").chmod(0o755)
    (data / "features").mkdir(parents=True)
    (data / "features" / "train.npy").write_bytes(b"")
    return {"FAIRSEQ_BIN": str(bin_dir), "DATA": str(data), "FEATURES": str(data / "features")}


def test_a_transformer_run_ends_with_the_average(tmp_path: Path, table: dict) -> None:
    import torch

    data = tmp_path / "data"
    env = {**fake_trainer(tmp_path, data), **table}
    for lang in ("en", "de"):
        (data / f"dict.{lang}.txt").write_text("hund 3\nein 2\n")  # joined: one dictionary
    run = tmp_path / "run"
    out = bash(TRAIN, "--system", "selective-attn+mse", "--save-dir", str(run), env=env)
    assert "averaged 4 checkpoints (checkpoint1.pt checkpoint2.pt" in out
    assert torch.load(run / "checkpoint_avg.pt")["model"]["w"].tolist() == [2.5, 2.5]
    assert (run / "DONE").is_file() and (run / "dict.de.txt").is_file()


def test_a_finetuned_run_needs_its_start_checkpoint(tmp_path: Path, table: dict) -> None:
    """Refused before fairseq-train starts when the text-only run is not there; a run that
    resumes (checkpoint_last.pt) does not read it."""
    data = tmp_path / "data"
    env = {**fake_trainer(tmp_path, data), "CHECKPOINTS": str(tmp_path / "ck"), **table}
    for lang in ("en", "de"):
        (data / f"dict.{lang}.txt").write_text("hund 3\nein 2\n")
    run = tmp_path / "ck" / "finetuned-selective-attn" / "seed3"
    options = ["--system", "finetuned-selective-attn", "--seed", "3"]
    start = tmp_path / "ck" / "transformer-text-only" / "seed3" / "checkpoint_avg.pt"
    out = bash(TRAIN, *options, env=env, ok=False)
    assert out == (
        f"train.sh: error: finetuned-selective-attn starts from {start}, which does not exist: "
        "train --system transformer-text-only --seed 3 first (with the same --data and "
        "CHECKPOINTS)\n"
    )
    assert not run.exists()  # neither the run's directory nor fairseq-train
    start.parent.mkdir(parents=True)
    start.write_bytes(b"")
    out = bash(TRAIN, *options, env=env)
    assert (run / "DONE").is_file() and (run / "checkpoint_avg.pt").is_file()
    assert f"--finetune-from-model {start} " in (run / "command.sh").read_text()
    start.unlink()
    assert "finished before" in bash(TRAIN, *options, env=env)  # DONE: not asked for the start
    (run / "DONE").unlink()
    assert "which does not exist" in bash(TRAIN, *options, env=env, ok=False)
    (run / "checkpoint_last.pt").write_bytes(b"")
    bash(TRAIN, *options, env=env)  # a resume, which fairseq-train starts from checkpoint_last.pt
    assert (run / "DONE").is_file()


def test_the_transformer_recipe_needs_a_joined_dictionary(tmp_path: Path, table: dict) -> None:
    data = tmp_path / "data"
    env = {**fake_trainer(tmp_path, data), **table}
    (data / "dict.en.txt").write_text("dog 3\n")
    (data / "dict.de.txt").write_text("hund 3\n")
    message = (
        f"{data} has separate dictionaries (dict.de.txt dict.en.txt) but the Transformer recipe "
        "shares all embeddings: prepare the data with scripts/prepare-multi30k.sh "
        "--joined-dictionary"
    )
    out = bash(TRAIN, "--system", "gated", "--save-dir", str(tmp_path / "run"), env=env, ok=False)
    assert f"train.sh: error: {message}" in out
    assert not (tmp_path / "run").exists()
    assert f"# warning: {message}" in bash(TRAIN, "--system", "gated", "--dry-run", env=env)
    assert "warning" not in bash(TRAIN, "--system", "mse", "--dry-run", env=env)  # cGRU: fine


def test_train_options_environment_and_passthrough(table: dict) -> None:
    env = {"DATA": "/d", "SYSTEM": "g-wgan", "NOISE_DIM": "512", "CHECKPOINTS": "/ck", **table}
    out = bash(TRAIN, "--lambda-a", "0.5", "--dry-run", "--", "--max-epoch", "7", "--fp16", env=env)
    [command] = train_commands(out)
    assert "--reconstruction g-wgan --noise-dim 512 --lambda-r 0 --lambda-a 0.5" in command
    assert "--save-dir /ck/g-wgan_z512_lr0_la0.5/seed1 " in command
    assert command.endswith("--max-epoch 7 --fp16")  # after the recipe's flags: they win
    assert flag(command, "--visual-features") == "/d"  # features default to the data directory
    assert "--no-epoch-checkpoints" in command  # only checkpoint_best/last by default
    for kept in (
        bash(TRAIN, "--keep-epoch-checkpoints", "--dry-run", env=env),
        bash(TRAIN, "--dry-run", env={**env, "KEEP_EPOCH_CHECKPOINTS": "1"}),
    ):
        assert "--no-epoch-checkpoints" not in train_commands(kept)[0]
    options = ["--data", "/d", "--system", "q-waae", "--seed", "2", "--print-save-dir"]
    save_dir = bash(TRAIN, *options, env=table)
    assert save_dir.strip() == "checkpoints/q-waae_lr0.2_la0.2/seed2"


def test_train_is_immune_to_edits_of_the_script_while_it_runs(tmp_path: Path, table) -> None:
    """bash reads a script as it runs it; train.sh must not run anything twice (or anything
    new) when someone edits it during a long training."""
    recipes = tmp_path / "examples" / "multi30k"
    recipes.mkdir(parents=True)
    for name in ("train.sh", "common.sh"):
        shutil.copy(RECIPES / name, recipes / name)
    (tmp_path / "fairseq_mmt_adv").symlink_to(RECIPES.parents[1] / "fairseq_mmt_adv")
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "train.npy").write_bytes(b"")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "fairseq-train").write_text(
        "#!/usr/bin/env bash\n"
        f"echo run >> {tmp_path / 'runs.txt'}\n"
        # the edit, in place as editors and scripts that rewrite a file do (not sed -i, which
        # writes a new file): lines added near the top shift every byte after them
        f"cat {tmp_path / 'insert.txt'} {recipes / 'train.sh'} > {tmp_path / 'edited'}\n"
        f"cat {tmp_path / 'edited'} > {recipes / 'train.sh'}\n"
    )
    (fake_bin / "fairseq-train").chmod(0o755)
    (tmp_path / "insert.txt").write_text("# an added comment line\n" * 20)
    save_dir = tmp_path / "run"
    out = bash(
        recipes / "train.sh",
        "--data",
        str(tmp_path),
        "--features",
        str(tmp_path / "features"),
        "--save-dir",
        str(save_dir),
        env={"FAIRSEQ_BIN": str(fake_bin), **table},
    )
    assert "an added comment" in (recipes / "train.sh").read_text()  # edited mid-run
    assert (tmp_path / "runs.txt").read_text() == "run\n", out
    assert (save_dir / "DONE").is_file()


def test_train_rejects_bad_input_and_has_help() -> None:
    assert "Usage:" in bash(TRAIN, "--help")
    assert "--system must be one of" in bash(TRAIN, "--data", "d", "--system", "x", ok=False)
    assert "no lambda_r" in bash(
        TRAIN, "--data", "d", "--system", "baseline", "--lambda-r", "1", ok=False
    )
    assert "--data DIR" in bash(TRAIN, "--dry-run", ok=False)
    assert "fairseq-train flags go after" in bash(TRAIN, "--data", "d", "--max-epoch", ok=False)


def counting_python(tmp_path: Path) -> tuple[dict, Path]:
    """The environment of a PYTHON that writes its arguments to a file before it runs, and the
    file: which Python processes a script started."""
    calls = tmp_path / "python-calls.txt"
    python = tmp_path / "python"
    python.write_text(f'#!/usr/bin/env bash\necho "$*" >> {calls}\nexec {sys.executable} "$@"\n')
    python.chmod(0o755)
    calls.write_text("")
    return {"PYTHON": str(python), "FAIRSEQ_BIN": str(Path(sys.executable).parent)}, calls


def test_a_run_reads_its_row_of_the_table_as_systems_py_gives_it(tmp_path, table) -> None:
    env, calls = counting_python(tmp_path)
    run = ["--data", "/d", "--system", "g-wgan", "--noise-dim", "512", "--lambda-a", "0.5"]
    from_table = bash(TRAIN, *run, "--dry-run", env={**env, **table})
    assert calls.read_text() == ""  # no Python started
    assert from_table == bash(TRAIN, *run, "--dry-run", env=env)  # which asks systems.py
    assert calls.read_text().splitlines() == [
        "-m fairseq_mmt_adv.recipes.systems --tsv g-wgan --lambda-r= --lambda-a=0.5 "
        "--noise-dim=512 --label-smoothing=cgru= --label-smoothing=transformer=0.1 --prog train.sh"
    ]
    # a request that the table does not hold asks systems.py
    other = ["--data", "/d", "--system", "mse", "--lambda-r", "0.7", "--print-save-dir"]
    assert bash(TRAIN, *other, env={**env, **table}).strip() == "checkpoints/mse_lr0.7/seed1"
    assert len(calls.read_text().splitlines()) == 2
    missing = tmp_path / "none.tsv"
    out = bash(TRAIN, "--data", "/d", "--dry-run", env={"SYSTEMS_TABLE": str(missing)}, ok=False)
    assert f"SYSTEMS_TABLE={missing} does not exist: make it with train.sh --systems-table" in out


def test_the_systems_table_names_a_bad_run() -> None:
    runs = "--system mse\n--system q-waae --noise-dim 3\n"
    out = bash(TRAIN, "--systems-table", stdin=runs, ok=False)
    assert "train.sh: error: standard input line 2 (q-waae --lambda-r= --lambda-a=" in out
    assert "q-waae has no noise (--noise-dim is for g-wgan): drop --noise-dim" in out
    out = bash(TRAIN, "--systems-table", stdin="--system mse --beam 5\n", ok=False)
    assert "train.sh: error: unknown option '--beam'" in out


def test_help_shows_the_recipes_that_the_commands_use(table: dict) -> None:
    """The families' recipes live in train.sh's variables: --help prints them, the commands
    use them."""
    help_text = bash(TRAIN, "--help")
    blocks, block = [], []
    for line in help_text.splitlines():
        if line.startswith(" " * 17 + "--") or (block and line.startswith(" " * 17)):
            block.append(line.strip())
        elif block:
            blocks.append(" ".join(block))
            block = []
    cgru_help, transformer_help, finetuning_help = blocks
    for system, shown in (
        ("mse", cgru_help),
        ("finetuned-gated+mse --freeze-text-model", finetuning_help),
        ("gated+q-waae", transformer_help),
    ):
        arch, recipe = re.fullmatch(r"--arch (\S+) (.*)", shown).groups()
        out = bash(TRAIN, "--data", "/d", "--system", *system.split(), "--dry-run", env=table)
        [command] = train_commands(out)
        assert f"--arch {arch} " in command and f" {recipe} --seed 1 " in command, command
    assert "--lr 0.0005 " in finetuning_help and "--max-update 2000 " in finetuning_help
    assert " --finetune-from-model\n" in help_text
    smoothing = re.search(r"label smoothing (\S+) in either criterion", help_text)[1]
    epochs = re.search(r"the last (\d+)\s+epoch checkpoints averaged", help_text)[1]
    assert parse_train_command(command).label_smoothing == float(smoothing)
    assert f"--keep-last-epochs {epochs} " in command and f"--last-epochs {epochs} " in out


# ---------------------------------------------------------------- experiments.sh


def test_experiments_dry_run_table2_grid() -> None:
    commands = train_commands(bash(EXPERIMENTS, "--dry-run", "--stage", "table2"))
    assert len(commands) == 9
    grid = {(flag(c, "--lambda-r"), flag(c, "--lambda-a")) for c in commands}
    assert grid == {(r, a) for r in ("0.2", "0.5", "0.8") for a in ("0.2", "0.5", "0.8")}
    assert all("--reconstruction q-waae" in c and "--visual-fusion ctx-mul" in c for c in commands)


def test_experiments_dry_run_table3_sweep() -> None:
    commands = train_commands(bash(EXPERIMENTS, "--dry-run", "--stage", "table3"))
    assert [flag(c, "--noise-dim") for c in commands] == ["64", "128", "256", "512"]
    assert all("--reconstruction g-wgan" in c for c in commands)


def test_experiments_dry_run_runs_every_seed() -> None:
    commands = train_commands(
        bash(EXPERIMENTS, "--dry-run", "--stage", "main", env={"SEEDS": "1 2"})
    )
    assert len(commands) == 2 * 4
    seeds = [flag(c, "--seed") for c in commands if "/en-de/baseline/" in c]
    assert seeds == ["1", "2"]


def test_experiments_dry_run_all_training_runs() -> None:
    # one seed (SEEDS; the seeds themselves: above): the same runs, fewer train.sh calls
    out = bash(EXPERIMENTS, "--dry-run", "--", "--max-epoch", "2", env={"SEEDS": "1"})
    commands = train_commands(out)
    assert len(commands) == 4 + 9 + 4 + 2 + 1 + 20
    assert all(c.endswith("--max-epoch 2") for c in commands)
    cgru = [c for c in commands if "--arch cgru_mmt " in c]
    nov = [c for c in cgru if "--visual-fusion none" in c]
    assert len(nov) == 2 and {flag(c, "--reconstruction") for c in nov} == {"mse", "q-waae"}
    french = [c for c in commands if "data-bin/en-fr" in c]
    assert len(french) == 1 and all("--reconstruction q-waae" in c for c in french)
    transformer = [c for c in commands if "--arch transformer_mmt_tiny " in c]
    assert len(transformer) == len(commands) - len(cgru) == 20
    assert all(c.split()[1] == "data-bin/en-de-joined" for c in transformer)  # joined dictionary
    runs = [flag(c, "--save-dir").split("/")[2].split("_")[0] for c in transformer]
    assert set(runs) == set(systems.names("transformer"))
    # the finetuned runs train after the text-only run that they start from, from its average
    finetuned = [run for run in runs if run.startswith("finetuned-")]
    assert runs[-8:] == finetuned == systems.names("transformer")[-8:]
    assert runs.index("transformer-text-only") == 0
    start = "checkpoints/en-de/transformer-text-only/seed1/checkpoint_avg.pt"
    for command in transformer:
        from_model = "--finetune-from-model" in command
        assert from_model == (flag(command, "--save-dir").split("/")[2].startswith("finetuned-"))
        assert not from_model or flag(command, "--finetune-from-model") == start
        assert flag(command, "--lr") == ("0.0005" if from_model else "0.005")
    assert out.count(f"# starts from {start} (system transformer-text-only)\n") == 8
    averages = [line for line in out.splitlines() if "average_checkpoints.py" in line]
    assert len(averages) == 20


def test_experiments_dry_run_decoding_is_an_ensemble_then_scoring(tmp_path: Path) -> None:
    python, calls = counting_python(tmp_path)
    env = {"CHECKPOINTS": "/ck", "SEEDS": "1 2 3", "TMPDIR": str(tmp_path), **python}
    out = bash(EXPERIMENTS, "--dry-run", "--stage", "decode", env=env)
    # one Python process for the systems of its 94 train.sh calls (each imports fairseq)
    assert calls.read_text().splitlines() == [
        "-m fairseq_mmt_adv.recipes.systems --requests - --prog train.sh"
    ]
    assert not list(tmp_path.glob("experiments-systems.*"))
    generate = [
        line for line in out.splitlines() if line.split(" ")[0].endswith("/fairseq-generate")
    ]
    # the cGRU: the seeds' best checkpoints, beam 12; the Transformer: their averages, beam 5
    for run, checkpoint, beam, data in [
        ("q-waae_lr0.2_la0.2", "checkpoint_best.pt", "12", "data-bin/en-de"),
        ("selective-attn+g-wgan_z128_lr0_la0.2", "checkpoint_avg.pt", "5", "data-bin/en-de-joined"),
    ]:
        commands = [c for c in generate if f"/ck/en-de/{run}/seed3/" in c]
        assert [flag(c, "--gen-subset") for c in commands] == ["test", "test1", "test2", "test3"]
        for command in commands:
            assert f"--beam {beam} --remove-bpe" in command and command.split()[1] == data
            paths = flag(command, "--path").split(":")
            assert paths == [f"/ck/en-de/{run}/seed{s}/{checkpoint}" for s in range(1, 4)]
            assert command.endswith(
                f"results/en-de/{run}/seeds1-2-3/beam{beam}.ensemble.{{}}.txt".format(
                    flag(command, "--gen-subset")
                )
            )
    scoring = [line for line in out.splitlines() if "-m fairseq_mmt_adv.evaluation.scoring" in line]
    assert len(scoring) == len(generate) == 4 * 4 + 9 + 4 + 2 * 4 + 4 + 20 * 4
    finetuned = [c for c in generate if "/ck/en-de/finetuned-gated+mse_lr0.2/seed3/" in c]
    assert len(finetuned) == 4 and all("checkpoint_avg.pt --gen-subset" in c for c in finetuned)
    assert "--references data-bin/en-de/text/test2.de" in " ".join(scoring)


def evaluate_commands(output: str, command: str) -> list[str]:
    return [
        line
        for line in output.splitlines()
        if line.split(" ")[1:4] == ["-m", "fairseq_mmt_adv.evaluation.cli", command]
    ]


def test_experiments_dry_run_evaluates_every_system_and_seed(tmp_path: Path) -> None:
    from fairseq_mmt_adv.evaluation import incongruent

    env = {"CHECKPOINTS": "/ck", "SEEDS": "1 2", "RESULTS": "/r"}
    out = bash(EXPERIMENTS, "--dry-run", "--stage", "decode", "--stage", "evaluate", env=env)
    decoded = {
        str(Path(line.rsplit(" > ", 1)[1]).parent)
        for line in out.splitlines()
        if line.split(" ")[0].endswith("/fairseq-generate")
    }
    commands = evaluate_commands(out, "incongruent")
    # every run directory of the decode stage, each seed's checkpoint alone
    found = {}
    for command in commands:
        json_path = Path(flag(command, "--json"))
        seed, split = json_path.name.split(".")[1], flag(command, "--gen-subset")
        assert json_path.name.startswith(f"beam{flag(command, '--beam')}.{seed}.incongruent.")
        assert flag(command, "--path").startswith(
            f"/ck/{json_path.parts[2]}/{json_path.parts[3]}/{seed}/"
        )
        found.setdefault(str(json_path.parent), set()).add((seed, split))
    assert set(found) == decoded and len(decoded) == 27 + 13
    three = {(f"seed{s}", split) for s in (1, 2) for split in ("test", "test1", "test2")}
    five_seeds = [d for d in found if d.endswith("/seeds1-2")]
    assert len(five_seeds) == 27 and all(found[d] == three for d in five_seeds)
    assert "/r/en-de/finetuned-selective-attn+g-wgan_z128_lr0_la0.2/seeds1-2" in five_seeds
    sweeps = [d for d in found if d.endswith("/seeds1")]  # SWEEP_SEEDS, SWEEP_SPLITS
    assert all(found[d] == {("seed1", "test2")} for d in sweeps)
    assert len(commands) == 27 * 2 * 3 + 13
    # the flags are fairseq-mmt-evaluate's, the beams the decode stage's
    args = incongruent.parse_args(shlex.split(commands[0])[4:])
    assert (args.permutations, args.beam, args.post_process) == (3, 12, "subword_nmt")
    assert args.path == "/ck/en-de/baseline/seed1/checkpoint_best.pt"
    [transformer] = [
        c
        for c in commands
        if "/gated+q-waae" in c and " --gen-subset test " in c and "/seed2/" in c
    ]
    assert " data-bin/en-de-joined " in transformer and "checkpoint_avg.pt" in transformer
    assert "--beam 5 " in transformer and "--visual-features data-bin/en-de " in transformer
    # no COMMUTE: no contrastive command, and the message says how to have them
    assert evaluate_commands(out, "contrastive") == []
    assert (
        "CoMMuTE skipped: set COMMUTE=DIR, a clone of https://github.com/MatthieuFP/CoMMuTE" in out
    )


def test_experiments_dry_run_evaluates_commute_when_given() -> None:
    from fairseq_mmt_adv.evaluation import contrastive

    env = {"CHECKPOINTS": "/ck", "SEEDS": "1", "COMMUTE": "/c"}
    out = bash(EXPERIMENTS, "--dry-run", "--stage", "evaluate", env=env)
    commands = evaluate_commands(out, "contrastive")
    # one seed: the sweeps' (0.2, 0.2) and |z| 128 points are main systems, evaluated once
    assert len(commands) == 27 + 11 and "CoMMuTE skipped" not in out
    assert len(evaluate_commands(out, "incongruent")) == 27 * 3 + 11
    for command in commands:
        run = Path(flag(command, "--json")).parent
        pair, lang = run.parts[1], run.parts[1][3:]
        args = contrastive.parse_args(shlex.split(command)[4:])
        assert (args.source, args.correct, args.incorrect, args.image_order) == (
            f"/c/{pair}/src.en",
            f"/c/{pair}/correct.{lang}",
            f"/c/{pair}/incorrect.{lang}",
            f"/c/{pair}/img.order",
        )
        assert args.images == "/c/images" and args.json == f"{run}/seed1.contrastive.commute.json"
    assert {Path(flag(c, "--json")).parts[1] for c in commands} == {"en-de", "en-fr"}
    env.update(COMMUTE_IMAGES="/elsewhere", EXTRACTOR_WEIGHTS="/w/resnet50.pth")
    out = bash(EXPERIMENTS, "--dry-run", "--stage", "evaluate", env=env)
    command = evaluate_commands(out, "contrastive")[0]
    assert "--images /elsewhere " in command and "--weights /w/resnet50.pth " in command


def test_experiments_evaluate_skips_what_is_not_there(tmp_path: Path) -> None:
    checkpoint = tmp_path / "ck" / "en-de" / "baseline" / "seed1" / "checkpoint_best.pt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")  # one run trained; no data, no CoMMuTE images
    (tmp_path / "commute" / "en-de").mkdir(parents=True)
    env = {"CHECKPOINTS": str(tmp_path / "ck"), "SEEDS": "1", "RESULTS": str(tmp_path / "r")}
    env.update(COMMUTE=str(tmp_path / "commute"), DATA_DE=str(tmp_path / "no-data"))
    out = bash(EXPERIMENTS, "--stage", "evaluate", env=env)
    mse = tmp_path / "ck" / "en-de" / "mse_lr0.2" / "seed1" / "checkpoint_best.pt"
    assert f"skipped: no {mse} (train stage main first)" in out
    assert f"skipped: {tmp_path}/no-data has no split test1" in out
    assert out.count("CoMMuTE en-de skipped: ") == 1  # said once, for the one trained run
    assert f"no {tmp_path}/commute/en-de/src.en, correct.de or img.order: COMMUTE=" in out
    assert not (tmp_path / "r").exists()


def test_experiments_summary_stage_tables_the_scored_ensembles(tmp_path: Path) -> None:
    run = tmp_path / "en-fr" / "q-waae_lr0.2_la0.2" / "seeds1-2"
    run.mkdir(parents=True)
    scores = '{"bleu_tok_lc": 58.5, "meteor": 73.25, "bleu_sacre": 57.0}'
    (run / "beam12.ensemble.test1.json").write_text(scores)
    # and a Transformer system with the same output as its baseline: no evidence of a gain
    data = tmp_path / "data-de"
    (data / "text").mkdir(parents=True)
    (data / "text" / "test.de").write_text("ein hund läuft .\nzwei männer .\n")
    for name in ("transformer-text-only", "gated+q-waae_lr0.2_la0.2"):
        base = tmp_path / "en-de" / name / "seeds1-2" / "beam5.ensemble.test"
        base.parent.mkdir(parents=True)
        base.with_name(base.name + ".json").write_text(scores)
        base.with_name(base.name + ".txt").write_text("H-1\t-1\tzwei männer .\nH-0\t-1\tein hund\n")
    env = {"RESULTS": str(tmp_path), "DATA_DE": str(data)}
    out = bash(EXPERIMENTS, "--stage", "summary", env=env)
    rows = {line.split()[1]: line.split() for line in out.splitlines() if line.startswith("en-")}
    assert rows["q-waae_lr0.2_la0.2"] == [
        *("en-fr", "q-waae_lr0.2_la0.2", "1-2", "test1", "12", "58.50", "73.25", "57.00"),
        *("-", "-", "-", "-"),  # no seeds' JSON, no baseline
        *("n/a", "n/a", "n/a"),  # no evaluate stage output
    ]
    assert rows["gated+q-waae_lr0.2_la0.2"][4:] == [
        *("5", "58.50", "73.25", "57.00", "-", "transformer-text-only", "+0.00", "1.000"),
        *("n/a", "n/a", "n/a"),
    ]
    assert "no p-values for en-fr" in out  # DATA_FR does not exist here
    dry = bash(EXPERIMENTS, "--stage", "summary", "--dry-run", env=env)
    assert dry.endswith(f"summary table {tmp_path} 12 5 --data en-de={data}\n")


def test_experiments_rejects_unknown_stage() -> None:
    assert "unknown stage" in bash(EXPERIMENTS, "--stage", "table9", ok=False)
    assert "Usage:" in bash(EXPERIMENTS, "--help")


# ---------------------------------------------------------------- multi_seed.py


def test_mean_and_sample_std() -> None:
    mean, std, n = multi_seed.mean_std([40.0, 41.0, 42.5, None])
    assert n == 3 and mean == pytest.approx(41.1666667)
    assert std == pytest.approx(
        math.sqrt(((40 - mean) ** 2 + (41 - mean) ** 2 + (42.5 - mean) ** 2) / 2)
    )
    assert multi_seed.mean_std([None, None]) == (None, None, 0)
    assert multi_seed.mean_std([30.0]) == (30.0, None, 1)


PER_SEED = {
    "seed1": {"test": {"BLEU": 40.0, "METEOR": 59.0}, "test2": {"BLEU": 30.0, "METEOR": None}},
    "seed2": {"test": {"BLEU": 41.0, "METEOR": 60.0}, "test2": {"BLEU": 31.0, "METEOR": None}},
    "seed3": {"test": {"BLEU": 42.0, "METEOR": 61.0}, "test2": {"BLEU": 32.5, "METEOR": None}},
}


def test_aggregate_and_table() -> None:
    stats = multi_seed.aggregate(PER_SEED, ["test", "test2"])
    assert stats["test"]["BLEU"] == (pytest.approx(41.0), pytest.approx(1.0), 3)
    assert stats["test"]["METEOR"] == (pytest.approx(60.0), pytest.approx(1.0), 3)
    assert stats["test2"]["BLEU"][0] == pytest.approx(31.1666667)
    assert stats["test2"]["BLEU"][1] == pytest.approx(1.2583057)
    assert stats["test2"]["METEOR"] == (None, None, 0)
    ensemble = {"test": {"BLEU": 43.2, "METEOR": 61.5}, "test2": {"BLEU": 33.0, "METEOR": None}}
    table = multi_seed.format_table(
        PER_SEED, ensemble, ["test", "test2"], {"test2": "test_2017_mscoco"}, title="q-waae"
    )
    lines = table.splitlines()
    assert lines[0] == "q-waae" and "test_2017_mscoco BLEU" in lines[1]
    assert lines[2].split() == ["seed1", "40.00", "59.00", "30.00", "-"]
    assert lines[5].split() == [
        "mean",
        "±",
        "std",
        "(3)",
        "41.00",
        "±",
        "1.00",
        "60.00",
        "±",
        "1.00",
        "31.17",
        "±",
        "1.26",
        "-",
    ]
    assert lines[6].split() == ["ensemble", "(3)", "43.20", "61.50", "33.00", "-"]
    report = multi_seed.report_json(PER_SEED, ensemble, ["test", "test2"])
    assert report["mean"]["test"]["BLEU"] == pytest.approx(41.0)
    assert report["std"]["test2"]["METEOR"] is None


def test_generate_command_and_labels(tmp_path: Path) -> None:
    command = multi_seed.generate_command("data", ["a/seed1/best.pt", "a/seed2/best.pt"], "test2")
    assert "--path a/seed1/best.pt:a/seed2/best.pt" in " ".join(command)
    assert "--gen-subset test2 --beam 12 --remove-bpe" in " ".join(command)
    assert multi_seed.run_labels(["x/q/seed1", "x/q/seed2"]) == ["seed1", "seed2"]
    assert multi_seed.run_labels(["a/seed1", "b/seed1"]) == ["a/seed1", "b/seed1"]
    assert multi_seed.file_label("a/seed1") == "a_seed1"
    (tmp_path / "seed1").mkdir()
    assert multi_seed.checkpoint_path(tmp_path / "seed1") == tmp_path / "seed1/checkpoint_best.pt"


FAKE_GENERATE = """\
import sys
from pathlib import Path
args = sys.argv[1:]
data, split = Path(args[0]), args[args.index("--gen-subset") + 1]
paths = args[args.index("--path") + 1].split(":")
for i, line in enumerate((data / "text" / f"{split}.de").read_text().splitlines()):
    words = line.split()
    if len(paths) == 1 and "seed2" in paths[0]:
        words = words[:-1]  # seed2 drops the last word
    print(f"S-{i}\\tsource\\nH-{i}\\t-0.5\\t{' '.join(words)}")
"""


def fake_multi_seed_run(tmp_path: Path) -> tuple[list[str], Path, Path]:
    """Data, three seed checkpoints and a fake fairseq-generate (seed2 drops a word): the
    ``multi_seed.py`` arguments, the output directory and the fake command."""
    data = tmp_path / "data"
    (data / "text").mkdir(parents=True)
    (data / "dict.en.txt").write_text("a 1\n")
    (data / "dict.de.txt").write_text("a 1\n")
    (data / "splits.tsv").write_text("split\tmulti30k\tsentences\ntest\ttest_2016_flickr\t3\n")
    refs = [
        "ein hund läuft durch den park .",
        "zwei männer spielen fußball auf der straße .",
        "eine frau sitzt auf einer bank und liest ein buch .",
    ]
    (data / "text" / "test.de").write_text("\n".join(refs) + "\n")
    fake = tmp_path / "fake_generate.py"
    fake.write_text(FAKE_GENERATE)
    fake_cmd = tmp_path / "fairseq-generate"
    fake_cmd.write_text(f'#!/bin/sh\nexec {sys.executable} {fake} "$@"\n')
    fake_cmd.chmod(0o755)
    seeds = []
    for s in (1, 2, 3):
        (tmp_path / f"seed{s}").mkdir()
        (tmp_path / f"seed{s}" / "checkpoint_best.pt").write_bytes(b"")
        seeds.append(str(tmp_path / f"seed{s}"))
    out_dir = tmp_path / "out"
    argv = [
        "--data",
        str(data),
        "--checkpoints",
        *seeds,
        "--fairseq-generate",
        str(fake_cmd),
        "--output-dir",
        str(out_dir),
        "--json",
        str(tmp_path / "s.json"),
    ]
    return argv, out_dir, fake_cmd


def test_multi_seed_main_with_a_fake_fairseq_generate(tmp_path: Path, capsys) -> None:
    argv, out_dir, fake_cmd = fake_multi_seed_run(tmp_path)
    argv += ["--meteor-jar", ""]
    assert multi_seed.main(argv) == 0
    table = capsys.readouterr().out
    assert "test_2016_flickr BLEU" in table
    assert table.splitlines()[0].endswith("METEOR (no METEOR_JAR: unavailable)")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert rows["seed1"][1] == rows["seed3"][1] == "100.00" and float(rows["seed2"][1]) < 100
    assert rows["ensemble"][2] == "100.00"
    assert (out_dir / "beam12.ensemble.test.txt").is_file()
    assert (out_dir / "beam12.seed2.test.txt").is_file()
    # --reuse scores the complete outputs again without decoding
    fake_cmd.write_text("#!/bin/sh\nexit 3\n")
    assert multi_seed.main([*argv, "--reuse"]) == 0
    assert capsys.readouterr().out == table


@pytest.mark.skipif(
    not (os.environ.get("METEOR_JAR") and shutil.which("java")),
    reason="needs java and a METEOR 1.5 jar in METEOR_JAR",
)
def test_multi_seed_names_the_meteor_variant_it_used(tmp_path: Path, capsys) -> None:
    """German scored by a jar without German paraphrases is exact+stem METEOR, and says so."""
    argv, _, _ = fake_multi_seed_run(tmp_path)
    jar = os.environ["METEOR_JAR"]
    if (Path(jar).resolve().parent / "data" / "paraphrase-de.gz").is_file():
        pytest.skip("this METEOR jar has the German paraphrase table")
    assert multi_seed.main([*argv, "--meteor-jar", jar, "--no-ensemble"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].endswith("METEOR = METEOR 1.5 (exact+stem)")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:]}
    assert 90 < float(rows["seed1"][2]) <= 100 and float(rows["seed2"][2]) < float(rows["seed1"][2])


def test_multi_seed_registers_the_plugin() -> None:
    code = f"import runpy, sys; runpy.run_path({str(RECIPES / 'multi_seed.py')!r}); {REGISTERED}"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- plot_curves.py

# fairseq-train --log-format json, stdout format, of a 2-epoch q-waae run with --log-interval 3
# (abridged: other lines of the real log in between are kept as they come).
STDOUT_LOG = """\
2024-05-01 12:00:00 | INFO | fairseq_cli.train | {'_name': None, 'common': {'_name': None, 'log_format': 'json'}}
2024-05-01 12:00:01 | INFO | fairseq_cli.train | begin training epoch 1
2024-05-01 12:00:03 | INFO | train_inner | {"epoch": 1, "update": 0.429, "loss": "8.602", "nll_loss": "4.003", "recon_mse": "16.041", "critic_loss": "1.351", "wasserstein": "0.056", "grad_penalty": "0.141", "adv_loss": "-0.052", "ppl": "16.04", "wps": "1620.6", "ups": "22.58", "wpb": "122.5", "bsz": "16", "num_updates": "3", "lr": "0.0004", "gnorm": "0.733", "clip": "0", "train_wall": "0", "wall": "0"}
2024-05-01 12:00:04 | INFO | train_inner | {"epoch": 1, "update": 0.857, "loss": "8.034", "nll_loss": "3.94", "recon_mse": "14.581", "critic_loss": "1.41", "wasserstein": "-0.266", "grad_penalty": "0.114", "adv_loss": "-0.381", "ppl": "15.35", "wps": "1936.7", "ups": "15.49", "wpb": "125", "bsz": "10", "num_updates": "6", "lr": "0.0004", "gnorm": "0.934", "clip": "0", "train_wall": "0", "wall": "1"}
2024-05-01 12:00:04 | INFO | fairseq_cli.train | begin validation on "valid" subset
2024-05-01 12:00:05 | INFO | valid | {"epoch": 1, "valid_loss": "8.003", "valid_nll_loss": "3.886", "valid_recon_mse": "14.938", "valid_wasserstein": "-0.602", "valid_adv_loss": "-0.597", "valid_ppl": "14.78", "valid_bleu": "1.5", "valid_wps": "2594", "valid_wpb": "91.7", "valid_bsz": "12.3", "valid_num_updates": "7"}
2024-05-01 12:00:05 | INFO | fairseq.checkpoint_utils | Saved checkpoint checkpoints/checkpoint_best.pt (epoch 1 @ 7 updates, score 1.5) (writing took 0.2 seconds)
2024-05-01 12:00:05 | INFO | train | {"epoch": 1, "train_loss": "8.423", "train_nll_loss": "3.969", "train_recon_mse": "15.875", "train_critic_loss": "1.428", "train_wasserstein": "-0.168", "train_grad_penalty": "0.126", "train_adv_loss": "-0.223", "train_ppl": "15.66", "train_wps": "1156.2", "train_ups": "11.22", "train_wpb": "113.1", "train_bsz": "14.3", "train_num_updates": "7", "train_lr": "0.0004", "train_gnorm": "0.779", "train_clip": "0", "train_train_wall": "0", "train_wall": "1"}
2024-05-01 12:00:06 | INFO | train_inner | {"epoch": 2, "update": 1.286, "loss": "7.716", "nll_loss": "3.884", "recon_mse": "14.829", "critic_loss": "1.579", "wasserstein": "-0.525", "grad_penalty": "0.105", "adv_loss": "-0.507", "ppl": "14.76", "wps": "552.8", "ups": "5.12", "wpb": "108", "bsz": "16", "num_updates": "9", "lr": "0.0004", "gnorm": "0.989", "clip": "0", "train_wall": "0", "wall": "1"}
2024-05-01 12:00:07 | INFO | valid | {"epoch": 2, "valid_loss": "5.487", "valid_nll_loss": "3.793", "valid_recon_mse": "8.826", "valid_wasserstein": "-2.504", "valid_adv_loss": "-2.659", "valid_ppl": "13.86", "valid_bleu": "2.25", "valid_wps": "2569.5", "valid_wpb": "91.7", "valid_bsz": "12.3", "valid_num_updates": "14", "valid_best_bleu": "2.25"}
2024-05-01 12:00:07 | INFO | train | {"epoch": 2, "train_loss": "6.597", "train_nll_loss": "3.802", "train_recon_mse": "10.967", "train_critic_loss": "2.103", "train_wasserstein": "-1.21", "train_grad_penalty": "0.089", "train_adv_loss": "-1.199", "train_ppl": "13.95", "train_wps": "1211.3", "train_ups": "10.71", "train_wpb": "113.1", "train_bsz": "14.3", "train_num_updates": "14", "train_lr": "0.0004", "train_gnorm": "1.561", "train_clip": "0", "train_train_wall": "0", "train_wall": "2"}
2024-05-01 12:00:07 | INFO | fairseq_cli.train | done training in 6.9 seconds
"""  # noqa: E501


def bare(log: str) -> str:
    """The same records as --log-file writes them: bare JSON, some of them twice."""
    lines = []
    for line in log.splitlines():
        message = line.split(" | ", 3)[-1]
        lines.append(message)
        if '"epoch": 2' in message:
            lines.append(message)
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("form", ["stdout", "log-file"])
def test_parse_fairseq_json_log(form: str) -> None:
    text = STDOUT_LOG if form == "stdout" else bare(STDOUT_LOG)
    run = plot_curves.parse_log(text.splitlines(), "q-waae")
    assert sorted(run.epochs) == [1, 2]
    assert sorted(run.updates) == [3, 6, 9]
    assert run.epoch_series("train_nll_loss") == ([1.0, 2.0], [3.969, 3.802])
    assert run.epoch_series("valid_nll_loss") == ([1.0, 2.0], [3.886, 3.793])
    assert run.epoch_series("valid_bleu") == ([1.0, 2.0], [1.5, 2.25])
    assert run.epoch_series("train_recon_mse")[1] == [15.875, 10.967]
    assert run.epoch_series("train_critic_loss")[1] == [1.428, 2.103]
    assert run.epoch_series("train_wasserstein")[1] == [-0.168, -1.21]
    assert run.epoch_series("valid_best_bleu") == ([2.0], [2.25])
    assert run.update_series("nll_loss") == ([0.429, 0.857, 1.286], [4.003, 3.94, 3.884])
    assert run.epoch_series("train_nonexistent") == ([], [])


def test_read_log_names_the_run_after_its_directories(tmp_path: Path) -> None:
    log = tmp_path / "q-waae_lr0.2_la0.2" / "seed4" / "train.log"
    log.parent.mkdir(parents=True)
    log.write_text(bare(STDOUT_LOG))
    run = plot_curves.read_log(log)
    assert run.name == "q-waae_lr0.2_la0.2/seed4" and len(run.epochs) == 2


def test_plot_curves_writes_a_png(tmp_path: Path) -> None:
    logs = []
    for name, text in (("q-waae", STDOUT_LOG), ("baseline", STDOUT_LOG.replace("recon", "x"))):
        logs.append(tmp_path / f"{name}.log")
        logs[-1].write_text(text)
    png = tmp_path / "curves" / "all.png"
    assert plot_curves.main([*map(str, logs), "-o", str(png), "--updates"]) == 0
    assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
