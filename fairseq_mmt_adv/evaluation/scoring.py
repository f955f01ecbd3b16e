"""Score translations as Multi30K papers do: sacreBLEU, tokenized lowercased BLEU, chrF, METEOR.

Usage::

    python -m fairseq_mmt_adv.evaluation.scoring --fairseq-generate gen.out \\
        --references OUT/text/test.de [--raw-references OUT/text/test.raw.de --detokenize de] \\
        [--remove-bpe] [--meteor-jar meteor-1.5.jar] [--json]
    python -m fairseq_mmt_adv.evaluation.scoring --hypotheses hyp.txt --references OUT/text/test.de

``OUT/text`` is written by ``scripts/prepare-multi30k.sh``: ``{split}.{lang}`` holds the tokenized
lowercased references, ``{split}.raw.{lang}`` the untokenized ones.

Scores (all on a 0-100 scale):

- ``bleu_tok_lc``: the BLEU that Multi30K papers report, ``multi-bleu.perl -lc`` style: sacreBLEU
  with ``tokenize='none', lowercase=True`` on the tokenized hypotheses (BPE removed) and references.
- ``bleu_sacre`` / ``chrf``: sacreBLEU and chrF with their signatures, on the detokenized
  hypotheses (``--detokenize LANG``, sacremoses) against ``--raw-references``; without raw
  references on the tokenized text with ``tokenize='none'`` (the report says so). Models trained
  on the official (lowercased) files need ``--sacrebleu-lowercase`` against raw references.
- ``meteor``: METEOR 1.5 on the tokenized text, run as
  ``java -Xmx2G -jar meteor-1.5.jar - - -l LANG -norm -stdio``. Get the jar from the Meteor 1.5
  release of CMU (https://www.cs.cmu.edu/~alavie/METEOR/, ``meteor-1.5.tar.gz``): its ``data/``
  folder, beside the jar, holds the paraphrase tables ``paraphrase-{en,cz,de,es,fr,ar}.gz``
  that METEOR 1.5 uses for those languages. Give the jar with ``--meteor-jar`` or ``METEOR_JAR``.
  The jar shipped in pycocoevalcap has the English table only: for another language the score is
  computed with the exact and stem modules only (``-m "exact stem"``) and reported as
  ``METEOR 1.5 (exact+stem)``, which is lower than and not comparable with published METEOR 1.5.
  Without a jar or java, METEOR is reported as unavailable, with the reason.

Hypotheses come one per line (``--hypotheses``) or from fairseq-generate's output
(``--fairseq-generate``: the ``H-<id>`` lines, in id order; ``T-<id>`` lines, when present, are
compared with the references to catch a wrong reference file). Errors exit with status 2.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fairseq.data.data_utils import post_process

# METEOR 1.5 languages with full support (and a paraphrase table in the release): ISO -> Meteor.
METEOR_LANGUAGES = {"en": "en", "cs": "cz", "de": "de", "es": "es", "fr": "fr"}
METEOR_FULL = "METEOR 1.5"
METEOR_EXACT_STEM = "METEOR 1.5 (exact+stem)"

# A METEOR runner gets the command line, the hypotheses and the references and returns the corpus
# score in [0, 1]; it raises MeteorError when the scorer cannot run.
MeteorRunner = Callable[[Sequence[str], Sequence[str], Sequence[str]], float]


class ScoringError(Exception):
    """Inputs that cannot be scored; the message names the files and the fix."""


class MeteorError(Exception):
    """METEOR could not be run; the message says why."""


@dataclass
class MeteorResult:
    name: str
    score: float | None
    note: str = ""


@dataclass
class Scores:
    n_sentences: int
    bleu_sacre: float
    bleu_sacre_signature: str
    bleu_sacre_input: str
    bleu_tok_lc: float
    bleu_tok_lc_signature: str
    chrf: float
    chrf_signature: str
    meteor: float | None
    meteor_name: str
    meteor_note: str
    warnings: list[str] = field(default_factory=list)


def read_lines(path: str | Path) -> list[str]:
    """Lines of a UTF-8 file, split on newlines only (not on other Unicode line breaks)."""
    lines = Path(path).read_text(encoding="utf-8").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


def remove_bpe(line: str, symbol: str = "@@ ") -> str:
    """Undo BPE with fairseq's own ``--remove-bpe`` (``data_utils.post_process``): ``symbol``
    is one of its names: ``@@ `` (or ``subword_nmt``), ``sentencepiece``, ``wordpiece``..."""
    try:
        return post_process(line, symbol)
    except NotImplementedError as err:
        raise ScoringError(
            f"--remove-bpe {symbol!r}: fairseq's post_process knows no such symbol ({err}); give "
            "'@@ ' (subword-nmt), sentencepiece, wordpiece, letter or _EOW"
        ) from err


_GENERATE_LINE = re.compile(r"^([HT])-(\d+)\t(.*)$")


def parse_fairseq_generate(path: str | Path) -> tuple[list[str], list[str] | None]:
    """Hypotheses (``H-<id>``) and targets (``T-<id>``, or None) of fairseq-generate, by id.

    Raises ScoringError when an id is repeated (``--nbest`` > 1) or ids 0..N-1 are not all there.
    """
    found: dict[str, dict[int, str]] = {"H": {}, "T": {}}
    for number, line in enumerate(read_lines(path), 1):
        match = _GENERATE_LINE.match(line)
        if not match:
            continue
        kind, sid, rest = match[1], int(match[2]), match[3]
        if sid in found[kind]:
            raise ScoringError(
                f"{path}:{number}: {kind}-{sid} appears twice; score the output of "
                "fairseq-generate with --nbest 1 (one hypothesis per sentence)"
            )
        if kind == "H":  # H-<id> <score> <text>
            rest = rest.split("\t", 1)[1] if "\t" in rest else ""
        found[kind][sid] = rest
    hyps, targets = found["H"], found["T"]
    if not hyps:
        raise ScoringError(f"{path} holds no H-<id> lines: is it the output of fairseq-generate?")
    missing = sorted(set(range(max(hyps) + 1)) - set(hyps))
    if missing:
        raise ScoringError(
            f"{path} lacks hypotheses for ids {missing[:10]}{' ...' if len(missing) > 10 else ''} "
            f"({len(hyps)} H- lines, highest id {max(hyps)}): the output is incomplete; "
            "rerun fairseq-generate on the whole split"
        )
    ordered_targets = None
    if targets:
        if sorted(targets) != sorted(hyps):
            raise ScoringError(f"{path}: the T-<id> lines do not have the same ids as the H- lines")
        ordered_targets = [targets[i] for i in range(len(targets))]
    return [hyps[i] for i in range(len(hyps))], ordered_targets


def check_count(hyp_name: str, n_hyps: int, ref_name: str, n_refs: int) -> None:
    if n_hyps != n_refs:
        raise ScoringError(
            f"{hyp_name} has {n_hyps} hypotheses but {ref_name} has {n_refs} references: "
            "score the hypotheses of the same split as the references"
        )


def check_targets(targets: Sequence[str], references: Sequence[str]) -> str | None:
    """A warning when fairseq-generate's targets differ from the references (unknowns aside)."""
    differ = [
        i
        for i, (t, r) in enumerate(zip(targets, references, strict=True))
        if t != r and "<unk>" not in t
    ]
    if not differ:
        return None
    return (
        f"{len(differ)} T- lines of the fairseq-generate output differ from the references "
        f"(first: id {differ[0]}: {targets[differ[0]]!r} vs {references[differ[0]]!r}): check "
        "--references (split, tokenization) and --remove-bpe"
    )


def detokenize(lines: Sequence[str], lang: str) -> list[str]:
    """Moses detokenization (sacremoses), which also unescapes ``&apos;`` and the like."""
    try:
        from sacremoses import MosesDetokenizer
    except ImportError as err:
        raise ScoringError("--detokenize needs sacremoses (pip install sacremoses)") from err
    detok = MosesDetokenizer(lang=lang)
    return [detok.detokenize(line.split()) for line in lines]


def run_meteor_stdio(command: Sequence[str], hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Run METEOR 1.5 with ``-stdio``: a ``SCORE ||| ref ||| hyp`` line per sentence answers with
    its statistics; ``EVAL ||| stats ||| ...`` answers with one score per sentence, then the
    corpus score."""
    if shutil.which(command[0]) is None:
        raise MeteorError(f"{command[0]} not found on PATH (install a Java runtime)")
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8") as stderr:
        proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            encoding="utf-8",
        )
        assert proc.stdin is not None and proc.stdout is not None

        def ask(line: str, answers: int) -> list[str]:
            try:
                proc.stdin.write(line + "\n")
                proc.stdin.flush()
            except BrokenPipeError:  # METEOR died: the empty replies below report it
                pass
            replies = [proc.stdout.readline() for _ in range(answers)]
            if not all(replies):
                proc.wait()
                stderr.seek(0)
                tail = stderr.read().strip().splitlines()[-3:]
                raise MeteorError(f"METEOR exited with status {proc.returncode}: {' '.join(tail)}")
            return [reply.strip() for reply in replies]

        try:
            stats = [
                ask(f"SCORE ||| {clean(r)} ||| {clean(h)}", 1)[0]
                for h, r in zip(hyps, refs, strict=True)
            ]
            return float(ask("EVAL ||| " + " ||| ".join(stats), len(stats) + 1)[-1])
        finally:
            proc.kill()
            proc.wait()


def clean(text: str) -> str:
    """Text safe inside one METEOR stdio field."""
    return " ".join(text.replace("|||", "").split())


def meteor(
    hyps: Sequence[str],
    refs: Sequence[str],
    lang: str,
    jar: str | None,
    java: str = "java",
    runner: MeteorRunner = run_meteor_stdio,
) -> MeteorResult:
    """METEOR 1.5 of tokenized text (0-100), named after the modules the jar can run for ``lang``.

    Never raises: without a jar, java or support for ``lang`` the score is None and the note says
    why.
    """
    if not jar:
        return MeteorResult("METEOR", None, "no METEOR 1.5 jar: give --meteor-jar or METEOR_JAR")
    if not os.path.isfile(jar):
        return MeteorResult("METEOR", None, f"METEOR jar {jar} does not exist")
    code = METEOR_LANGUAGES.get(lang)
    if code is None:
        return MeteorResult(
            "METEOR", None, f"METEOR 1.5 supports {sorted(METEOR_LANGUAGES)} fully, not {lang!r}"
        )
    command = [java, "-Xmx2G", "-Dfile.encoding=UTF-8", "-jar", jar]
    command += ["-", "-", "-l", code, "-norm", "-stdio"]
    paraphrases = Path(jar).resolve().parent / "data" / f"paraphrase-{code}.gz"
    if paraphrases.is_file():
        name, note = METEOR_FULL, ""
    else:
        command += ["-m", "exact stem"]
        name = METEOR_EXACT_STEM
        note = (
            f"the paraphrase table {paraphrases} is missing (the pycocoevalcap jar has English "
            "only), so METEOR ran with the exact and stem modules: not comparable with published "
            "METEOR 1.5; use the jar of the Meteor 1.5 release with its data/ folder"
        )
    try:
        score = runner(command, hyps, refs)
    except (MeteorError, OSError, ValueError) as err:
        return MeteorResult("METEOR", None, f"{name} failed: {err}")
    return MeteorResult(name, 100 * score, note)


def tok_lc_bleu():
    """The BLEU of Multi30K papers (``bleu_tok_lc``): sacreBLEU on tokenized text, lowercased."""
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize="none", lowercase=True, force=True)


def sacrebleu_inputs(hyps, refs, raw_refs, detokenize_lang, sacre_lowercase) -> tuple:
    """What sacreBLEU and chrF score: (hypotheses, references, tokenize, a description of the
    input, warnings), from tokenized text or against raw references."""
    warnings = []
    if raw_refs is None:
        sacre_hyps, sacre_refs, tokenize = list(hyps), list(refs), "none"
        sacre_input = (
            "tokenized text with tokenize='none' (not comparable with standard sacreBLEU: give "
            "--raw-references and --detokenize LANG)"
        )
        if detokenize_lang:
            warnings.append("--detokenize without --raw-references has no effect")
    else:
        sacre_refs, tokenize = list(raw_refs), "13a"
        if detokenize_lang:
            sacre_hyps = detokenize(hyps, detokenize_lang)
            sacre_input = "detokenized hypotheses vs raw references"
        else:
            sacre_hyps = list(hyps)
            sacre_input = "hypotheses as given vs raw references"
            warnings.append(
                "--raw-references without --detokenize: the hypotheses are taken as detokenized"
            )
        if not sacre_lowercase and not any(map(str.isupper, "".join(hyps))):
            warnings.append(
                "the hypotheses are all lowercase but sacreBLEU and chrF are case-sensitive: give "
                "--sacrebleu-lowercase for a model trained on lowercased text"
            )
    return sacre_hyps, sacre_refs, tokenize, sacre_input, warnings


def score(
    hyps: Sequence[str],
    refs: Sequence[str],
    lang: str,
    raw_refs: Sequence[str] | None = None,
    detokenize_lang: str | None = None,
    sacre_lowercase: bool = False,
    meteor_jar: str | None = None,
    meteor_runner: MeteorRunner = run_meteor_stdio,
    java: str = "java",
) -> Scores:
    """All scores of tokenized hypotheses (BPE removed) against tokenized references."""
    from sacrebleu.metrics import BLEU, CHRF

    sacre_hyps, sacre_refs, tokenize, sacre_input, warnings = sacrebleu_inputs(
        hyps, refs, raw_refs, detokenize_lang, sacre_lowercase
    )
    sacre_bleu = BLEU(tokenize=tokenize, lowercase=sacre_lowercase, force=tokenize == "none")
    sacre_result = sacre_bleu.corpus_score(sacre_hyps, [sacre_refs])
    chrf = CHRF(lowercase=sacre_lowercase)
    chrf_result = chrf.corpus_score(sacre_hyps, [sacre_refs])
    tok_lc = tok_lc_bleu()
    tok_lc_result = tok_lc.corpus_score(list(hyps), [list(refs)])
    met = meteor(hyps, refs, lang, meteor_jar, java=java, runner=meteor_runner)
    return Scores(
        n_sentences=len(hyps),
        bleu_sacre=sacre_result.score,
        bleu_sacre_signature=str(sacre_bleu.get_signature()),
        bleu_sacre_input=sacre_input,
        bleu_tok_lc=tok_lc_result.score,
        bleu_tok_lc_signature=str(tok_lc.get_signature()),
        chrf=chrf_result.score,
        chrf_signature=str(chrf.get_signature()),
        meteor=met.score,
        meteor_name=met.name,
        meteor_note=met.note,
        warnings=warnings,
    )


def format_report(scores: Scores, hyp_name: str, ref_name: str) -> str:
    meteor_value = "unavailable" if scores.meteor is None else f"{scores.meteor:.2f}"
    lines = [
        f"{hyp_name} vs {ref_name} ({scores.n_sentences} sentences)",
        f"  BLEU (tok, lc)  {scores.bleu_tok_lc:6.2f}  multi-bleu -lc style, "
        f"{scores.bleu_tok_lc_signature}",
        f"  sacreBLEU       {scores.bleu_sacre:6.2f}  {scores.bleu_sacre_signature}",
        f"                          on {scores.bleu_sacre_input}",
        f"  chrF            {scores.chrf:6.2f}  {scores.chrf_signature}",
        f"  {scores.meteor_name}: {meteor_value}",
    ]
    if scores.meteor_note:
        lines.append(f"                          {scores.meteor_note}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fairseq_mmt_adv.evaluation.scoring",
        description="Score translations: sacreBLEU, tokenized lowercased BLEU, chrF and METEOR.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--hypotheses", metavar="FILE", help="hypotheses, one per line")
    source.add_argument("--fairseq-generate", metavar="FILE", help="output of fairseq-generate")
    parser.add_argument(
        "--references",
        metavar="FILE",
        required=True,
        help="tokenized references, one per line (e.g. OUT/text/test.de)",
    )
    parser.add_argument(
        "--raw-references",
        metavar="FILE",
        help="untokenized references for sacreBLEU and chrF (e.g. OUT/text/test.raw.de)",
    )
    parser.add_argument(
        "--lang", help="target language (default: the extension of --references, e.g. de)"
    )
    parser.add_argument(
        "--remove-bpe",
        nargs="?",
        const="@@ ",
        metavar="SYMBOL",
        help="remove BPE from hypotheses (and T- lines) as fairseq does; SYMBOL: '@@ ' (the "
        "default), subword_nmt, sentencepiece...",
    )
    parser.add_argument(
        "--detokenize", metavar="LANG", help="Moses-detokenize hypotheses for sacreBLEU and chrF"
    )
    parser.add_argument(
        "--sacrebleu-lowercase",
        action="store_true",
        help="case-insensitive sacreBLEU and chrF (for a model trained on lowercased text)",
    )
    parser.add_argument(
        "--meteor-jar",
        metavar="JAR",
        default=os.environ.get("METEOR_JAR"),
        help="meteor-1.5.jar (default: $METEOR_JAR); see the module docstring",
    )
    parser.add_argument("--java", default="java", help="java executable (default: java)")
    parser.add_argument("--json", action="store_true", help="print the scores as JSON")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None, meteor_runner: MeteorRunner = run_meteor_stdio) -> int:
    args = parse_args(argv)
    try:
        lang = args.lang or Path(args.references).suffix.lstrip(".")
        if not re.fullmatch(r"[a-z]{2}", lang):
            raise ScoringError(f"cannot tell the language from {args.references}: give --lang")
        refs = read_lines(args.references)
        targets = None
        if args.fairseq_generate:
            hyp_name = args.fairseq_generate
            hyps, targets = parse_fairseq_generate(hyp_name)
        else:
            hyp_name = args.hypotheses
            hyps = read_lines(hyp_name)
        check_count(hyp_name, len(hyps), args.references, len(refs))
        raw_refs = None
        if args.raw_references:
            raw_refs = read_lines(args.raw_references)
            check_count(hyp_name, len(hyps), args.raw_references, len(raw_refs))
        bpe_left = not args.remove_bpe and any("@@ " in h for h in hyps)
        if args.remove_bpe:
            hyps = [remove_bpe(h, args.remove_bpe) for h in hyps]
            if targets:
                targets = [remove_bpe(t, args.remove_bpe) for t in targets]
        scores = score(
            hyps,
            refs,
            lang,
            raw_refs,
            args.detokenize,
            args.sacrebleu_lowercase,
            args.meteor_jar,
            meteor_runner,
            args.java,
        )
    except (ScoringError, OSError, UnicodeDecodeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if bpe_left:
        scores.warnings.append("the hypotheses hold '@@ ' BPE separators: give --remove-bpe")
    warning = check_targets(targets, refs) if targets else None
    if warning:
        scores.warnings.append(warning)
    if args.json:
        print(json.dumps(asdict(scores), indent=2))
    else:
        print(format_report(scores, hyp_name, args.references))
    for warning in scores.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
