"""scripts/extract_features.py and translation.image_features: torchvision's ResNet-50
features in split order, resumable, described beside the file, the same from the library, the
same as the features made before the network was torchvision's; clear errors.

Forward passes use --random-weights on a handful of small generated images (about 0.2 s each).
"""

import functools
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fairseq_mmt_adv.data.feature_files import check_finite, open_feature_file
from fairseq_mmt_adv.translation import image_features as imf

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "extract_features.py"
_spec = importlib.util.spec_from_file_location("extract_features", SCRIPT)
ef = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ef)

torch.set_num_threads(1)

BEFORE = Path(__file__).resolve().parent / "data" / "resnet50-features"  # see its README.md
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
def reference_run(images, tmp_path_factory) -> Path:
    """pool5 features of SPLIT in one uninterrupted run: the directory of train.npy."""
    root = tmp_path_factory.mktemp("reference")
    extract(images, write_split(root / "train.txt", SPLIT), root / "train.npy")
    files = sorted(p.name for p in root.iterdir())
    assert files == ["train.extractor.json", "train.npy", "train.txt"]  # no other side files
    return root


@pytest.fixture(scope="module")
def reference(reference_run) -> np.ndarray:
    return np.load(reference_run / "train.npy")


@pytest.fixture(scope="module")
def extractor(reference_run) -> imf.FeatureExtractor:
    """The library's extractor for the reference run's description (random weights)."""
    return imf.extractor_for(imf.read_description(reference_run / "train.npy"))


def test_resnet50_state_dict_matches_torchvision():
    """The network's state_dict is the one that weights files and the sha256 of feature
    descriptions were made of."""
    model = imf.build_resnet50()
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
    resize = imf.transform().transforms[0]  # the shorter side to 256, the ratio kept
    assert resize(Image.new("RGB", (300, 200))).size == (384, 256)
    assert resize(Image.new("RGB", (200, 333))).size == (256, 426)
    gray = imf.preprocess(Image.new("L", (300, 500), 128))
    assert gray.shape == (3, 224, 224) and gray.dtype == torch.float32
    expected = (128 / 255 - np.array(imf.MEAN)) / np.array(imf.STD)
    np.testing.assert_allclose(gray.mean(dim=(1, 2)).numpy(), expected, rtol=1e-6)
    # a white right half survives the center crop of a 2:1 image exactly in the right half
    half = np.zeros((100, 200, 3), dtype=np.uint8)
    half[:, 100:] = 255
    cropped = imf.preprocess(Image.fromarray(half))[0]
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

    def counting_forward(network: torch.nn.Module, x: torch.Tensor, layer: str) -> torch.Tensor:
        seen.append(len(x))
        return forward(network, x, layer)

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
    model = imf.build_resnet50()
    imf.randomize_(model)
    good = tmp_path / "resnet50.pth"
    torch.save(model.state_dict(), good)
    assert imf.weights_digest(imf.load_model(good, False)) == imf.weights_digest(model)
    wrong = tmp_path / "other.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, wrong)
    with pytest.raises(imf.ExtractionError, match=r"other\.pth is not a torchvision ResNet-50"):
        imf.load_model(wrong, False)
    import torchvision.models._api as weights_api

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(f"no network for {url}")

    monkeypatch.setattr(weights_api, "load_state_dict_from_url", offline)  # torchvision's download
    offline_message = r"(?s)offline.*no network for .*resnet50-11ad3fa6\.pth.*--weights"
    with pytest.raises(imf.ExtractionError, match=offline_message):
        imf.load_model(None, False)
    monkeypatch.setitem(sys.modules, "torchvision", None)  # not installed
    with pytest.raises(imf.ExtractionError, match=r"need torchvision .*features extra"):
        imf.load_model(good, False)


def test_the_description_travels_with_the_features(reference_run, tmp_path):
    described = imf.read_description(reference_run / "train.npy")
    assert described["extractor"] == "resnet50" and described["layer"] == "pool5"
    assert described["shape"] == [2048] and described["dtype"] == "float16"
    assert described["weights"] == imf.RANDOM_WEIGHTS
    assert described["weights_sha256"] == imf.weights_digest(shared_load_model(None, True))
    linked = tmp_path / "data" / "train.npy"  # as prepare-multi30k.sh --features links it
    linked.parent.mkdir()
    linked.symlink_to(reference_run / "train.npy")
    assert imf.read_description(linked) == described
    np.save(tmp_path / "other.npy", np.zeros((2, 3), dtype=np.float32))
    assert imf.read_description(tmp_path / "other.npy") is None  # not made here: unknown
    (tmp_path / "other.extractor.json").write_text("{broken")
    with pytest.raises(imf.ExtractionError, match=r"cannot read .*other\.extractor\.json"):
        imf.read_description(tmp_path / "other.npy")


def test_the_library_extracts_what_the_script_wrote(images, reference, extractor):
    """One preprocessing, one layer: paths and PIL images give the script's rows."""
    with Image.open(images / "b.jpg") as gray:
        rows = extractor.features([images / "a.jpg", gray, str(images / COCO)])
    assert rows.shape == (3, 2048) and rows.dtype == np.float32
    np.testing.assert_allclose(rows, reference[[0, 1, 3]].astype(np.float32), rtol=2e-3, atol=2e-3)


def test_the_extractor_refuses_other_weights_layers_and_bad_images(extractor, tmp_path):
    described = extractor.description
    other = imf.build_resnet50()
    imf.randomize_(other, seed=1)
    weights = tmp_path / "other.pth"
    torch.save(other.state_dict(), weights)
    with pytest.raises(imf.ExtractionError, match=r"weights .*random.* but .*other\.pth has"):
        imf.extractor_for(described, weights=str(weights))
    with pytest.raises(imf.ExtractionError, match="came from resnet50 res5c, which this version"):
        imf.extractor_for({**described, "layer": "res5c"})
    with pytest.raises(imf.ExtractionError, match="preprocessed as 'resize 300'"):
        imf.extractor_for({**described, "preprocessing": "resize 300"})
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(imf.ExtractionError, match=r"image 2 \(.*broken\.jpg\): cannot read"):
        extractor.features([Image.new("RGB", (40, 30)), tmp_path / "broken.jpg"])
    with pytest.raises(imf.ExtractionError, match=r"image 1 \(.*gone\.jpg\): no image at"):
        extractor.features([tmp_path / "gone.jpg"])


def test_features_made_before_torchvision_are_recognised_and_remade(tmp_path):
    """The written-out ResNet-50's features (tests/data/resnet50-features): their descriptions
    are accepted as they are, torchvision's layers give the same rows, and the script writes the
    same description again. (Thread counts change the last bits of a convolution: hence the
    tolerance, far below the differences that other weights or preprocessing make.)"""
    images = [BEFORE / "images" / "a.png", BEFORE / "images" / "b.png"]
    pool5 = imf.read_description(BEFORE / "pool5.npy")
    rows = imf.extractor_for(pool5).features(images)
    np.testing.assert_allclose(rows, np.load(BEFORE / "pool5.npy"), rtol=1e-3, atol=1e-4)
    res4f = imf.read_description(BEFORE / "res4f.npy")  # the description alone was kept
    regions = imf.extractor_for(res4f).features(images)
    assert regions.shape == (2, 196, 1024)
    sample = np.load(BEFORE / "res4f.sample.npy")
    np.testing.assert_allclose(regions[:, ::7, ::8], sample, rtol=1e-3, atol=1e-4)
    out = tmp_path / "pool5.npy"
    extract(BEFORE / "images", BEFORE / "split.txt", out, "--dtype", "float32")
    assert imf.read_description(out) == pool5
    np.testing.assert_allclose(np.load(out), np.load(BEFORE / "pool5.npy"), rtol=1e-3, atol=1e-4)
