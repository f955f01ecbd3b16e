"""What the set-up installs works out of the box: fairseq's --tensorboard-logdir."""

from helpers import FEATURE_DIM, task_flags, train


def test_fairseq_finds_tensorboardx():
    # fairseq logs "Please install tensorboardX" at import when this import fails
    from fairseq.tasks import text_to_speech

    assert text_to_speech.SummaryWriter is not None


def test_training_writes_tensorboard_logs(tiny_corpus, tmp_path):
    logdir = tmp_path / "tensorboard"
    train(
        *task_flags(tiny_corpus, tiny_corpus / "features"),
        "--arch",
        "cgru_mmt_small",
        "--encoder-hidden-size",
        str(FEATURE_DIM),
        "--optimizer",
        "adam",
        "--lr",
        "0.001",
        "--batch-size",
        "50",
        "--max-update",
        "2",
        "--save-dir",
        str(tmp_path / "checkpoints"),
        "--no-save",
        "--tensorboard-logdir",
        str(logdir),
    )
    events = list(logdir.rglob("events.out.tfevents.*"))
    assert {path.parent.name for path in events} >= {"train", "valid"}, events
