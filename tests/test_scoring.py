"""evaluation.scoring: BLEU variants, fairseq-generate parsing, errors and METEOR naming."""

import json
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import pytest
import sacrebleu
from helpers import REGISTERED

from fairseq_mmt_adv.evaluation import scoring

ROOT = Path(__file__).resolve().parents[1]
RAW = [
    "Ein Hund läuft durch den Park.",
    "Zwei Männer spielen Fußball auf der Straße.",
    "Eine Frau sitzt auf einer Bank und liest ein Buch.",
    "Kinder spielen im Wasser.",
    "Ein Mann mit rotem Hut fährt Fahrrad.",
]
TOK = [
    "ein hund läuft durch den park .",
    "zwei männer spielen fußball auf der straße .",
    "eine frau sitzt auf einer bank und liest ein buch .",
    "kinder spielen im wasser .",
    "ein mann mit rotem hut fährt fahrrad .",
]
HYP = [
    "ein hund rennt durch den park .",
    "zwei männer spielen fußball auf der straße .",
    "eine frau sitzt auf der bank und liest .",
    "kinder spielen am wasser .",
    "ein mann mit einem roten hut fährt ein fahrrad .",
]
BPE = [
    "ein hund ren@@ nt durch den park .",
    "zwei männer spielen fu@@ ß@@ ball auf der straße .",
    "eine frau sitzt auf der bank und lie@@ st .",
    "kinder spielen am wasser .",
    "ein mann mit einem ro@@ ten hut fährt ein fahr@@ rad .",
]


def write(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    return {
        "refs": write(tmp_path / "test.de", TOK),
        "raw": write(tmp_path / "test.raw.de", RAW),
        "hyps": write(tmp_path / "hyp.txt", HYP),
        "bpe": write(tmp_path / "hyp.bpe.txt", BPE),
    }


def run_json(argv: Sequence[str | Path], capsys: pytest.CaptureFixture, **kwargs) -> dict:
    assert scoring.main([*map(str, argv), "--json"], **kwargs) == 0
    return json.loads(capsys.readouterr().out)


def test_exact_match_scores_100(
    files: dict[str, Path], capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("METEOR_JAR", raising=False)
    result = run_json(["--hypotheses", files["refs"], "--references", files["refs"]], capsys)
    assert result["bleu_tok_lc"] == pytest.approx(100)
    assert result["bleu_sacre"] == pytest.approx(100)
    assert result["chrf"] == pytest.approx(100)
    assert result["n_sentences"] == len(TOK)
    assert "tokenize='none'" in result["bleu_sacre_input"]
    assert "tok:none" in result["bleu_sacre_signature"]
    assert result["meteor"] is None and result["meteor_name"] == "METEOR"
    assert "--meteor-jar" in result["meteor_note"]


def test_known_example_matches_sacrebleu(files: dict[str, Path]) -> None:
    scores = scoring.score(HYP, TOK, "de")
    expected = sacrebleu.corpus_bleu(HYP, [TOK], tokenize="none", lowercase=True).score
    assert scores.bleu_tok_lc == pytest.approx(expected)
    assert 30 < scores.bleu_tok_lc < 80
    assert scores.chrf == pytest.approx(sacrebleu.corpus_chrf(HYP, [TOK]).score)


def test_sacrebleu_on_detokenized_hypotheses_vs_raw_references(
    files: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    argv = ["--hypotheses", files["hyps"], "--references", files["refs"]]
    argv += ["--raw-references", files["raw"], "--detokenize", "de"]
    result = run_json([*argv, "--sacrebleu-lowercase"], capsys)
    detok = scoring.detokenize(HYP, "de")
    assert detok[0] == "ein hund rennt durch den park."
    expected = sacrebleu.corpus_bleu(detok, [RAW], lowercase=True)
    assert result["bleu_sacre"] == pytest.approx(expected.score)
    assert "case:lc" in result["bleu_sacre_signature"]
    assert "tok:13a" in result["bleu_sacre_signature"]
    assert result["bleu_sacre_input"] == "detokenized hypotheses vs raw references"
    assert result["warnings"] == []
    # case-sensitive against cased references: a warning suggests --sacrebleu-lowercase
    result = run_json(argv, capsys)
    assert result["bleu_sacre"] == pytest.approx(sacrebleu.corpus_bleu(detok, [RAW]).score)
    assert any("--sacrebleu-lowercase" in w for w in result["warnings"])


def test_remove_bpe() -> None:
    """fairseq's post_process: its symbols, and a clear error for another."""
    assert scoring.remove_bpe("zwei fu@@ ß@@ ball spieler@@") == "zwei fußball spieler"
    assert scoring.remove_bpe("a b") == "a b"
    assert scoring.remove_bpe("zwei fu@@ ßball", "subword_nmt") == "zwei fußball"
    assert scoring.remove_bpe("\u2581zwei \u2581fu ß ball", "sentencepiece") == "zwei fußball"
    with pytest.raises(scoring.ScoringError, match="--remove-bpe '## ': fairseq's post_process"):
        scoring.remove_bpe("ab## c", "## ")


def test_remove_bpe_option(files: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    argv = ["--hypotheses", files["bpe"], "--references", files["refs"]]
    with_bpe = run_json(argv, capsys)
    removed = run_json([*argv, "--remove-bpe"], capsys)
    plain = run_json(["--hypotheses", files["hyps"], "--references", files["refs"]], capsys)
    assert removed["bleu_tok_lc"] == pytest.approx(plain["bleu_tok_lc"])
    assert with_bpe["bleu_tok_lc"] < removed["bleu_tok_lc"]
    assert any("--remove-bpe" in w for w in with_bpe["warnings"])
    assert removed["warnings"] == []


def generate_output(hyps: Sequence[str], targets: Sequence[str] | None, seed: int = 0) -> str:
    """fairseq-generate style output, sentences in a shuffled order, with log lines around."""
    blocks = []
    for i, hyp in enumerate(hyps):
        block = [f"S-{i}\tsource {i}"]
        if targets is not None:
            block.append(f"T-{i}\t{targets[i]}")
        block += [f"H-{i}\t-0.{i + 1}\t{hyp}", f"D-{i}\t-0.{i + 1}\t{hyp}", f"P-{i}\t-0.1 -0.2"]
        blocks.append("\n".join(block))
    random.Random(seed).shuffle(blocks)
    return "2024-01-01 | INFO | fairseq_cli.generate | loading\n" + "\n".join(blocks) + "\n"


def test_parse_fairseq_generate_sorts_by_id(tmp_path: Path) -> None:
    path = tmp_path / "gen.out"
    path.write_text(generate_output(BPE, TOK), encoding="utf-8")
    hyps, targets = scoring.parse_fairseq_generate(path)
    assert hyps == BPE and targets == TOK
    path.write_text(generate_output(["", *HYP[1:]], None), encoding="utf-8")
    hyps, targets = scoring.parse_fairseq_generate(path)
    assert hyps == ["", *HYP[1:]] and targets is None


def test_fairseq_generate_scoring(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    gen = tmp_path / "gen.out"
    gen.write_text(generate_output(BPE, TOK), encoding="utf-8")
    from_gen = run_json(
        ["--fairseq-generate", gen, "--references", files["refs"], "--remove-bpe"], capsys
    )
    plain = run_json(["--hypotheses", files["hyps"], "--references", files["refs"]], capsys)
    assert from_gen["bleu_tok_lc"] == pytest.approx(plain["bleu_tok_lc"])
    assert from_gen["warnings"] == []
    # targets that are not the references: a warning names the first differing id
    gen.write_text(generate_output(BPE, [*TOK[:2], "etwas anderes .", *TOK[3:]]), encoding="utf-8")
    result = run_json(["--fairseq-generate", gen, "--references", files["refs"]], capsys)
    assert any("first: id 2" in w for w in result["warnings"])


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        ([0, 1, 3, 4], "lacks hypotheses for ids [2]"),
        ([0, 1, 2, 2, 3, 4], "H-2 appears twice"),
        ([0, 1, 2, 3], "has 4 hypotheses but"),
        ([], "holds no H-<id> lines"),
    ],
)
def test_fairseq_generate_errors(
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture,
    ids: list[int],
    message: str,
) -> None:
    gen = tmp_path / "gen.out"
    gen.write_text("".join(f"H-{i}\t-0.5\t{TOK[i]}\n" for i in ids), encoding="utf-8")
    code = scoring.main(["--fairseq-generate", str(gen), "--references", str(files["refs"])])
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and str(gen) in err


def test_count_mismatch_names_both_files(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    short = write(tmp_path / "short.txt", HYP[:4])
    assert scoring.main(["--hypotheses", str(short), "--references", str(files["refs"])]) == 2
    err = capsys.readouterr().err
    assert f"{short} has 4 hypotheses but {files['refs']} has 5 references" in err
    raw = write(tmp_path / "raw.de", RAW[:3])
    argv = ["--hypotheses", str(files["hyps"]), "--references", str(files["refs"])]
    assert scoring.main([*argv, "--raw-references", str(raw)]) == 2
    assert f"{raw} has 3 references" in capsys.readouterr().err


def test_importing_the_module_registers_the_plugin() -> None:
    code = f"import fairseq_mmt_adv.evaluation.scoring; {REGISTERED}"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_module_exit_code(files: dict[str, Path], tmp_path: Path) -> None:
    short = write(tmp_path / "short.txt", HYP[:2])
    proc = subprocess.run(
        [sys.executable, "-m", "fairseq_mmt_adv.evaluation.scoring", "--hypotheses", str(short)]
        + ["--references", str(files["refs"])],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert "has 2 hypotheses" in proc.stderr and "has 5 references" in proc.stderr


class FakeRunner:
    """Records the METEOR command line and answers a fixed corpus score."""

    def __init__(self, result: float = 0.5) -> None:
        self.result = result
        self.commands: list[list[str]] = []

    def __call__(self, command: Sequence[str], hyps: Sequence[str], refs: Sequence[str]) -> float:
        self.commands.append(list(command))
        return self.result


@pytest.fixture
def fake_jar(tmp_path: Path) -> Path:
    jar = tmp_path / "meteor" / "meteor-1.5.jar"
    (jar.parent / "data").mkdir(parents=True)
    jar.write_bytes(b"")
    (jar.parent / "data" / "paraphrase-en.gz").write_bytes(b"")
    return jar


def test_meteor_without_paraphrase_table_is_exact_stem(fake_jar: Path) -> None:
    runner = FakeRunner(0.5)
    result = scoring.meteor(HYP, TOK, "de", str(fake_jar), runner=runner)
    assert result.name == "METEOR 1.5 (exact+stem)"
    assert result.score == pytest.approx(50)
    assert "paraphrase-de.gz" in result.note and "not comparable" in result.note
    (command,) = runner.commands
    assert command[:2] == ["java", "-Xmx2G"] and str(fake_jar) in command
    assert command[command.index("-l") + 1] == "de"
    assert command[command.index("-m") + 1] == "exact stem"
    assert "-stdio" in command and "-norm" in command


def test_meteor_with_paraphrase_table_is_full(fake_jar: Path) -> None:
    runner = FakeRunner(0.25)
    result = scoring.meteor(HYP, TOK, "en", str(fake_jar), runner=runner)
    assert (result.name, result.score, result.note) == ("METEOR 1.5", 25, "")
    assert "-m" not in runner.commands[0]
    (fake_jar.parent / "data" / "paraphrase-cz.gz").write_bytes(b"")
    result = scoring.meteor(HYP, TOK, "cs", str(fake_jar), runner=runner)
    assert result.name == "METEOR 1.5"
    assert runner.commands[1][runner.commands[1].index("-l") + 1] == "cz"


def test_meteor_unavailable(fake_jar: Path, tmp_path: Path) -> None:
    def failing(command: Sequence[str], hyps: Sequence[str], refs: Sequence[str]) -> float:
        raise scoring.MeteorError("METEOR exited with status 1: OutOfMemoryError")

    cases = [
        (None, "de", scoring.run_meteor_stdio, "java", "--meteor-jar"),
        (str(tmp_path / "none.jar"), "de", scoring.run_meteor_stdio, "java", "does not exist"),
        (str(fake_jar), "ja", FakeRunner(), "java", "not 'ja'"),
        (str(fake_jar), "de", scoring.run_meteor_stdio, "no-such-java-here", "not found on PATH"),
        (str(fake_jar), "de", failing, "java", "OutOfMemoryError"),
    ]
    for jar, lang, runner, java, reason in cases:
        result = scoring.meteor(HYP, TOK, lang, jar, java=java, runner=runner)
        assert (result.name, result.score) == ("METEOR", None)
        assert reason in result.note


def test_meteor_in_report(
    files: dict[str, Path], fake_jar: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = ["--hypotheses", str(files["hyps"]), "--references", str(files["refs"])]
    argv += ["--meteor-jar", str(fake_jar)]
    assert scoring.main(argv, meteor_runner=FakeRunner(0.4)) == 0
    out = capsys.readouterr().out
    assert "METEOR 1.5 (exact+stem): 40.00" in out
    assert "paraphrase-de.gz" in out
    result = run_json(argv, capsys, meteor_runner=FakeRunner(0.4))
    assert result["meteor"] == pytest.approx(40)
    assert result["meteor_name"] == "METEOR 1.5 (exact+stem)"


FAKE_METEOR = textwrap.dedent(
    """
    import sys
    log = open(sys.argv[1], "w", encoding="utf-8")
    for line in sys.stdin:
        log.write(line)
        log.flush()
        fields = line.rstrip("\\n").split(" ||| ")
        if fields[0] == "SCORE":
            print(len(fields[1].split()), len(fields[2].split()), flush=True)
        elif fields[0] == "EVAL":
            for stats in fields[1:]:
                print(0.5, flush=True)
            print(0.75, flush=True)
        else:
            sys.exit("bad line " + line)
    """
)


def test_stdio_protocol(tmp_path: Path) -> None:
    server = tmp_path / "fake_meteor.py"
    server.write_text(FAKE_METEOR)
    log = tmp_path / "log.txt"
    hyps = ["ein hund ||| läuft", "zwei  männer"]
    score = scoring.run_meteor_stdio([sys.executable, str(server), str(log)], hyps, TOK[:2])
    assert score == 0.75
    assert log.read_text(encoding="utf-8").splitlines() == [
        f"SCORE ||| {TOK[0]} ||| ein hund läuft",
        f"SCORE ||| {TOK[1]} ||| zwei männer",
        "EVAL ||| 7 3 ||| 8 2",
    ]


def test_stdio_failure_reports_stderr(tmp_path: Path) -> None:
    server = tmp_path / "broken.py"
    server.write_text("import sys\nsys.exit('Error: file not found (paraphrase-de.gz)')\n")
    with pytest.raises(scoring.MeteorError, match="paraphrase-de.gz"):
        scoring.run_meteor_stdio([sys.executable, str(server)], HYP, TOK)


@pytest.mark.skipif(
    not (os.environ.get("METEOR_JAR") and shutil.which("java")),
    reason="needs java and a METEOR 1.5 jar in METEOR_JAR",
)
def test_real_meteor_jar() -> None:
    jar = os.environ["METEOR_JAR"]
    same = scoring.meteor(TOK, TOK, "de", jar)
    other = scoring.meteor(HYP, TOK, "de", jar)
    has_de = (Path(jar).resolve().parent / "data" / "paraphrase-de.gz").is_file()
    assert same.name == ("METEOR 1.5" if has_de else "METEOR 1.5 (exact+stem)")
    assert same.score is not None and other.score is not None, (same.note, other.note)
    assert same.score > other.score > 0
