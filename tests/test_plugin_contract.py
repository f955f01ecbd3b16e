"""The plugin's contract: ``import fairseq_mmt_adv`` registers everything (the notebook route
loads and decodes a checkpoint of each architecture), every route into a model sees its
features normalized as training did, and fusions plug in through the registry."""

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fairseq import checkpoint_utils
from helpers import PACKAGE_DIR, generate, hypotheses, setup_task, task_flags, train
from torch import nn

from fairseq_mmt_adv.criterions.adversarial_reconstruction import RECONSTRUCTION_CHOICES
from fairseq_mmt_adv.fusions import (
    ENCODER_OUTPUT,
    FUSION_REGISTRY,
    Fusion,
    fusion_names,
    register_fusion,
)
from fairseq_mmt_adv.models.contract import MultimodalModel

TINY_TRANSFORMER = shlex.split(
    "--arch transformer_mmt_tiny --encoder-layers 1 --decoder-layers 1 --encoder-embed-dim 16 "
    "--decoder-embed-dim 16 --encoder-ffn-embed-dim 32 --decoder-ffn-embed-dim 32 "
    "--encoder-attention-heads 2 --decoder-attention-heads 2"
)
TINY_CGRU = shlex.split("--arch cgru_mmt_small --encoder-hidden-size 16 --decoder-hidden-size 16")
ARCHS = {"cgru": TINY_CGRU, "transformer": TINY_TRANSFORMER}
OPTIMIZATION = shlex.split("--optimizer adam --lr 0.005 --batch-size 16 --seed 1")


def train_tiny(corpus: Path, save_dir: Path, arch: str, *extra: str) -> str:
    return train(
        *task_flags(corpus, corpus / "features"), *ARCHS[arch], *OPTIMIZATION,
        "--save-dir", str(save_dir), "--no-epoch-checkpoints", *extra,
    )  # fmt: skip


def decode(corpus: Path, checkpoint: Path, *extra: str) -> dict[int, str]:
    output = generate(
        *task_flags(corpus, corpus / "features"), "--path", str(checkpoint),
        "--gen-subset", "test", "--beam", "2", "--batch-size", "16", *extra,
    )  # fmt: skip
    return hypotheses(output)


@pytest.fixture(scope="module")
def checkpoints(tiny_corpus, tmp_path_factory) -> dict[str, Path]:
    """A checkpoint of each architecture, 2 epochs on the tiny corpus (standardized features)."""
    found = {}
    for arch, fusion in (("cgru", "ctx-mul"), ("transformer", "gated")):
        save_dir = tmp_path_factory.mktemp(arch)
        train_tiny(tiny_corpus, save_dir, arch, "--max-epoch", "2", "--visual-fusion", fusion)
        found[arch] = save_dir / "checkpoint_last.pt"
    return found


# ---------------------------------------------------------------- import registers everything

NOTEBOOK = """
import json, sys
import fairseq_mmt_adv
from fairseq import checkpoint_utils
models, cfg, task = checkpoint_utils.load_model_ensemble_and_task([sys.argv[1]])
task.load_dataset("test")
dataset = task.dataset("test")
batch = dataset.collater([dataset[i] for i in range(len(dataset))])
cfg.generation.beam = 2
generator = task.build_generator(models, cfg.generation)
found = {}
for sentence, hypos in zip(batch["id"].tolist(), task.inference_step(generator, models, batch)):
    found[sentence] = task.target_dictionary.string(hypos[0]["tokens"])
print(json.dumps(found))
"""


@pytest.mark.parametrize("arch", ["cgru", "transformer"])
def test_the_notebook_route_loads_and_decodes_a_checkpoint(checkpoints, tiny_corpus, arch):
    """``import fairseq_mmt_adv`` then fairseq's own loader, in a new interpreter: the task,
    model and criterion are registered and torch >= 2.6 loads the checkpoint."""
    done = subprocess.run(
        [sys.executable, "-c", NOTEBOOK, str(checkpoints[arch])],
        capture_output=True, text=True, cwd=tiny_corpus / "bin",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    found = {int(k): v for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
    assert found == decode(tiny_corpus, checkpoints[arch])  # what fairseq-generate decodes


def test_importing_the_package_registers_the_plugin_in_a_new_interpreter() -> None:
    code = (
        "import fairseq_mmt_adv, torch\n"
        "from fairseq.tasks import TASK_REGISTRY\n"
        "from fairseq.models import ARCH_MODEL_REGISTRY\n"
        "from fairseq.criterions import CRITERION_REGISTRY\n"
        "assert 'multimodal_translation' in TASK_REGISTRY\n"
        "assert {'cgru_mmt', 'cgru_mmt_small', 'transformer_mmt', 'transformer_mmt_tiny'} <= "
        "set(ARCH_MODEL_REGISTRY)\n"
        "assert 'adversarial_reconstruction' in CRITERION_REGISTRY\n"
        "import argparse\n"
        "assert argparse.Namespace in torch.serialization.get_safe_globals()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- the model normalizes


@pytest.mark.parametrize("arch", ["cgru", "transformer"])
def test_a_direct_forward_on_raw_features_matches_the_tasks_own_paths(
    checkpoints, tiny_corpus, arch
):
    task, cfg = setup_task(
        tiny_corpus / "bin", "--visual-features", str(tiny_corpus / "features"),
        "--criterion", "label_smoothed_cross_entropy",
    )  # fmt: skip
    [model], _ = checkpoint_utils.load_model_ensemble([str(checkpoints[arch])], task=task)
    model.eval()
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    sample = dataset.collater([dataset[i] for i in range(len(dataset))])
    raw = sample["net_input"]["visual_features"]
    criterion = task.build_criterion(cfg.criterion)
    loss, _, logs = task.valid_step(sample, model, criterion)
    with torch.no_grad():
        lprobs = model.get_normalized_probs(model(**sample["net_input"]), log_probs=True)
        target = sample["target"]
        nll = -lprobs.gather(-1, target.unsqueeze(-1)).squeeze(-1)[target.ne(1)].sum()
        # fairseq-generate's route: the encoder through forward_torchscript
        encoder_input = {k: v for k, v in sample["net_input"].items() if k != "prev_output_tokens"}
        scripted = model.encoder.forward_torchscript(encoder_input)
        direct = model.encoder(**encoder_input)
        normalized = {
            **sample["net_input"],
            "visual_features": model.normalize_visual_features(raw),
        }
        lprobs_twice = model.get_normalized_probs(model(**normalized), log_probs=True)
    torch.testing.assert_close(nll, logs["nll_loss"].float(), rtol=1e-5, atol=1e-4)
    assert not torch.allclose(lprobs, lprobs_twice)  # normalized once, inside the model
    if arch == "cgru":
        torch.testing.assert_close(scripted["annotations"], direct["annotations"])
        torch.testing.assert_close(scripted["visual_features"], direct["visual_features"])
    else:
        torch.testing.assert_close(scripted["encoder_out"][0], direct["encoder_out"][0])
    # the statistics are the model's own state, and equal the task state's
    mean, std = task.state.visual_feature_stats
    torch.testing.assert_close(model.encoder.visual_input.normalizer.mean, mean)
    assert "encoder.visual_input.normalizer.mean" in model.state_dict()


# ---------------------------------------------------------------- a fusion from outside


class ScaledImageFusion(Fusion):
    """H' = H + alpha * W mean(v): a fusion the package does not know."""

    def __init__(self, visual_feature_dim: int, model_dim: int, cfg=None) -> None:
        super().__init__()
        self.feature_proj = nn.Linear(visual_feature_dim, model_dim)
        self.alpha = nn.Parameter(torch.ones(1))

    def forward(self, encoder_out, visual_features):
        if visual_features.dim() == 3:
            visual_features = visual_features.mean(dim=1)
        return encoder_out + self.alpha * self.feature_proj(visual_features.to(encoder_out))

    def init_identity(self) -> None:
        with torch.no_grad():
            self.alpha.zero_()


@pytest.fixture(scope="module")
def outside_fusion():
    register_fusion("test-scaled", sites=(ENCODER_OUTPUT,), identity="exact")(ScaledImageFusion)
    yield "test-scaled"
    del FUSION_REGISTRY["test-scaled"]


@pytest.mark.parametrize("mode", RECONSTRUCTION_CHOICES)
def test_a_fusion_defined_outside_the_package_trains_and_decodes(
    outside_fusion, tiny_corpus, tmp_path, mode
):
    assert outside_fusion in fusion_names(ENCODER_OUTPUT)
    log = train_tiny(
        tiny_corpus, tmp_path, "transformer", "--max-epoch", "1",
        "--visual-fusion", outside_fusion, "--criterion", "adversarial_reconstruction",
        "--reconstruction", str(mode), "--critic-iters", "1",
    )  # fmt: skip
    assert "recon_mse" in log
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert "encoder.fusion.alpha" in state["model"]
    found = decode(tiny_corpus, tmp_path / "checkpoint_last.pt")
    assert len(found) == 61


def test_a_fusion_acting_elsewhere_or_on_other_shapes_is_refused(outside_fusion, tiny_corpus):
    with pytest.raises(ValueError, match="does not act on the decoder context that cgru_mmt"):
        train_tiny(tiny_corpus, Path("/nonexistent"), "cgru", "--visual-fusion", outside_fusion)
    with pytest.raises(ValueError, match="cannot register duplicate visual fusion"):
        register_fusion("gated", sites=(ENCODER_OUTPUT,))(ScaledImageFusion)
    with pytest.raises(ValueError, match="sites must be among"):
        register_fusion("test-nowhere", sites=("decoder-output",))(ScaledImageFusion)
    assert "test-nowhere" not in FUSION_REGISTRY


# ---------------------------------------------------------------- identity initializations


def build_transformer(task, corpus: Path, fusion: str) -> MultimodalModel:
    from fairseq import options

    parser = options.get_training_parser()
    argv = [*task_flags(corpus, corpus / "features"), *TINY_TRANSFORMER, "--dropout", "0"]
    args = options.parse_args_and_arch(parser, [*argv, "--visual-fusion", fusion])
    torch.manual_seed(0)
    return task.build_model(args).eval()


# selective-attn: the gate starts at sigmoid(-10) = 4.5e-5 (fusions/selective_attention.py)
@pytest.mark.parametrize("fusion, tolerance", [("gated", 0.0), ("selective-attn", 1e-3)])
def test_a_fusion_at_its_identity_computes_the_text_only_model(tiny_corpus, fusion, tolerance):
    task, _ = setup_task(tiny_corpus / "bin", "--visual-features", str(tiny_corpus / "features"))
    text_only = build_transformer(task, tiny_corpus, "none")
    fused = build_transformer(task, tiny_corpus, fusion)
    fused.load_state_dict(text_only.state_dict(), strict=False)  # the same text model
    fused.fusion.init_identity()
    assert FUSION_REGISTRY[fusion].identity == ("exact" if tolerance == 0 else "approximate")
    task.load_dataset("valid")
    dataset = task.dataset("valid")
    sample = dataset.collater([dataset[i] for i in range(16)])
    with torch.no_grad():
        expected = text_only(**sample["net_input"])[0]
        got = fused(**sample["net_input"])[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=tolerance)
    assert FUSION_REGISTRY["ctx-mul"].identity is None
    with pytest.raises(NotImplementedError, match="no identity"):
        Fusion().init_identity()


# ---------------------------------------------------------------- fairseq's YAML route

HYDRA_CONFIG = Path(__file__).resolve().parents[1] / "examples" / "hydra"


@pytest.mark.parametrize(
    "model, reconstruction",
    [("cgru_mmt_small", "g-wgan"), ("transformer_mmt_tiny", "q-waae"), ("transformer_mmt", "mse")],
)
def test_fairseq_hydra_train_trains_the_plugins_models(
    tiny_corpus, tmp_path, model, reconstruction
):
    """examples/hydra's config, with the model and criterion mode overridden."""
    sizes = {
        "cgru_mmt_small": ["+model.encoder_hidden_size=16", "+model.decoder_hidden_size=16"],
        "transformer_mmt_tiny": [],
        "transformer_mmt": ["+model.encoder_embed_dim=16", "+model.decoder_embed_dim=16"],
    }[model]
    fusion = "ctx-mul" if model.startswith("cgru") else "gated"
    done = subprocess.run(
        [str(Path(sys.executable).parent / "fairseq-hydra-train"), "--config-dir",
         str(HYDRA_CONFIG), "--config-name", "transformer_gated_q-waae",
         f"task.data={tiny_corpus / 'bin'}", f"task.visual_features={tiny_corpus / 'features'}",
         f"common.user_dir={PACKAGE_DIR}", f"model._name={model}",
         f"model.visual_fusion={fusion}", f"criterion.reconstruction={reconstruction}",
         "optimization.max_update=2", f"checkpoint.save_dir={tmp_path}",
         "dataset.num_workers=0", *sizes],
        capture_output=True, text=True, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    state = torch.load(tmp_path / "checkpoint_last.pt", weights_only=True)
    assert state["cfg"]["criterion"]["reconstruction"] == reconstruction
    assert "encoder.visual_input.normalizer.mean" in state["model"]
