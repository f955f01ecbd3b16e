"""recipes.systems: the systems defined once (flags, weights, run names, TSV form)."""

import contextlib
import dataclasses
import io
import subprocess
import sys
from pathlib import Path

import pytest
from fairseq import options
from helpers import PACKAGE_DIR, REGISTERED

from fairseq_mmt_adv.criterions.adversarial_reconstruction import (
    DEFAULT_LAMBDA_R,
    AdversarialReconstructionCriterionConfig,
)
from fairseq_mmt_adv.fusions.registry import (
    DECODER_CONTEXT,
    ENCODER_OUTPUT,
    FUSION_REGISTRY,
    Fusion,
    register_fusion,
)
from fairseq_mmt_adv.recipes import systems

REPO = Path(__file__).resolve().parents[1]
CRITIC = "--lambda-gp 10 --critic-lr 0.0002 --critic-betas '(0.5, 0.9)' --critic-iters 5"
NLL = "--criterion label_smoothed_cross_entropy --label-smoothing 0"
MODE = "--criterion adversarial_reconstruction --reconstruction"
# The paper's systems (section 5.1, Table 4) as fairseq-train flags, written out.
PAPER = {
    "baseline": f"--visual-fusion ctx-mul {NLL}",
    "baseline-nov": f"--visual-fusion none {NLL}",
    "mse": f"--visual-fusion ctx-mul {MODE} mse --lambda-r 0.2",
    "mse-nov": f"--visual-fusion none {MODE} mse --lambda-r 0.2",
    "q-waae": f"--visual-fusion ctx-mul {MODE} q-waae --lambda-r 0.2 --lambda-a 0.2 {CRITIC}",
    "q-waae-nov": f"--visual-fusion none {MODE} q-waae --lambda-r 0.2 --lambda-a 0.2 {CRITIC}",
    "g-wgan": f"--visual-fusion ctx-mul {MODE} g-wgan --noise-dim 128 --lambda-r 0 --lambda-a 0.2 "
    + CRITIC,
}


def words(flags: list[str]) -> str:
    return " ".join(f"'{w}'" if " " in w else w for w in flags)


@pytest.mark.parametrize("name", sorted(PAPER))
def test_the_papers_systems(name: str) -> None:
    assert words(systems.flags(name)) == PAPER[name]


def test_every_family_has_its_baseline_and_modes() -> None:
    assert systems.names("cgru") == [
        "text-only",
        "mse-nov",
        "q-waae-nov",
        "g-wgan-nov",
        "ctx-mul",
        "mse",
        "q-waae",
        "g-wgan",
    ]
    transformer = systems.names("transformer")
    assert len(transformer) == 20 and "gated+q-waae" in transformer
    assert systems.alone("transformer") == ["transformer-text-only", "gated", "selective-attn"]
    for family, baseline in systems.BASELINES.items():
        assert systems.get(baseline).family == family
        assert systems.get(baseline).reconstruction is None
    assert systems.get("baseline") == systems.get("ctx-mul")  # made when asked: equal
    assert systems.get("selective-attn+g-wgan").fusion == "selective-attn"


@contextlib.contextmanager
def registered_fusion(name: str, *sites: str, identity: str | None = None):
    """A visual fusion ``name`` in the registry while the block runs (an identity on the text;
    ``identity``: the identity initialization it declares)."""

    @register_fusion(name, sites=sites, identity=identity)
    class Passing(Fusion):
        uses_image = False

        def forward(self, fused, visual):
            return fused

        def init_identity(self) -> None:
            pass

    try:
        yield
    finally:
        del FUSION_REGISTRY[name]


def test_a_registered_fusion_joins_its_familys_systems(capsys) -> None:
    with registered_fusion("foo", ENCODER_OUTPUT):
        assert systems.fusions("transformer") == ["none", "gated", "selective-attn", "foo"]
        assert systems.fusions("cgru") == ["none", "ctx-mul"]  # where the cGRU fuses: not there
        # after the other fusions' systems, before the fine-tuned ones; foo declares no
        # identity: no finetuned-foo
        assert systems.names("transformer")[12:17] == [
            "foo",
            "foo+mse",
            "foo+q-waae",
            "foo+g-wgan",
            "finetuned-gated",
        ]
        assert not [name for name in systems.all_systems() if name.startswith("finetuned-foo")]
        assert systems.get("foo+q-waae") == systems.System(
            "foo+q-waae", "transformer", "foo", "q-waae"
        )
        args = parse("foo+q-waae")  # --visual-fusion takes it on the family's architecture
        assert (args.visual_fusion, args.reconstruction) == ("foo", "q-waae")
        assert systems.main(["--list"]) == 0
        assert "foo+g-wgan " in capsys.readouterr().out
    assert "foo" not in systems.fusions("transformer") and "foo" not in systems.all_systems()


def test_a_registered_fusion_with_an_identity_is_fine_tuned_from_the_text_model() -> None:
    with registered_fusion("foo", ENCODER_OUTPUT, identity="approximate"):
        assert systems.finetunable("transformer") == ["gated", "selective-attn", "foo"]
        assert systems.names("transformer")[-4:] == [
            "finetuned-foo",
            "finetuned-foo+mse",
            "finetuned-foo+q-waae",
            "finetuned-foo+g-wgan",
        ]
        assert systems.get("finetuned-foo+g-wgan") == systems.System(
            "finetuned-foo+g-wgan", "transformer", "foo", "g-wgan", "transformer-text-only"
        )
        assert systems.flags("finetuned-foo+mse") == systems.flags("foo+mse")
    assert "finetuned-foo" not in systems.all_systems()
    with registered_fusion("both", ENCODER_OUTPUT, DECODER_CONTEXT, identity="exact"):
        # named after its from-scratch systems; the start: the family's text-only system
        assert systems.get("finetuned-transformer-both").start_from == "transformer-text-only"
        assert systems.get("finetuned-cgru-both+mse").start_from == "text-only"


def test_the_finetuned_systems_are_their_fusions_from_the_text_model() -> None:
    """finetuned-F(+MODE): F's flags, started from the text-only system; none of ctx-mul (no
    identity) nor of none (the text model itself)."""
    finetuned = [name for name in systems.all_systems() if name.startswith("finetuned-")]
    assert finetuned == [
        f"finetuned-{fusion}{mode}"
        for fusion in ("gated", "selective-attn")
        for mode in ("", "+mse", "+q-waae", "+g-wgan")
    ]
    assert systems.names("transformer")[-8:] == finetuned  # after the family's other systems
    assert systems.finetunable("cgru") == [] and systems.text_only("cgru") == "text-only"
    for name in finetuned:
        system, scratch = systems.get(name), systems.get(name.removeprefix("finetuned-"))
        assert system.start_from == "transformer-text-only"
        assert (system.family, system.fusion, system.reconstruction) == (
            scratch.family,
            scratch.fusion,
            scratch.reconstruction,
        )
        assert systems.flags(name, "0.1") == systems.flags(scratch.name, "0.1")
        assert scratch.start_from is None
    assert systems.run_name("finetuned-gated+q-waae") == "finetuned-gated+q-waae_lr0.2_la0.2"


def test_freeze_text_model_is_for_the_finetuned_systems() -> None:
    frozen = systems.flags("finetuned-selective-attn+mse", freeze_text_model=True)
    assert frozen[:3] == ["--visual-fusion", "selective-attn", "--freeze-text-model"]
    assert [word for word in frozen if word != "--freeze-text-model"] == systems.flags(
        "finetuned-selective-attn+mse"
    )
    assert "--freeze-text-model" not in systems.flags("finetuned-gated")
    name = systems.run_name("finetuned-gated+g-wgan", True, lambda_a="0.5")
    assert name == "finetuned-gated+g-wgan_z128_lr0_la0.5_frozen"
    rows = systems.settings_rows("finetuned-gated", "0.1", freeze_text_model=True)
    assert ("RUN_NAME", "finetuned-gated_frozen") in rows and (
        "FLAG",
        "--freeze-text-model",
    ) in rows
    message = (
        "--freeze-text-model is for the systems fine-tuned from a text model (finetuned-*, e.g. "
        "finetuned-gated; see --list), not gated, which trains from scratch: drop "
        "--freeze-text-model"
    )
    for refused in (
        lambda: systems.flags("gated", freeze_text_model=True),
        lambda: systems.run_name("gated", freeze_text_model=True),
        lambda: systems.settings_rows("gated", freeze_text_model=True),
    ):
        with pytest.raises(systems.SystemSpecError) as error:
            refused()
        assert str(error.value) == message
    with pytest.raises(systems.SystemSpecError, match="not baseline, which trains from scratch"):
        systems.flags("baseline", freeze_text_model=True)


def test_a_fusion_of_both_families_is_named_after_each() -> None:
    with registered_fusion("both", ENCODER_OUTPUT, DECODER_CONTEXT):
        assert systems.system_names("cgru", "both")["mse"] == "cgru-both+mse"
        assert systems.get("transformer-both").fusion == "both"
        assert systems.get("cgru-both").family == "cgru"
    clash = pytest.raises(systems.SystemSpecError, match="register the fusion under another")
    with registered_fusion("mse", DECODER_CONTEXT), clash:  # the name of ctx-mul's mse
        systems.all_systems()


def test_the_flags_carry_the_criterions_defaults() -> None:
    """systems.py reads the weights and the critic from the criterion (the paper's values:
    PAPER above); as flag text, which fairseq parses back to the same values."""
    config = AdversarialReconstructionCriterionConfig()
    assert {mode: str(value).removesuffix(".0") for mode, value in DEFAULT_LAMBDA_R.items()} == (
        systems.DEFAULT_LAMBDA_R
    )
    assert config.lambda_a == float(systems.DEFAULT_LAMBDA_A)
    assert config.noise_dim == int(systems.DEFAULT_NOISE_DIM)
    critic = dict(zip(systems.PAPER_CRITIC[::2], systems.PAPER_CRITIC[1::2], strict=True))
    assert config.lambda_gp == float(critic["--lambda-gp"])
    assert config.critic_lr == float(critic["--critic-lr"])
    assert config.critic_betas == critic["--critic-betas"]
    assert config.critic_iters == int(critic["--critic-iters"])
    assert config.label_smoothing == 0  # the modes' NLL is the NLL_CRITERION's
    fields = {field.name for field in dataclasses.fields(config)}
    assert {key for key in systems.FLAG_OF} <= fields
    for name in ("q-waae", "g-wgan-nov"):
        args = parse(name)
        for field in ("lambda_a", "lambda_gp", "critic_lr", "critic_betas", "critic_iters"):
            assert getattr(args, field) == getattr(config, field), (name, field)
    assert parse("g-wgan").noise_dim == config.noise_dim
    assert parse("mse").lambda_r == DEFAULT_LAMBDA_R["mse"]


def parse(name: str, **weights) -> object:
    """fairseq-train's arguments for a system (the data directory is not read)."""
    arch = systems.ARCH_PREFIXES[systems.get(name).family]
    argv = ["data", "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation"]
    argv += ["--arch", arch, *systems.flags(name, **weights)]
    return options.parse_args_and_arch(options.get_training_parser(), argv)


@pytest.mark.parametrize("name", list(systems.all_systems()))
def test_flags_parse_with_fairseqs_parser(name: str) -> None:
    system = systems.get(name)
    args = parse(name)
    assert args.visual_fusion == system.fusion
    if system.reconstruction is None:
        assert args.criterion == "label_smoothed_cross_entropy" and args.label_smoothing == 0
        return
    assert (args.criterion, args.reconstruction) == (
        "adversarial_reconstruction",
        system.reconstruction,
    )
    assert args.lambda_r == float(systems.DEFAULT_LAMBDA_R[system.reconstruction])


def test_a_frozen_systems_flags_reach_the_model() -> None:
    assert parse("finetuned-gated+q-waae", freeze_text_model=True).freeze_text_model is True
    assert parse("finetuned-gated+q-waae").freeze_text_model is False


def test_weights_reach_the_criterion_and_the_run_name() -> None:
    args = parse("g-wgan", noise_dim=256, lambda_a="0.5")
    assert (args.noise_dim, args.lambda_r, args.lambda_a) == (256, 0.0, 0.5)
    assert systems.run_name("g-wgan", noise_dim=256, lambda_a="0.5") == "g-wgan_z256_lr0_la0.5"
    assert systems.run_name("baseline") == "baseline"  # the alias, as asked
    assert systems.run_name("mse-nov", lambda_r="") == "mse-nov_lr0.2"  # "": the default


@pytest.mark.parametrize("name", ["gated", "selective-attn+g-wgan", "transformer-text-only+mse"])
def test_label_smoothing_reaches_either_criterion(name: str) -> None:
    system = systems.get(name)
    argv = ["data", "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation"]
    argv += ["--arch", "transformer_mmt_tiny", *systems.flags(name, label_smoothing="0.1")]
    args = options.parse_args_and_arch(options.get_training_parser(), argv)
    assert args.label_smoothing == 0.1 and args.visual_fusion == system.fusion
    assert systems.flags(name, label_smoothing="").count("--label-smoothing") == (
        system.reconstruction is None  # "": the paper's NLL (0) where the criterion needs it
    )
    with pytest.raises(systems.SystemSpecError, match="--label-smoothing must be a number"):
        systems.flags(name, label_smoothing="-0.1")


@pytest.mark.parametrize(
    "name, weights, message",
    [
        ("bert", {}, "--system must be one of baseline, baseline-nov, text-only"),
        (
            "baseline",
            {"lambda_r": 1},
            "baseline has no lambda_r, lambda_a or noise: drop --lambda-r",
        ),
        ("mse", {"lambda_a": 1, "noise_dim": 2}, "drop --noise-dim, --lambda-a"),
        ("q-waae", {"noise_dim": 64}, "q-waae has no noise (--noise-dim is for g-wgan)"),
        ("q-waae", {"lambda_r": "-1"}, "--lambda-r must be a number >= 0, not '-1'"),
        ("g-wgan", {"lambda_a": "1e-3"}, "--lambda-a must be a number >= 0, not '1e-3'"),
        ("g-wgan", {"noise_dim": "0"}, "--noise-dim must be a positive integer, not '0'"),
        ("mse", {"lambda_x": 1}, "unknown weights ['lambda_x']"),
    ],
)
def test_errors_name_the_flag(name: str, weights: dict, message: str) -> None:
    with pytest.raises(systems.SystemSpecError) as error:
        systems.flags(name, **weights)
    assert message in str(error.value)


def run_cli(*argv: str) -> subprocess.CompletedProcess:
    """``python -m fairseq_mmt_adv.recipes.systems ARGV`` in-process (train.sh's tests run the
    command itself): its status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = systems.main(list(argv))
        except SystemExit as exit_:
            status = exit_.code
    return subprocess.CompletedProcess(argv, status, out.getvalue(), err.getvalue())


def test_importing_the_module_registers_the_plugin() -> None:
    code = (
        "import fairseq_mmt_adv.recipes.systems as s; s.flags('q-waae'); s.describe(); "
        f"{REGISTERED}"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# bash reads the TSV form with plain `read`, as examples/multi30k/train.sh does (no eval)
READ_TSV = r"""
flags=()
while IFS=$'\t' read -r key value; do
  case $key in
    FLAG) flags+=("$value") ;;
    *) printf -v "$key" '%s' "$value" ;;
  esac
done
printf '%s\n' "$SYSTEM $FAMILY $ARCH_PREFIX $BASELINE [$START_FROM] $RUN_NAME" "${flags[@]}"
"""


def test_the_tsv_form_reads_into_bash() -> None:
    done = run_cli("g-wgan-nov", "--lambda-a", "0.4", "--tsv")
    assert done.returncode == 0, done.stderr
    read = subprocess.run(
        ["bash", "-c", READ_TSV], input=done.stdout, capture_output=True, text=True
    )
    first, *flags = read.stdout.splitlines()
    assert first == "g-wgan-nov cgru cgru_mmt ctx-mul [] g-wgan-nov_z128_lr0_la0.4"
    assert flags == systems.flags("g-wgan-nov", lambda_a="0.4")
    assert "(0.5, 0.9)" in flags  # one word
    smoothed = [value for key, value in systems.settings_rows("gated+mse", "0.1") if key == "FLAG"]
    assert "--reconstruction mse --lambda-r 0.2 --label-smoothing 0.1" in " ".join(smoothed)
    done = run_cli("finetuned-gated+mse", "--freeze-text-model", "--tsv")
    read = subprocess.run(
        ["bash", "-c", READ_TSV], input=done.stdout, capture_output=True, text=True
    )
    first, *flags = read.stdout.splitlines()
    assert first == (
        "finetuned-gated+mse transformer transformer_mmt transformer-text-only "
        "[transformer-text-only] finetuned-gated+mse_lr0.2_frozen"
    )
    assert flags == systems.flags("finetuned-gated+mse", freeze_text_model=True)


def test_the_rows_keys_in_their_order() -> None:
    """START_FROM after BASELINE, before RUN_NAME: empty for a system trained from scratch."""
    for name, start in (("gated", ""), ("finetuned-gated", "transformer-text-only")):
        rows = systems.settings_rows(name)
        keys = [key for key, _ in rows]
        assert keys[:6] == ["SYSTEM", "FAMILY", "ARCH_PREFIX", "BASELINE", "START_FROM", "RUN_NAME"]
        assert set(keys[6:]) == {"FLAG"} and dict(rows[:6])["START_FROM"] == start


def test_requests_are_answered_in_one_table(monkeypatch, capsys) -> None:
    """--requests: each request's rows prefixed by its words; FAMILY=X smooths that family's."""
    requests = (
        "g-wgan-nov --lambda-a=0.4\n\n"
        "  gated+mse   --label-smoothing=cgru= --label-smoothing=transformer=0.1\n"
        "mse --label-smoothing=transformer=0.1\n"
        "finetuned-gated --freeze-text-model\n"
        "baseline --label-smoothing 0.2"  # no newline at the end; X alone: every family
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(requests))
    assert systems.main(["--requests", "-"]) == 0
    table = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    keys = list(dict.fromkeys(request for request, _, _ in table))
    assert keys == [
        "g-wgan-nov --lambda-a=0.4",
        "gated+mse --label-smoothing=cgru= --label-smoothing=transformer=0.1",
        "mse --label-smoothing=transformer=0.1",
        "finetuned-gated --freeze-text-model",
        "baseline --label-smoothing 0.2",
    ]
    rows = {key: [(k, v) for request, k, v in table if request == key] for key in keys}
    assert rows[keys[0]] == systems.settings_rows("g-wgan-nov", lambda_a="0.4")
    assert rows[keys[1]] == systems.settings_rows("gated+mse", "0.1")
    assert rows[keys[2]] == systems.settings_rows("mse")  # a cGRU system: not smoothed
    assert rows[keys[3]] == systems.settings_rows("finetuned-gated", freeze_text_model=True)
    assert ("START_FROM", "transformer-text-only") in rows[keys[3]]
    assert rows[keys[4]] == systems.settings_rows("baseline", "0.2")
    assert ("RUN_NAME", "baseline") in rows[keys[4]] and ("SYSTEM", "ctx-mul") in rows[keys[4]]


@pytest.mark.parametrize(
    "requests, message",
    [
        (
            "mse\nq-waae --noise-dim=3\n",
            "standard input line 2 (q-waae --noise-dim=3): q-waae has no noise (--noise-dim is "
            "for g-wgan): drop --noise-dim",
        ),
        ("mse --lambda-x 1\n", "line 1 (mse --lambda-x 1): unrecognized arguments: --lambda-x 1"),
        ("--lambda-r 1\n", "line 1 (--lambda-r 1): a request needs a SYSTEM (see --list)"),
        (
            "gated --label-smoothing=lstm=0.1\n",
            "--label-smoothing lstm=0.1: no family 'lstm' (the families: cgru, transformer)",
        ),
        (
            "finetuned-gated --freeze-text-model\nselective-attn --freeze-text-model\n",
            "line 2 (selective-attn --freeze-text-model): --freeze-text-model is for the systems "
            "fine-tuned from a text model (finetuned-*, e.g. finetuned-selective-attn; see "
            "--list), not selective-attn",
        ),
    ],
)
def test_a_bad_request_is_named_by_its_line(monkeypatch, capsys, requests, message) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(requests))
    assert systems.main(["--requests", "-", "--prog", "train.sh"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("train.sh: error: ") and message in err, err


def test_requests_from_a_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "requests").write_text("q-waae\n")
    assert systems.main(["--requests", str(tmp_path / "requests")]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "q-waae\tSYSTEM\tq-waae"
    assert systems.main(["--requests", str(tmp_path / "none")]) == 2
    assert f"--requests {tmp_path / 'none'}: No such file or directory" in capsys.readouterr().err


def test_the_command_line_lists_and_reports_errors_under_the_callers_name() -> None:
    listed = run_cli("--list")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == len(systems.all_systems()) + len(systems.ALIASES)
    [line] = [line for line in listed.stdout.splitlines() if line.startswith("finetuned-gated ")]
    assert " ".join(line.split()) == (
        "finetuned-gated transformer gated NLL only, fine-tuned from transformer-text-only"
    )
    plain = run_cli("baseline-nov")
    assert plain.stdout.split() == systems.flags("text-only")
    bad = run_cli("q-waae", "--noise-dim", "3", "--prog", "train.sh")
    assert bad.returncode == 2
    assert bad.stderr == (
        "train.sh: error: q-waae has no noise (--noise-dim is for g-wgan): drop --noise-dim\n"
    )
