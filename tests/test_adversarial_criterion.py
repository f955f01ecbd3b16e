"""Tests of the ``adversarial_reconstruction`` criterion, its generators G and critics D.

CPU only, with a tiny fake task and a fake model (embedding + GRU) standing in for the cGRU.
"""

import copy
import io
import math
import re
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from fairseq.criterions.label_smoothed_cross_entropy import LabelSmoothedCrossEntropyCriterion
from fairseq.data import Dictionary
from fairseq.logging import metrics
from torch import nn

from fairseq_mmt_adv.criterions.adversarial_reconstruction import (
    AdversarialReconstructionCriterion,
    AdversarialReconstructionCriterionConfig,
    CriterionStateMismatch,
    parse_critic_betas,
    parse_hidden_sizes,
)
from fairseq_mmt_adv.modules import (
    ConditionalFeatureCritic,
    ConditionalVisualFeatureGenerator,
    LatentCritic,
    VisualFeatureGenerator,
    wgan_gp_terms,
)

HIDDEN = 16  # H
FEATURES = 8  # D
NUM_WORDS = 12
ADVERSARIAL_MODES = ["q-waae", "g-wgan"]
ALL_MODES = ["mse", *ADVERSARIAL_MODES]


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """The tensors are tiny: intra-op threads only add (sometimes large) overhead."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_task() -> SimpleNamespace:
    dictionary = Dictionary()
    for i in range(NUM_WORDS):
        dictionary.add_symbol(f"w{i}")
    return SimpleNamespace(target_dictionary=dictionary, visual_feature_dim=FEATURES)


class FakeModel(nn.Module):
    """Embedding + GRU decoder whose initial state is the image; hT = state at the last token."""

    final_hidden_size = HIDDEN
    visual_feature_dim = FEATURES

    def __init__(self, vocab_size: int, pad: int, shift: float = 0.0) -> None:
        super().__init__()
        self.pad = pad
        self.shift = shift
        self.embed = nn.Embedding(vocab_size, HIDDEN, padding_idx=pad)
        self.visual = nn.Linear(FEATURES, HIDDEN)
        self.gru = nn.GRU(HIDDEN, HIDDEN, batch_first=True)
        self.out = nn.Linear(HIDDEN, vocab_size)

    def forward(self, src_tokens, src_lengths, prev_output_tokens, visual_features):
        if visual_features.dim() == 3:
            visual_features = visual_features.mean(dim=1)
        initial = torch.tanh(self.visual(visual_features)).unsqueeze(0)
        states, _ = self.gru(self.embed(prev_output_tokens), initial)
        last = prev_output_tokens.ne(self.pad).sum(dim=1) - 1
        final_hidden = states[torch.arange(states.size(0)), last] + self.shift
        return self.out(states), {"final_hidden": final_hidden}

    def normalize_visual_features(self, features):
        return features.float()  # the features of these tests are normalized already

    def get_normalized_probs(self, net_output, log_probs, sample=None):
        return F.log_softmax(net_output[0].float(), dim=-1)

    def get_targets(self, sample, net_output):
        return sample["target"]


def make_model(task, shift: float = 0.0) -> FakeModel:
    return FakeModel(len(task.target_dictionary), task.target_dictionary.pad(), shift)


def make_sample(task, lengths, spatial: bool = False, dtype=torch.float32) -> dict:
    dictionary = task.target_dictionary
    pad, eos = dictionary.pad(), dictionary.eos()
    target = torch.full((len(lengths), max(lengths)), pad)
    prev_output_tokens = target.clone()
    for i, length in enumerate(lengths):
        tokens = torch.randint(dictionary.nspecial, len(dictionary), (length,))
        tokens[-1] = eos
        target[i, :length] = tokens
        prev_output_tokens[i, 0] = eos
        prev_output_tokens[i, 1:length] = tokens[:-1]
    shape = (len(lengths), 3, FEATURES) if spatial else (len(lengths), FEATURES)
    return {
        "net_input": {
            "src_tokens": target.clone(),
            "src_lengths": torch.tensor(lengths),
            "prev_output_tokens": prev_output_tokens,
            "visual_features": torch.randn(shape, dtype=dtype),
        },
        "target": target,
        "ntokens": sum(lengths),
        "nsentences": len(lengths),
    }


# what the criterion reads of the model it trains (a FakeModel says the same)
def model_sizes(hidden: int = HIDDEN) -> SimpleNamespace:
    """What the criterion reads of the model it trains (a FakeModel says the same)."""
    return SimpleNamespace(
        final_hidden_size=hidden,
        visual_feature_dim=FEATURES,
        normalize_visual_features=lambda features: features.float(),
    )


MODEL_SIZES = model_sizes()


def make_criterion(mode: str, task=None, **overrides) -> AdversarialReconstructionCriterion:
    overrides.setdefault("sentence_avg", False)
    cfg = AdversarialReconstructionCriterionConfig(reconstruction=mode, **overrides)
    return AdversarialReconstructionCriterion(cfg, task or make_task(), model=MODEL_SIZES)


def critic_params(criterion) -> list[torch.Tensor]:
    return list(criterion.critic.critic.parameters())


def adam_state(criterion) -> list[dict]:
    optimizer = criterion.critic.optimizer
    return [optimizer.state[p] for p in optimizer.param_groups[0]["params"]]


def nll_part(criterion, model, sample) -> torch.Tensor:
    """The parent's L_Q on the same sample (the fake model is deterministic)."""
    net_output = model(**sample["net_input"])
    return LabelSmoothedCrossEntropyCriterion.compute_loss(criterion, model, net_output, sample)[0]


# --- configuration ------------------------------------------------------------------------------


def test_flag_parsing_and_mode_defaults():
    assert parse_critic_betas("(0.5, 0.9)") == (0.5, 0.9)
    assert parse_hidden_sizes("1024, 512") == (1024, 512)
    assert parse_hidden_sizes("") == ()
    with pytest.raises(ValueError):
        parse_critic_betas("0.5")
    q_waae, g_wgan, mse = (make_criterion(m) for m in ("q-waae", "g-wgan", "mse"))
    assert (q_waae.lambda_r, g_wgan.lambda_r, mse.lambda_r) == (0.2, 0.0, 0.2)
    assert mse.critic is None
    # Appendix B: linear latent critic; (D + H) -> 1024 -> 512 -> 1 feature critic; G shapes
    assert [p.shape for p in critic_params(q_waae)] == [(1, HIDDEN), (1,)]
    assert [p.shape for p in critic_params(g_wgan) if p.dim() == 2] == [
        (1024, FEATURES + HIDDEN),
        (512, 1024),
        (1, 512),
    ]
    assert isinstance(q_waae.generator, VisualFeatureGenerator)
    assert isinstance(g_wgan.generator, ConditionalVisualFeatureGenerator)
    assert g_wgan.generator.proj.weight.shape == (FEATURES, 128 + HIDDEN)
    custom = make_criterion("q-waae", critic_hidden="6,4", critic_betas="(0.1, 0.2)")
    assert [p.shape for p in critic_params(custom) if p.dim() == 2] == [(6, 16), (4, 6), (1, 4)]
    assert custom.critic.optimizer.param_groups[0]["betas"] == (0.1, 0.2)


def test_g_and_d_are_sized_by_the_model_the_task_built_last():
    task = make_task()
    task.trained_model = model_sizes(HIDDEN + 3)  # what build_model sets
    cfg = AdversarialReconstructionCriterionConfig(reconstruction="q-waae")
    criterion = AdversarialReconstructionCriterion(cfg, task)
    assert criterion.generator.proj.weight.shape == (FEATURES, HIDDEN + 3)
    assert [p.shape for p in critic_params(criterion)] == [(1, HIDDEN + 3), (1,)]


def test_a_model_or_task_the_criterion_cannot_size_from_is_a_clear_error():
    cfg = AdversarialReconstructionCriterionConfig(reconstruction="q-waae")
    with pytest.raises(ValueError, match="build the model first"):
        AdversarialReconstructionCriterion(cfg, make_task())
    with pytest.raises(ValueError, match="final_hidden_size"):
        AdversarialReconstructionCriterion(cfg, make_task(), model=nn.Linear(2, 2))
    task = make_task()
    del task.visual_feature_dim
    with pytest.raises(ValueError, match="--task multimodal_translation"):
        AdversarialReconstructionCriterion(cfg, task, model=MODEL_SIZES)


@pytest.mark.parametrize("mode", ADVERSARIAL_MODES)
def test_halving_the_criterion_leaves_the_critic_in_float32(mode):
    task = make_task()
    criterion = make_criterion(mode, task=task, critic_iters=1)
    criterion(make_model(task), make_sample(task, [3, 4]))  # Adam has moments now
    criterion.half()  # as fairseq's --fp16 does: D is no submodule, so it stays as it is
    assert criterion.generator.proj.weight.dtype == torch.float16
    assert all(p.dtype == torch.float32 for p in critic_params(criterion))
    assert all(s["exp_avg"].dtype == torch.float32 for s in adam_state(criterion))


# --- parameter ownership and checkpoints --------------------------------------------------------


@pytest.mark.parametrize("mode", ADVERSARIAL_MODES)
def test_critic_is_hidden_from_parameters_but_generator_is_not(mode):
    criterion = make_criterion(mode)
    owned = {id(p) for p in criterion.parameters()}
    assert critic_params(criterion)
    assert not any(id(p) in owned for p in critic_params(criterion))
    assert all(id(p) in owned for p in criterion.generator.parameters())
    assert not any("critic" in name for name, _ in criterion.named_parameters())
    assert "_extra_state" in criterion.state_dict()


@pytest.mark.parametrize("mode", ADVERSARIAL_MODES)
def test_state_dict_round_trip_restores_critic_and_adam_exactly(mode):
    task = make_task()
    torch.manual_seed(0)
    model = make_model(task)
    criterion = make_criterion(mode, task=task, critic_iters=2)
    for _ in range(2):  # give Adam some moments
        criterion(model, make_sample(task, [4, 3, 5]))
    buffer = io.BytesIO()
    torch.save(criterion.state_dict(), buffer)  # as fairseq's checkpoints do
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    reference = copy.deepcopy(state)

    torch.manual_seed(1)
    fresh = make_criterion(mode, task=task, critic_iters=2)
    assert not torch.equal(critic_params(fresh)[0], critic_params(criterion)[0])
    fresh.load_state_dict(state, strict=True)

    for restored, original in zip(critic_params(fresh), critic_params(criterion), strict=True):
        assert torch.equal(restored, original)
    for restored, original in zip(adam_state(fresh), adam_state(criterion), strict=True):
        assert restored.keys() == original.keys() == {"step", "exp_avg", "exp_avg_sq"}
        for key in original:
            assert torch.equal(restored[key], original[key])
    for restored, original in zip(fresh.parameters(), criterion.parameters(), strict=True):
        assert torch.equal(restored, original)

    # training on continues identically, and never writes into the loaded dict
    sample = make_sample(task, [2, 6])
    for crit in (criterion, fresh):
        torch.manual_seed(2)
        crit(model, sample)
    for restored, original in zip(critic_params(fresh), critic_params(criterion), strict=True):
        assert torch.equal(restored, original)
    torch.testing.assert_close(state, reference, rtol=0, atol=0)


@pytest.mark.parametrize(
    "saved,loading,message",
    [
        (dict(mode="mse"), dict(mode="q-waae"), "holds no critic D"),
        (dict(mode="q-waae"), dict(mode="mse"), "mse has none"),
        (dict(mode="q-waae"), dict(mode="g-wgan"), r"generator\.proj"),
        (dict(mode="g-wgan"), dict(mode="g-wgan", noise_dim=8), "noise-dim"),
        (dict(mode="q-waae"), dict(mode="q-waae", critic_hidden="4"), "D."),
    ],
)
def test_a_criterion_state_of_other_options_is_refused_before_fairseq_loads_it(
    saved, loading, message, tmp_path
):
    state = make_criterion(**saved).state_dict()
    with pytest.raises(CriterionStateMismatch, match=message) as error:
        make_criterion(**loading).load_state_dict(state, strict=True)
    assert "Resume with the --reconstruction" in str(error.value)
    make_criterion(**saved).load_state_dict(state)  # the same options load
    # fairseq's trainer loads it inside `except Exception`, which hides the reason: the
    # criterion reads the state of the checkpoint the task resumes from when it is built
    checkpoint = tmp_path / "checkpoint_last.pt"
    torch.save({"criterion": state}, checkpoint)
    task = make_task()
    task.resume_checkpoint = lambda: str(checkpoint)
    with pytest.raises(CriterionStateMismatch, match=message) as error:
        make_criterion(**loading, task=task)
    assert str(checkpoint) in str(error.value)
    make_criterion(**saved, task=task)  # the same options resume


@pytest.mark.parametrize(
    "flag,value,message",
    [
        ("lambda_r", -1.0, "--lambda-r must be a weight >= 0, not -1.0"),
        ("lambda_a", -1.0, "--lambda-a must be a weight >= 0"),
        ("lambda_gp", -5.0, "--lambda-gp must be a weight >= 0"),
        ("critic_lr", -1.0, "--critic-lr must be a learning rate > 0"),
        ("critic_lr", float("nan"), "--critic-lr must be"),
        ("critic_iters", 0, "--critic-iters must be an integer >= 1"),
        ("noise_dim", 0, "--noise-dim must be an integer >= 1"),
        ("generator_dropout", 1.0, "--generator-dropout must be in"),
        ("critic_betas", "garbage", "--critic-betas must be two numbers in"),
        ("critic_betas", "(2.0, 0.9)", "--critic-betas must be two numbers in"),
        ("critic_betas", "(0.5,)", "--critic-betas must be two numbers in"),
        ("critic_hidden", "abc", "--critic-hidden must be comma-separated positive"),
        ("critic_hidden", "16,-2", "--critic-hidden must be comma-separated positive"),
    ],
)
@pytest.mark.parametrize("mode", ALL_MODES)
def test_meaningless_options_are_refused_naming_the_flag(mode, flag, value, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make_criterion(mode, **{flag: value})


# --- training / evaluation behaviour of D -------------------------------------------------------


@pytest.mark.parametrize("mode", ADVERSARIAL_MODES)
def test_training_forward_steps_critic_and_writes_no_grads(mode):
    task = make_task()
    model = make_model(task)
    criterion = make_criterion(mode, task=task, critic_iters=3)
    before = [p.clone() for p in critic_params(criterion)]
    model.train()
    criterion.train()
    loss, sample_size, log = criterion(model, make_sample(task, [5, 2, 4]))
    changed = [not torch.equal(b, p) for b, p in zip(before, critic_params(criterion), strict=True)]
    # all but the output bias, which neither D(fake) - D(real) nor the GP depends on
    assert changed == [True] * (len(changed) - 1) + [False]
    assert all(state["step"].item() == 3 for state in adam_state(criterion))
    assert all(p.grad is None for p in model.parameters())
    assert all(p.grad is None for p in criterion.parameters())
    assert all(p.grad is None for p in critic_params(criterion))
    assert {"critic_loss", "wasserstein", "grad_penalty", "adv_loss", "recon_mse"} <= log.keys()
    assert torch.isfinite(loss)

    loss.backward()  # the adversarial term accumulates nothing into D
    assert all(p.grad is None for p in critic_params(criterion))


@pytest.mark.parametrize("mode", ADVERSARIAL_MODES)
def test_evaluation_forward_leaves_critic_unchanged(mode):
    task = make_task()
    model = make_model(task)
    criterion = make_criterion(mode, task=task)
    criterion(model, make_sample(task, [3, 3]))  # one training forward: Adam has state
    params = [p.clone() for p in critic_params(criterion)]
    moments = copy.deepcopy(adam_state(criterion))
    model.eval()
    criterion.eval()
    with torch.no_grad():
        loss, _, log = criterion(model, make_sample(task, [4, 2, 6]))
    assert all(torch.equal(a, b) for a, b in zip(params, critic_params(criterion), strict=True))
    for now, then in zip(adam_state(criterion), moments, strict=True):
        assert all(torch.equal(now[key], then[key]) for key in then)
    assert "wasserstein" in log and "adv_loss" in log
    assert "grad_penalty" not in log and "critic_loss" not in log
    assert torch.isfinite(loss) and torch.isfinite(log["wasserstein"])


def test_q_waae_critic_learns_a_shifted_latent_distribution():
    task = make_task()
    torch.manual_seed(0)
    model = make_model(task, shift=2.0)  # hT is far from the prior N(0, I)
    criterion = make_criterion("q-waae", task=task, critic_lr=1e-2)
    first = last = None
    for _ in range(20):
        loss, _, log = criterion(model, make_sample(task, [5, 4, 6, 3, 5, 4, 6, 2]))
        assert torch.isfinite(loss)
        estimate = log["wasserstein"].item() / log["nsentences"]
        first = estimate if first is None else first
        last = estimate
    assert last > 2.0 and last > first  # true W1 >= ||E hT|| ~ 2 sqrt(H) = 8


def test_g_wgan_critic_separates_real_from_generated_features():
    task = make_task()
    torch.manual_seed(0)
    model = make_model(task)
    criterion = make_criterion("g-wgan", task=task, critic_lr=1e-3)
    for _ in range(10):
        sample = make_sample(task, [5, 4, 6, 3, 5, 4, 6, 2])
        sample["net_input"]["visual_features"] += 3.0  # far outside tanh's range
        loss, _, log = criterion(model, sample)
        assert torch.isfinite(loss)
    assert log["wasserstein"].item() / log["nsentences"] > 1.0


# --- gradients reaching the model and G ---------------------------------------------------------


def grads_after_backward(mode: str, lambda_a: float) -> tuple[dict, dict]:
    task = make_task()
    torch.manual_seed(0)
    model = make_model(task)
    criterion = make_criterion(mode, task=task, lambda_r=0.0, lambda_a=lambda_a)
    torch.manual_seed(1)
    loss, _, _ = criterion(model, make_sample(task, [4, 6, 3]))
    loss.backward()
    assert all(p.grad is None for p in critic_params(criterion))
    model_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    generator_grads = {name: p.grad.clone() for name, p in criterion.generator.named_parameters()}
    return model_grads, generator_grads


@pytest.mark.parametrize("mode", ADVERSARIAL_MODES)
def test_adversarial_term_reaches_the_model(mode):
    with_adv, generator_with = grads_after_backward(mode, lambda_a=0.5)
    without_adv, generator_without = grads_after_backward(mode, lambda_a=0.0)
    for name in ("gru.weight_hh_l0", "gru.weight_ih_l0", "embed.weight", "visual.weight"):
        assert (with_adv[name] - without_adv[name]).abs().max() > 1e-6, name
    # NLL-only parameters are untouched by the auxiliary terms
    torch.testing.assert_close(with_adv["out.weight"], without_adv["out.weight"])
    assert all(g.abs().max() == 0 for g in generator_without.values())
    if mode == "g-wgan":  # -D(v', hT) reaches G
        assert all(g.abs().max() > 0 for g in generator_with.values())
    else:  # with lambda_r = 0, G gets nothing in Q-WAAE
        assert all(g.abs().max() == 0 for g in generator_with.values())


@pytest.mark.parametrize("mode", ADVERSARIAL_MODES)
@pytest.mark.parametrize("adversarial_loss", ["wasserstein", "log"])
def test_generator_step_increases_critic_score(mode, adversarial_loss):
    """Descending the model/G loss must make the fakes score higher under a fixed D."""
    task = make_task()
    torch.manual_seed(0)
    model = make_model(task)
    criterion = make_criterion(
        mode,
        task=task,
        lambda_r=0.0,
        lambda_a=1.0,
        adversarial_loss=adversarial_loss,
        generator_dropout=0.0,
    )
    sample = make_sample(task, [4, 6, 3, 5])
    features = criterion.target_features(model, sample)

    def fake_score() -> torch.Tensor:
        torch.manual_seed(7)  # the same z as in the loss below
        hidden = model(**sample["net_input"])[1]["final_hidden"]
        if mode == "g-wgan":
            return criterion.critic.critic(criterion.generator(hidden), hidden).mean()
        return criterion.critic.critic(hidden).mean()

    with torch.no_grad():
        before = fake_score()
    critic_before = [p.clone() for p in critic_params(criterion)]
    hidden = model(**sample["net_input"])[1]["final_hidden"]
    torch.manual_seed(7)
    auxiliary_loss, _ = criterion.compute_auxiliary_loss(hidden, features, train_critic=False)
    params = [*model.parameters(), *criterion.generator.parameters()]
    grads = torch.autograd.grad(auxiliary_loss, params, allow_unused=True)
    with torch.no_grad():
        for param, grad in zip(params, grads, strict=True):
            if grad is not None:
                param -= 0.01 * grad
        after = fake_score()
    assert after > before
    unchanged = zip(critic_before, critic_params(criterion), strict=True)
    assert all(torch.equal(a, b) for a, b in unchanged)


# --- loss scale ---------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ALL_MODES)
@pytest.mark.parametrize("sentence_avg", [False, True])
@pytest.mark.parametrize("training", [True, False])
def test_auxiliary_terms_weigh_lambda_times_sentence_mean(mode, sentence_avg, training):
    task = make_task()
    torch.manual_seed(0)
    model = make_model(task).train(training)
    criterion = make_criterion(
        mode,
        task=task,
        sentence_avg=sentence_avg,
        lambda_r=0.3,
        lambda_a=0.7,
        critic_iters=1,
        generator_dropout=0.0,  # so that z can be replayed
    ).train(training)
    for lengths, spatial in (([3, 5, 2], False), ([9, 7, 8, 6, 9], True)):
        sample = make_sample(task, lengths, spatial=spatial)
        torch.manual_seed(5)
        loss, sample_size, log = criterion(model, sample)
        assert sample_size == (len(lengths) if sentence_avg else sum(lengths))
        auxiliary = (loss - nll_part(criterion, model, sample)) / sample_size

        with torch.no_grad():
            hidden = model(**sample["net_input"])[1]["final_hidden"]
            features = sample["net_input"]["visual_features"]
            features = features.mean(dim=1) if spatial else features
            if mode == "g-wgan":  # replay the z drawn after the critic updates
                torch.manual_seed(5)
                if training:
                    torch.randn(len(lengths), 128)  # the critic update's z
                    torch.rand(len(lengths), 1)  # its eps
                noise = torch.randn(len(lengths), 128)
                reconstruction = criterion.generator(hidden, noise)
            else:
                weight, bias = criterion.generator.proj.weight, criterion.generator.proj.bias
                reconstruction = torch.tanh(hidden @ weight.T + bias)
            recon = ((features - reconstruction) ** 2).mean(dim=-1)  # --reconstruction-distance mse
            expected = 0.3 * recon.mean()
            if mode == "q-waae":  # linear critic o = W^adv hT
                (weight, bias) = critic_params(criterion)
                expected += 0.7 * (-(hidden @ weight.T + bias)).mean()
            elif mode == "g-wgan":
                expected += 0.7 * -criterion.critic.critic(reconstruction, hidden).mean()
        torch.testing.assert_close(auxiliary, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(log["recon_mse"] / len(lengths), recon.mean())


def test_reduce_metrics_averages_sums_over_sentences():
    logs = [
        {"loss": 6.0, "nll_loss": 4.0, "ntokens": 4, "nsentences": 1, "sample_size": 4},
        {"loss": 9.0, "nll_loss": 6.0, "ntokens": 6, "nsentences": 3, "sample_size": 6},
    ]
    for log, scale in zip(logs, (1.0, 3.0), strict=True):
        for i, key in enumerate(("recon_mse", "critic_loss", "wasserstein", "grad_penalty")):
            log[key] = torch.tensor(scale * (i + 1))
    with metrics.aggregate() as aggregated:
        AdversarialReconstructionCriterion.reduce_metrics(logs)
        values = aggregated.get_smoothed_values()
    assert values["loss"] == round(15 / 10 / math.log(2), 3)
    assert values["recon_mse"] == 1.0 and values["wasserstein"] == 3.0
    assert values["grad_penalty"] == 4.0 and "adv_loss" not in values and "ppl" in values


# --- gradient penalty ---------------------------------------------------------------------------


def gradient_penalty(critic, x_a, x_b, condition=None, eps=None):
    return wgan_gp_terms(critic, x_a, x_b, condition, eps)[2]


def textbook_wgan_gp_terms(critic, x_a, x_b, condition, eps):
    """Eq. (5) as usually written: x_hat through the whole critic, grad_x_hat by autograd."""
    x_hat = (eps * x_a + (1 - eps) * x_b).detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat, condition).sum(), x_hat, create_graph=True)
    penalty = (grad.norm(2, dim=-1) - 1) ** 2
    return critic(x_a, condition), critic(x_b, condition), penalty


def test_gradient_penalty_of_linear_critic_is_analytic():
    critic = LatentCritic(HIDDEN)
    weight = critic.net[0].weight
    x_a, x_b = torch.randn(5, HIDDEN), torch.randn(5, HIDDEN)
    score_a, score_b, penalty = wgan_gp_terms(critic, x_a, x_b)
    torch.testing.assert_close(score_a, critic(x_a))
    torch.testing.assert_close(score_b, critic(x_b))
    expected = (weight.norm() - 1) ** 2
    torch.testing.assert_close(penalty, expected.expand(5))
    # differentiable w.r.t. the critic: d/dW (||W|| - 1)^2 = 2 (||W|| - 1) W / ||W||
    (grad,) = torch.autograd.grad(penalty.mean(), weight)
    torch.testing.assert_close(grad, 2 * (weight.norm() - 1) * weight / weight.norm())


def test_gradient_penalty_of_two_layer_critic_matches_reference():
    torch.manual_seed(0)
    critic = LatentCritic(HIDDEN, hidden_sizes=(7,))
    first, second = critic.net[0], critic.net[2]
    x_a, x_b = torch.randn(6, HIDDEN), torch.randn(6, HIDDEN)
    eps = torch.rand(6, 1)
    penalty = gradient_penalty(critic, x_a, x_b, eps=eps)

    x_hat = eps * x_a + (1 - eps) * x_b
    active = (first(x_hat) > 0).float()  # ReLU derivative
    analytic = (active * second.weight) @ first.weight  # B x H: W2 diag(relu') W1
    torch.testing.assert_close(penalty, (analytic.norm(dim=1) - 1) ** 2)

    x_hat.requires_grad_(True)
    (reference,) = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    torch.testing.assert_close(penalty, (reference.norm(dim=1) - 1) ** 2)


@pytest.mark.parametrize("hidden", [(12, 9), ()])
@pytest.mark.parametrize("conditional", [True, False])
def test_critic_terms_and_their_parameter_gradients_are_those_of_the_textbook_form(
    conditional, hidden
):
    """The first layer's pre-activation is interpolated instead of x_hat being passed through
    the critic: scores, penalties and every gradient of the critic loss are unchanged."""
    torch.manual_seed(0)
    if conditional:
        critic = ConditionalFeatureCritic(FEATURES, HIDDEN, hidden_sizes=hidden).double()
        x_a, x_b = torch.randn(2, 10, FEATURES, dtype=torch.float64)
        condition = torch.randn(10, HIDDEN, dtype=torch.float64)
    else:
        critic = LatentCritic(HIDDEN, hidden_sizes=hidden).double()
        x_a, x_b = torch.randn(2, 10, HIDDEN, dtype=torch.float64)
        condition = None
    eps = torch.rand(10, 1, dtype=torch.float64)
    params = list(critic.parameters())
    terms = wgan_gp_terms(critic, x_a, x_b, condition, eps)
    textbook = textbook_wgan_gp_terms(critic, x_a, x_b, condition, eps)
    if hidden:
        assert textbook[2].std() > 0  # the ReLU masks differ between rows
    for ours, theirs in zip(terms, textbook, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-12, atol=1e-12)

    def critic_loss(score_a, score_b, penalty):
        return 10.0 * penalty.mean() - (score_a.mean() - score_b.mean())

    grads = torch.autograd.grad(critic_loss(*terms), params)
    textbook_grads = torch.autograd.grad(critic_loss(*textbook), params)
    for ours, theirs in zip(grads, textbook_grads, strict=True):
        torch.testing.assert_close(ours, theirs, rtol=1e-10, atol=1e-12)
    # every parameter but the output bias (which cancels out of the loss) is trained
    assert all(grad.abs().max() > 0 for grad in grads[:-1])


def test_gradient_penalty_interpolates_per_sentence():
    torch.manual_seed(0)
    critic = LatentCritic(HIDDEN, hidden_sizes=(32,)).double()
    x_a, x_b = torch.randn(2, 64, HIDDEN, dtype=torch.float64)
    torch.manual_seed(1)
    penalty = gradient_penalty(critic, x_a, x_b)
    torch.manual_seed(1)
    eps = torch.rand(64, 1, dtype=torch.float64)  # what the penalty must have drawn: B x 1
    torch.testing.assert_close(penalty, textbook_wgan_gp_terms(critic, x_a, x_b, None, eps)[2])
    assert eps.std() > 0.1  # one eps per row, not one for the whole batch
    shared = eps[:1].expand_as(eps)
    assert not torch.allclose(penalty, textbook_wgan_gp_terms(critic, x_a, x_b, None, shared)[2])


def test_conditional_gradient_penalty_differentiates_features_only():
    critic = ConditionalFeatureCritic(FEATURES, HIDDEN, hidden_sizes=())
    weight = critic.net[0].weight  # 1 x (D + H)
    v, v_fake, condition = (
        torch.randn(4, FEATURES),
        torch.randn(4, FEATURES),
        torch.randn(4, HIDDEN),
    )
    penalty = gradient_penalty(critic, v, v_fake, condition=condition)
    torch.testing.assert_close(penalty, ((weight[0, :FEATURES].norm() - 1) ** 2).expand(4))


# --- dtype and device ---------------------------------------------------------------------------


def test_half_and_double_keep_the_critic_in_float32():
    task = make_task()
    torch.manual_seed(0)
    criterion = make_criterion("g-wgan", task=task, critic_iters=1)
    criterion(make_model(task), make_sample(task, [3, 4]))  # Adam state exists

    criterion.half()
    assert all(p.dtype == torch.float16 for p in criterion.generator.parameters())
    assert all(p.dtype == torch.float32 for p in critic_params(criterion))
    half_model = make_model(task).half()
    loss, _, log = criterion(half_model, make_sample(task, [3, 4], dtype=torch.float16))
    assert torch.isfinite(loss) and torch.isfinite(log["grad_penalty"])

    criterion.to(torch.float64)
    assert all(p.dtype == torch.float64 for p in criterion.generator.parameters())
    assert all(p.dtype == torch.float32 for p in critic_params(criterion))
    double_model = make_model(task).double()
    loss, _, _ = criterion(double_model, make_sample(task, [5, 2], dtype=torch.float64))
    assert torch.isfinite(loss)
    loss.backward()
    for state in adam_state(criterion):
        assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.float32


@pytest.mark.cuda
def test_cuda_moves_critic_and_adam_state():
    task = make_task()
    criterion = make_criterion("q-waae", task=task, critic_iters=1)
    criterion(make_model(task), make_sample(task, [3, 4]))
    criterion.cuda().half()
    sample = make_sample(task, [3, 4], dtype=torch.float16)
    sample = {
        k: ({n: t.cuda() for n, t in v.items()} if isinstance(v, dict) else v)
        for k, v in sample.items()
    }
    sample["target"] = sample["target"].cuda()
    loss, _, _ = criterion(make_model(task).cuda().half(), sample)
    assert torch.isfinite(loss)
    # D moved to hT's device when it was first used there, and stayed float32
    assert all(p.is_cuda and p.dtype == torch.float32 for p in critic_params(criterion))
    assert all(s["exp_avg"].is_cuda for s in adam_state(criterion))


# --- data parallel ------------------------------------------------------------------------------


def _data_parallel_worker(rank: int, world_size: int, init_file: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        task = make_task()
        torch.manual_seed(rank)  # different initial D on each rank: the first step syncs it
        model = make_model(task)
        criterion = make_criterion("q-waae", task=task, critic_iters=2)
        for _ in range(2):  # different data on each rank
            criterion(model, make_sample(task, [3 + rank, 4, 5]))
        for tensor in [*critic_params(criterion), *adam_state(criterion)[0].values()]:
            gathered = [torch.empty_like(tensor) for _ in range(world_size)]
            dist.all_gather(gathered, tensor.contiguous())
            assert all(torch.equal(gathered[0], other) for other in gathered[1:])
    finally:
        dist.destroy_process_group()


def test_data_parallel_ranks_keep_identical_critics(tmp_path):
    # fork: the workers need not re-import fairseq
    mp.start_processes(
        _data_parallel_worker,
        args=(2, str(tmp_path / "init")),
        nprocs=2,
        join=True,
        start_method="fork",
    )


def test_sum_of_squares_distance_is_eq_6_and_the_default_is_its_mean_over_dimensions():
    task = make_task()
    model = make_model(task).eval()
    sample = make_sample(task, [4, 6, 3])
    logs = {}
    for distance in ("mse", "sse"):
        torch.manual_seed(0)
        criterion = make_criterion("mse", task, reconstruction_distance=distance).eval()
        with torch.no_grad():
            logs[distance] = criterion(model, sample)[2]["recon_mse"]
    assert make_criterion("mse", task).reconstruction_distance == "mse"
    torch.testing.assert_close(logs["sse"], FEATURES * logs["mse"])
