"""The multimodal_translation task: feature alignment, coverage, normalization, bad input."""

import shutil

import numpy as np
import pytest
import torch
from helpers import FEATURE_DIM, SPLIT_SIZES, setup_task

from fairseq_mmt_adv.data import VisualFeatureError
from fairseq_mmt_adv.models.contract import visual_features_of


def task_for(corpus, features_dir=None, *extra):
    features = str(features_dir or corpus / "features")
    task, _ = setup_task(corpus / "bin", "--visual-features", features, *extra)
    return task


def iterate(task, split, task_cfg=None, **kwargs):
    task.load_dataset(split, task_cfg=task_cfg)
    dataset = task.dataset(split)
    iterator = task.get_batch_iterator(dataset, **kwargs)
    return dataset, list(iterator.next_epoch_itr(shuffle=True))


def test_every_sentence_of_an_evaluation_split_is_batched_once(tiny_corpus):
    task = task_for(tiny_corpus)
    for split in ("valid", "test"):
        # stock fairseq 0.12 drops the remainder of the last batch here (e.g. 56 of 61)
        _, batches = iterate(task, split, max_sentences=16, required_batch_size_multiple=8)
        ids = torch.cat([b["id"] for b in batches]).tolist()
        assert sorted(ids) == list(range(SPLIT_SIZES[split]))
        for batch in batches:
            assert len(batch["id"]) % 8 == 0 or len(batch["id"]) < 8


def test_features_stay_aligned_through_filtering_and_shuffled_batching(tiny_corpus):
    task = task_for(tiny_corpus, None, "--visual-feature-norm", "none")
    dataset, batches = iterate(
        task,
        "train",
        max_tokens=40,
        max_positions=(8, 8),  # drops the long sentences
        ignore_invalid_inputs=True,
        seed=3,
    )
    text = dataset.dataset
    seen = []
    for batch in batches:
        visual = batch["net_input"]["visual_features"]
        assert visual.shape == (len(batch["id"]), FEATURE_DIM)
        for row, sentence_id in enumerate(batch["id"].tolist()):
            assert visual[row, 0].item() == sentence_id  # the row of this very sentence
            src = batch["net_input"]["src_tokens"][row]
            src = src[src.ne(text.src_dict.pad())]
            assert torch.equal(src, text.src[sentence_id])
            seen.append(sentence_id)
    kept = [
        i for i in range(SPLIT_SIZES["train"]) if text.src_sizes[i] <= 8 and text.tgt_sizes[i] <= 8
    ]
    assert 0 < len(kept) < SPLIT_SIZES["train"]
    assert sorted(seen) == kept


def test_l2_normalization_gives_unit_vectors(tiny_corpus):
    task = task_for(tiny_corpus, None, "--visual-feature-norm", "l2")
    _, batches = iterate(task, "valid", max_sentences=8)
    normalize = visual_features_of(task, "test").normalizer  # what the model is built with
    norms = torch.cat([normalize(b["net_input"]["visual_features"]) for b in batches]).norm(dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms))


def test_standardize_uses_train_statistics_that_travel_in_the_task_state(tiny_corpus, tmp_path):
    task = task_for(tiny_corpus)  # standardize is the default
    _, batches = iterate(task, "train", max_sentences=100)
    normalize = visual_features_of(task, "test").normalizer  # what the model is built with
    train = torch.cat([normalize(b["net_input"]["visual_features"]) for b in batches])
    torch.testing.assert_close(train.mean(0), torch.zeros(FEATURE_DIM), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        train.std(0, unbiased=False), torch.ones(FEATURE_DIM), atol=1e-3, rtol=0
    )
    state = task.state_dict()
    assert state["visual_feature_dim"] == FEATURE_DIM

    # decoding elsewhere: no train features at hand, statistics come from the checkpoint, and
    # fairseq-generate passes the checkpoint's task config, whose normalization wins
    shutil.copy(tiny_corpus / "features" / "test.npy", tmp_path / "test.npy")
    decoding = task_for(tiny_corpus, tmp_path, "--visual-feature-norm", "none")
    decoding.load_state_dict(state)
    _, test_batches = iterate(decoding, "test", task_cfg=task.cfg, max_sentences=100)
    raw = np.load(tmp_path / "test.npy")
    mean, std = state["visual_feature_stats"]
    batch = test_batches[0]
    expected = (torch.from_numpy(raw[batch["id"].numpy()]) - mean) / std
    normalize = visual_features_of(decoding, "test").normalizer
    torch.testing.assert_close(normalize(batch["net_input"]["visual_features"]), expected)


def test_shuffled_features_are_a_fixed_permutation_on_evaluation_splits_only(tiny_corpus):
    task = task_for(tiny_corpus, None, "--visual-feature-norm", "none", "--shuffle-visual-features")
    task.load_dataset("train")
    task.load_dataset("valid")
    ids = torch.arange(SPLIT_SIZES["valid"])
    rows = task.dataset("valid").features.rows(ids)[:, 0].long()
    assert sorted(rows.tolist()) == ids.tolist() and not torch.equal(rows, ids)
    again = task_for(
        tiny_corpus, None, "--visual-feature-norm", "none", "--shuffle-visual-features"
    )
    again.load_dataset("valid")
    assert torch.equal(again.dataset("valid").features.rows(ids)[:, 0].long(), rows)
    train_ids = torch.arange(SPLIT_SIZES["train"])
    assert torch.equal(task.dataset("train").features.rows(train_ids)[:, 0].long(), train_ids)


def features_dir_with(tiny_corpus, tmp_path, split, array):
    for name in SPLIT_SIZES:
        shutil.copy(tiny_corpus / "features" / f"{name}.npy", tmp_path / f"{name}.npy")
    if array is None:
        (tmp_path / f"{split}.npy").unlink()
    else:
        np.save(tmp_path / f"{split}.npy", array)
    return tmp_path


def good(split, dim=FEATURE_DIM):
    return np.random.rand(SPLIT_SIZES[split], dim).astype(np.float32)


def with_nan(split):
    array = good(split)
    array[5, 3] = np.nan
    return array


BAD_FEATURES = {
    "missing file": ("valid", None, r"valid\.npy does not exist"),
    "row count": ("valid", np.random.rand(36, FEATURE_DIM).astype(np.float32), "36 rows but"),
    "dimension differs across splits": ("valid", good("valid", 8), "D=8 but 16 is expected"),
    "nan": ("valid", with_nan("valid"), "row 5 .* NaN or inf"),
    "inf": ("valid", np.where(np.arange(37)[:, None] == 7, np.inf, good("valid")), "row 7 .* NaN"),
    "spatial features for a model trained on pooled ones": (
        "valid",
        np.ones((SPLIT_SIZES["valid"], 3, FEATURE_DIM), np.float16),
        r"holds spatial \(K=3 regions of D=16\) features but the model was trained on pooled "
        r"\(D=16\) ones",
    ),
    "ndim": (
        "valid",
        np.random.rand(SPLIT_SIZES["valid"]).astype(np.float32),
        r"expected \(N, D\)",
    ),
    "dtype": ("valid", np.ones((SPLIT_SIZES["valid"], FEATURE_DIM), dtype=np.int64), "dtype int64"),
    "missing train file": ("train", None, r"train\.npy does not exist"),
}


@pytest.mark.parametrize("case", sorted(BAD_FEATURES))
def test_bad_feature_files_raise_clear_errors(tiny_corpus, tmp_path, case):
    split, array, message = BAD_FEATURES[case]
    directory = features_dir_with(tiny_corpus, tmp_path, split, array)
    task = task_for(tiny_corpus, directory)
    with pytest.raises(VisualFeatureError, match=message) as error:
        task.load_dataset("valid")
    assert str(directory) in str(error.value)  # the message names the file


def test_feature_size_must_match_the_checkpoint(tiny_corpus, tmp_path):
    trained = task_for(tiny_corpus)
    trained.load_dataset("valid")
    state = trained.state_dict()
    np.save(tmp_path / "test.npy", good("test", 24))
    decoding = task_for(tiny_corpus, tmp_path)
    decoding.load_state_dict(state)
    with pytest.raises(VisualFeatureError, match="D=24 but 16 is expected"):
        decoding.load_dataset("test")


def test_missing_visual_features_flag_is_a_clear_error(tiny_corpus):
    task, _ = setup_task(tiny_corpus / "bin")
    with pytest.raises(VisualFeatureError, match="--visual-features DIR"):
        task.load_dataset("valid")
