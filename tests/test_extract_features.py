"""scripts/extract_features.py: ResNet-50 features in split order, resumable, clear errors.

Forward passes use --random-weights on a handful of small generated images (about 0.2 s each).
"""

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fairseq_mmt_adv.data.visual_features import check_finite, open_feature_file

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "extract_features.py"
_spec = importlib.util.spec_from_file_location("extract_features", SCRIPT)
ef = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ef)

torch.set_num_threads(1)

COCO = "COCO_val2014_000000391895.jpg"
SPLIT = ["a.jpg", "b.jpg", "c.png", f"{COCO}#2"]  # rows 0-3 of the reference run
# sha256 of "name (shape)" lines of torchvision 0.29's resnet50().state_dict(), in order
TORCHVISION_KEYS_SHA256 = "d7e4f8bb0a5363446a59c81c3887ccf66900a11651a0ae2dec96d1bb1eb6ea81"


def noise(height: int, width: int, seed: int) -> np.ndarray:
    """A smooth random image (uint8, H x W x 3) so that the rows differ clearly."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (8, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """Four images: RGB JPEG, grayscale JPEG, RGBA PNG, COCO-named JPEG (different sizes)."""
    root = tmp_path_factory.mktemp("images")
    Image.fromarray(noise(240, 320, 0)).save(root / "a.jpg")
    Image.fromarray(noise(300, 200, 1)).convert("L").save(root / "b.jpg")
    Image.fromarray(noise(256, 256, 2)).convert("RGBA").save(root / "c.png")
    Image.fromarray(noise(400, 240, 3)).save(root / COCO)
    return root


def write_split(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(f"{line}\n" for line in lines))
    return path


# The runs only read the network: build the random ResNet-50 once (about 0.5 s a build).
shared_load_model = functools.cache(ef.load_model)


def extract(images: Path, split: Path, out: Path, *extra: str) -> None:
    """The command line in-process, with --random-weights on the CPU in batches of two."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ef, "load_model", shared_load_model)
        ef.main(
            [
                "--images",
                str(images),
                "--split-file",
                str(split),
                "--out",
                str(out),
                "--random-weights",
                "--device",
                "cpu",
                "--batch-size",
                "2",
                *extra,
            ]
        )


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> np.ndarray:
    """pool5 features of SPLIT in one uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    out = root / "train.npy"
    extract(images, write_split(root / "train.txt", SPLIT), out)
    assert sorted(p.name for p in root.iterdir()) == ["train.npy", "train.txt"]  # no side files
    return np.load(out)


def test_resnet50_state_dict_matches_torchvision():
    model = ef.ResNet50()
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    assert len(shapes) == 320
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert shapes["layer2.0.conv2.weight"] == (128, 128, 3, 3)
    assert shapes["layer3.5.bn3.running_var"] == (1024,)
    assert shapes["layer4.2.bn3.num_batches_tracked"] == ()
    assert shapes["fc.weight"] == (1000, 2048)
    assert shapes["fc.bias"] == (1000,)
    listing = "\n".join(f"{name} {shape}" for name, shape in shapes.items())
    assert hashlib.sha256(listing.encode()).hexdigest() == TORCHVISION_KEYS_SHA256
    with torch.inference_mode():
        assert model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)


def test_preprocess_resize_crop_normalize():
    assert ef.resized_size(300, 200) == (384, 256)
    assert ef.resized_size(200, 333) == (256, 426)
    gray = ef.preprocess(Image.new("L", (300, 500), 128))
    assert gray.shape == (3, 224, 224) and gray.dtype == torch.float32
    expected = (128 / 255 - ef.MEAN) / ef.STD
    np.testing.assert_allclose(gray.mean(dim=(1, 2)).numpy(), expected, rtol=1e-6)
    # a white right half survives the center crop of a 2:1 image exactly in the right half
    half = np.zeros((100, 200, 3), dtype=np.uint8)
    half[:, 100:] = 255
    cropped = ef.preprocess(Image.fromarray(half))[0]
    assert (cropped[:, :100] < 0).all() and (cropped[:, 124:] > 0).all()


def test_pool5_shape_dtype_and_finite(reference):
    assert reference.shape == (4, 2048) and reference.dtype == np.float16
    assert np.isfinite(reference).all() and (reference >= 0).all()  # after a ReLU
    assert len({row.tobytes() for row in reference}) == 4


def test_rows_follow_split_order(images, reference, tmp_path):
    out = tmp_path / "swapped.npy"
    extract(images, write_split(tmp_path / "s.txt", [f"{COCO}#4", "b.jpg"]), out, "--workers", "2")
    swapped = np.load(out).astype(np.float32)
    np.testing.assert_allclose(swapped, reference[[3, 1]].astype(np.float32), rtol=2e-3, atol=2e-3)
    assert not np.allclose(swapped, reference[[1, 3]].astype(np.float32), rtol=0.1)


def test_res4f_shape_and_dtype(images, tmp_path):
    out = tmp_path / "res4f.npy"
    extract(
        images,
        write_split(tmp_path / "s.txt", ["c.png", "a.jpg"]),
        out,
        "--layer",
        "res4f",
        "--dtype",
        "float32",
    )
    features = open_feature_file(str(out))  # as the plugin's task reads it
    assert features.shape == (2, 196, 1024) and features.dtype == np.float32
    check_finite(features, str(out))
    assert not np.allclose(features[0], features[1])


def test_resume_after_interruption_equals_uninterrupted_run(
    images, reference, tmp_path, monkeypatch, capsys
):
    split = write_split(tmp_path / "train.txt", SPLIT)
    out = tmp_path / "train.npy"
    partial, progress = tmp_path / "train.npy.partial", tmp_path / "train.npy.progress"
    extract(images, split, out, "--max-rows", "2")
    assert not out.exists() and partial.exists()
    assert json.loads(progress.read_text())["rows"] == 2
    seen = []
    forward = ef.forward_features

    def counting_forward(model: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
        seen.append(len(x))
        return forward(model, x, layer)

    monkeypatch.setattr(ef, "forward_features", counting_forward)
    extract(images, split, out)
    assert seen == [2]  # only the last two rows were computed
    assert "resuming" in capsys.readouterr().err
    assert not partial.exists() and not progress.exists()
    np.testing.assert_array_equal(np.load(out), reference)


def test_fingerprint_mismatch_is_refused(images, tmp_path):
    split = write_split(tmp_path / "train.txt", SPLIT[:2])
    out = tmp_path / "train.npy"
    extract(images, split, out, "--max-rows", "1")
    with pytest.raises(SystemExit, match=r"layer: pool5 there, res4f now.*--restart"):
        extract(images, split, out, "--layer", "res4f")
    write_split(split, SPLIT[1::-1])
    with pytest.raises(SystemExit, match=r"train\.npy\.partial was started with .*split_sha256"):
        extract(images, split, out)
    extract(images, split, out, "--restart", "--layer", "res4f", "--max-rows", "1")
    state = json.loads((tmp_path / "train.npy.progress").read_text())
    assert state["rows"] == 1 and state["fingerprint"]["layer"] == "res4f"


def test_missing_images_are_named_by_the_cli(images, tmp_path):
    split = write_split(tmp_path / "test.txt", ["a.jpg", "gone.jpg", "COCO_val2014_0001.jpg#3"])
    result = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--images",
            str(images),
            "--split-file",
            str(split),
            "--out",
            str(tmp_path / "test.npy"),
            "--random-weights",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 1
    assert f"2 of the 3 images listed in {split} are missing" in result.stderr
    assert "gone.jpg" in result.stderr and "COCO_val2014_0001.jpg" in result.stderr
    assert "#3" not in result.stderr and "Traceback" not in result.stderr


def test_unreadable_image_is_named(images, tmp_path):
    bad = tmp_path / "img"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    split = write_split(tmp_path / "s.txt", ["broken.jpg"])
    with pytest.raises(SystemExit, match=r"cannot read image .*broken\.jpg"):
        extract(bad, split, tmp_path / "s.npy")
    assert not (tmp_path / "s.npy").exists()


def test_empty_split_file_and_existing_output(images, tmp_path):
    empty = write_split(tmp_path / "empty.txt", ["", ""])
    with pytest.raises(SystemExit, match=r"split file .*empty\.txt is empty"):
        extract(images, empty, tmp_path / "e.npy")
    (tmp_path / "done.npy").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"done\.npy exists; pass --overwrite"):
        extract(images, write_split(tmp_path / "s.txt", SPLIT), tmp_path / "done.npy")


def test_weights_file_loading(tmp_path, monkeypatch):
    model = ef.ResNet50()
    ef.randomize_(model)
    good = tmp_path / "resnet50.pth"
    torch.save(model.state_dict(), good)
    assert ef.weights_digest(ef.load_model(good, False)) == ef.weights_digest(model)
    wrong = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ef.ExtractionError, match=r"other\.pth is not a torchvision ResNet-50"):
        ef.load_model(wrong, False)
    monkeypatch.setattr(ef, "torchvision_models", lambda: None)
    with pytest.raises(ef.ExtractionError, match=r"(?s)offline.*resnet50-11ad3fa6\.pth.*--weights"):
        ef.load_model(None, False)
