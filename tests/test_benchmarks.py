"""The benchmark scripts: their arithmetic, and a short real run of the paired one."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import cli_env

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"
sys.path.insert(0, str(SCRIPTS))

import benchmark  # noqa: E402
import benchmark_paired  # noqa: E402

from fairseq_mmt_adv.recipes import systems  # noqa: E402
from fairseq_mmt_adv.recipes.benchmarks import SYSTEMS, train_flags  # noqa: E402


def test_paired_figures_are_medians_of_per_round_ratios():
    times = {
        "lstm": [1.0, 2.0, 1.0, 4.0, 1.0],
        "cgru": [0.5, 1.2, 0.6, 2.0, 0.8],  # ratios 0.5, 0.6, 0.6, 0.5, 0.8
    }
    table = benchmark_paired.summarize("title", times, "lstm")
    row = next(line for line in table.splitlines() if line.startswith("cgru"))
    assert row.split() == ["cgru", "800.0", "0.600", "[0.500,", "0.600]", "1.67"]


def test_paired_rounds_rotate_the_order_and_drop_the_warmup():
    calls = []

    def measure(name):
        return lambda r: calls.append((r, name)) or float(r)

    times = benchmark_paired.paired_rounds({n: measure(n) for n in "abc"}, rounds=3, warmup=1)
    assert [name for _, name in calls] == list("abcbcacababc")
    assert times == {n: [1.0, 2.0, 3.0] for n in "abc"}


def test_benchmark_table_takes_medians_and_ratios_to_the_first_system():
    def row(system, tokens, beam5, beam12, ups):
        return {
            "system": system,
            "tokens/s": tokens,
            "updates/s": ups,
            "peak MiB": 100.0,
            "beam 5 sent/s": beam5,
            "beam 12 sent/s": beam12,
            "out tok/sent": 8.0,
        }

    lstm = benchmark.median_rows(
        [row("lstm", 100, 10, 5, 1.0), row("lstm", 300, 30, 1, 3.0), row("lstm", 200, 20, 4, 2.0)]
    )
    assert lstm["tokens/s"] == 200 and lstm["beam 12 sent/s"] == 4
    cgru = row("cgru", 300, 30, 6, 2.0)
    mse = row("cgru+mse", 240, 30, 6, 1.6)
    lines = benchmark.format_table([lstm, cgru, mse]).splitlines()
    assert re.search(r"cgru .*\s1\.50\s+1\.50\s+1\.50$", lines[2]), lines[2]
    assert lines[-1] == "overhead per update of cgru+mse vs cgru: +25.0%"


def test_paired_benchmark_trains_and_decodes_every_system(tiny_corpus, tmp_path, capsys):
    """The script's main() in-process, as fairseq's tests run its CLIs (one thread, as here)."""
    names = "lstm,cgru-reference,cgru,cgru+q-waae,cgru+g-wgan,transformer,gated+q-waae"
    status = benchmark_paired.main(
        [
            *("--data", str(tiny_corpus / "bin"), "--features", str(tiny_corpus / "features")),
            *("--systems", names, "--rounds", "2", "--warmup", "1", "--threads", "1"),
            *("--batch-size", "8", "--decode-batch-size", "8", "--beam", "3"),
            *("--decode-length", "4", "--profile", "5"),
            *("--times-json", str(tmp_path / "times.json")),
        ]
    )
    assert status == 0
    stdout = capsys.readouterr().out
    times = json.loads((tmp_path / "times.json").read_text())
    assert list(times) == ["training", "beam 3"]
    for work in times.values():
        assert list(work) == names.split(",")
        assert all(len(seconds) == 2 and min(seconds) > 0 for seconds in work.values())
    for system in ("lstm", "cgru", "cgru+g-wgan", "transformer", "gated+q-waae"):
        for work in ("training update", "beam search"):
            profile = stdout.split(f"profile of one {work}: {system}\n")[1]
            assert re.search(r"^\s+aten::\w+", profile, re.M), profile  # an operator table
    sections = re.sub(r"\nprofile of one .*?(?=\n\n|\Z)", "", stdout, flags=re.S)
    sections = sections.split("\nbeam 3 decoding")
    assert len(sections) == 2 and sections[0].strip().startswith("training updates, batch 8")
    for section in sections:
        assert re.search(r"^lstm\s+\d+\.\d\s+1\.000\s", section, re.M), section
        systems = ("cgru-reference", "cgru", r"cgru\+q-waae", r"cgru\+g-wgan")
        for system in (*systems, "transformer", r"gated\+q-waae"):
            assert re.search(rf"^{system}\s+\d+\.\d\s+\d+\.\d{{3}}\s", section, re.M), section


def parsed_model(name: str, corpus: Path):
    """A benchmark system's model arguments as fairseq-train resolves them (its --arch)."""
    from fairseq import options

    argv = train_flags(name, corpus / "bin", corpus / "features")
    return options.parse_args_and_arch(options.get_training_parser(), argv)


def test_stock_transformer_has_the_sizes_of_transformer_mmt_tiny(tiny_corpus):
    sizes = [
        *("encoder_layers", "decoder_layers", "encoder_embed_dim", "decoder_embed_dim"),
        *("encoder_ffn_embed_dim", "decoder_ffn_embed_dim", "encoder_attention_heads"),
        *("decoder_attention_heads", "dropout", "attention_dropout", "activation_dropout"),
        *("share_decoder_input_output_embed", "share_all_embeddings", "criterion"),
        *("label_smoothing", "optimizer", "lr", "clip_norm"),
    ]
    stock, ours = parsed_model("transformer", tiny_corpus), parsed_model("gated", tiny_corpus)
    assert (stock.arch, stock.task, ours.arch, ours.task) == (
        "transformer",
        "translation",
        "transformer_mmt_tiny",
        "multimodal_translation",
    )
    assert {k: getattr(stock, k) for k in sizes} == {k: getattr(ours, k) for k in sizes}
    assert (stock.encoder_layers, stock.decoder_embed_dim, stock.dropout) == (4, 128, 0.3)


@pytest.mark.parametrize(
    "system, fusion, criterion",
    [
        ("transformer-text-only", "none", "label_smoothed_cross_entropy"),
        ("gated", "gated", "label_smoothed_cross_entropy"),
        ("gated+q-waae", "gated", "adversarial_reconstruction"),
    ],
)
def test_transformer_systems_are_those_of_systems_py(system, fusion, criterion, tiny_corpus):
    args = parsed_model(system, tiny_corpus)
    assert (args.visual_fusion, args.criterion) == (fusion, criterion)
    assert SYSTEMS[system] == ["--arch", "transformer_mmt_tiny", *systems.flags(system)]


def test_cli_benchmark_times_the_beams_asked_for(capsys):
    assert benchmark.parse_args([]).beams == [5, 12]
    assert benchmark.parse_args(["--beams", "4"]).beams == [4]
    for bad in ("5,x", "0", ""):
        with pytest.raises(SystemExit):
            benchmark.parse_args(["--beams", bad])
        assert "--beams takes positive integers" in capsys.readouterr().err
    row = {"system": "cgru", "tokens/s": 9.0, "updates/s": 1.0, "peak MiB": 1.0}
    table = benchmark.format_table([{**row, "beam 4 sent/s": 2.0, "out tok/sent": 6.0}], [4])
    assert table.splitlines()[0].split()[-6:] == ["train", "x", "cgru", "beam4", "x", "cgru"]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--systems", "lstm,gru"], "unknown systems"),
        (["--rounds", "1"], "at least 2"),
        (["--data", "x"], "go together"),
        (["--systems", "cgru"], "not among --systems"),
        (["--no-train", "--no-decode"], "nothing to time"),
    ],
)
def test_paired_benchmark_rejects_bad_flags(flags, message, capsys):
    with pytest.raises(SystemExit):
        benchmark_paired.parse_args(flags)
    assert message in capsys.readouterr().err


def test_cli_benchmark_decodes_hypotheses_of_the_forced_length(tiny_corpus, tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(SCRIPTS / "benchmark.py"),
            "--data",
            str(tiny_corpus / "bin"),
            "--features",
            str(tiny_corpus / "features"),
            "--systems",
            "cgru",  # lstm's flags: the paired benchmark; the table's ratios: above
            "--updates",
            "8",
            "--batch-size",
            "8",
            "--decode-length",
            "5",
            "--beams",
            "5",  # one decoding process; the table of two beams: above
            "--threads",
            "1",
            "--work-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "hypotheses of 5 tokens" in done.stdout
    rows = [line.split() for line in done.stdout.splitlines() if line.startswith("cgru")]
    assert [row[0] for row in rows] == ["cgru"]
    # columns: tokens/s, updates/s, peak MiB, beam 5 sent/s, out tok/sent, train x cgru, ...
    assert float(rows[0][5]) == 6.0  # 5 tokens and the end of sentence
