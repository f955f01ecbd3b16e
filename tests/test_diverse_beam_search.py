"""Diverse beam search beyond the first batch (fairseq 0.12 crashes there)."""

import pytest
import torch
from fairseq.data import Dictionary
from fairseq.search import DiverseBeamSearch
from helpers import PACKAGE_DIR, generate, train

from fairseq_mmt_adv.modules.diverse_beam_search import DiverseBeamSearchByRow


def run_steps(search, ids: torch.Tensor, steps: int = 4, seed: int = 0):
    """A few search steps over random log-probabilities; a sentence finishes after step 1."""
    generator = torch.Generator().manual_seed(seed)
    bsz, beam, vocab = len(ids), 4, 12
    scores = torch.zeros(bsz, beam, 0)
    out = []
    for step in range(steps):
        if step == 2:  # the generator drops finished sentences (here the second)
            keep = torch.tensor([0] + list(range(2, bsz)))
            ids, scores = ids[keep], scores[keep]
            bsz -= 1
        lprobs = torch.log_softmax(torch.randn(bsz, beam, vocab, generator=generator), dim=-1)
        step_scores, indices, beams = search.step(step, lprobs, scores, None, ids)
        scores = torch.cat([scores, step_scores[:, :beam].unsqueeze(2)], dim=2)
        out.append((step_scores, indices, beams))
    return out


def test_later_batches_search_as_the_first_batch_does():
    dictionary = Dictionary()
    with pytest.raises(IndexError):  # fairseq's own, on a batch whose ids start at 16
        run_steps(DiverseBeamSearch(dictionary, 2, 0.5), torch.arange(16, 20))
    expected = run_steps(DiverseBeamSearch(dictionary, 2, 0.5), torch.arange(4))  # batch 1
    mended = run_steps(DiverseBeamSearchByRow(dictionary, 2, 0.5), torch.arange(16, 20))
    for got, want in zip(mended, expected, strict=True):
        for a, b in zip(got, want, strict=True):
            torch.testing.assert_close(a, b)


def test_fairseq_generate_decodes_every_batch_with_diverse_beam_groups(tiny_corpus, tmp_path):
    data = [str(tiny_corpus / "bin"), "--user-dir", PACKAGE_DIR, "--task", "multimodal_translation",
            "--visual-features", str(tiny_corpus / "features")]  # fmt: skip
    train(*data, "--arch", "cgru_mmt_small", "--encoder-hidden-size", "8", "--decoder-hidden-size",
          "8", "--optimizer", "adam", "--lr", "0.01", "--batch-size", "16", "--max-update", "3",
          "--save-dir", str(tmp_path), "--no-epoch-checkpoints")  # fmt: skip
    output = generate(
        *data, "--path", str(tmp_path / "checkpoint_last.pt"), "--gen-subset", "test",
        "--diverse-beam-groups", "2", "--beam", "4", "--nbest", "4", "--batch-size", "16",
    )  # fmt: skip
    ids = [int(line.split("\t")[0][2:]) for line in output.splitlines() if line.startswith("H-")]
    assert sorted(set(ids)) == list(range(61)) and len(ids) == 4 * 61
