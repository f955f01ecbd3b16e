"""The data directory's preprocessing, applied to new text and undone on the output."""

import subprocess
import sys

import pytest

from fairseq_mmt_adv.text_pipeline import PREPROCESSING_FILE, TextPipeline


def test_without_a_preprocessing_file_text_passes_as_it_is(tmp_path):
    pipeline = TextPipeline.load(tmp_path)
    text = "A  man rides,  a Bike."
    assert pipeline.tokenize(text) == "A man rides, a Bike."  # whitespace only
    assert pipeline.apply_bpe("a b") == "a b" and pipeline.remove_bpe("a@@ b") == "a@@ b"
    assert pipeline.detokenize("x , y") == "x , y"


def test_multi30k_steps_match_the_official_tokenized_files(tmp_path):
    """The official lc.norm.tok files: lowercase, Moses punctuation and tokens, escaped."""
    import io

    from subword_nmt.learn_bpe import learn_bpe

    with open(tmp_path / "codes", "w") as codes:
        learn_bpe(io.StringIO("a bike , a bike .\n" * 5), codes, 6)
    pipeline = TextPipeline("en", "de", True, "moses", "codes")
    pipeline.save(tmp_path)
    loaded = TextPipeline.load(tmp_path)
    assert loaded.lowercase and loaded.bpe_codes == "codes"
    tokens = loaded.tokenize("A man's bike, “old”.")
    assert tokens == "a man &apos;s bike , &quot; old . &quot;"  # Moses moves the stop in
    segmented = loaded.apply_bpe("a bike bikers")
    assert segmented.startswith("a bike ") and "@@ " in segmented  # an unseen word is split
    assert loaded.remove_bpe(segmented) == "a bike bikers"
    assert loaded.detokenize("ein &quot; alter &quot; mann , hier .") == 'ein "alter" mann, hier.'


def test_a_broken_file_or_missing_codes_are_named(tmp_path):
    (tmp_path / PREPROCESSING_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"cannot read {tmp_path / PREPROCESSING_FILE}"):
        TextPipeline.load(tmp_path)
    TextPipeline(bpe_codes="gone.codes").save(tmp_path)
    with pytest.raises(FileNotFoundError, match="gone.codes, which are missing"):
        TextPipeline.load(tmp_path).apply_bpe("a")


def test_it_imports_without_fairseq_or_torch():
    code = "import sys, fairseq_mmt_adv.text_pipeline; assert 'fairseq' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
