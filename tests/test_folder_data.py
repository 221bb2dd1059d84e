"""A user's own folder dataset: layouts, formats, mask policies, sizes, and one clear line for bad data."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from seg.data import scan as scan_module
from seg.data.collate import PadCollate
from seg.data.datamodule import FolderDataModule
from seg.data.layout import find_splits
from seg.data.masks import IGNORE, MaskPolicy
from seg.errors import DataError
from seg.heads import SigmoidBCE, TanhMSE
from seg.model.metrics import as_metric_input, segmentation_metrics
from tests.conftest import compose_config, run_cli, tiny_overrides


def picture(index: int, height: int = 24, width: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """A grey uint8 image with a bright square and its {0, 1} mask, different per index."""
    rng = np.random.default_rng(index)
    mask = np.zeros((height, width), np.uint8)
    top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
    mask[top : top + height // 3, left : left + width // 3] = 1
    image = (60 + 120 * mask + rng.integers(0, 40, (height, width))).astype(np.uint8)
    return image, mask


def write_pairs(
    folder: Path,
    count: int,
    *,
    start: int = 0,
    image_ext=".png",
    mask_ext=".png",
    mask_suffix="",
    to_image=None,
    to_mask=None,
    size=(24, 32),
):
    """`folder/images` and `folder/masks` with `count` pairs; `to_image`/`to_mask` convert before writing."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    for i in range(start, start + count):
        image, mask = picture(i, *size)
        cv2.imwrite(str(folder / "images" / f"img_{i:03d}{image_ext}"), to_image(image) if to_image else image)
        cv2.imwrite(
            str(folder / "masks" / f"img_{i:03d}{mask_suffix}{mask_ext}"), to_mask(mask) if to_mask else mask * 255
        )


def split_dataset(root: Path, counts=(8, 3, 3), **kwargs) -> Path:
    for name, count, start in zip(("train", "val", "test"), counts, (0, 100, 200), strict=True):
        if count:
            write_pairs(root / name, count, start=start, **kwargs)
    return root


def module(root, **kwargs) -> FolderDataModule:
    dm = FolderDataModule(root=root, batch_size=4, eval_batch_size=3, num_workers=0, **kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def stems(dataset) -> list[str]:
    return [image.stem for image, _ in dataset.pairs]


# --- layouts ---------------------------------------------------------------------------------------------


def test_split_folders_are_used_as_they_are(tmp_path):
    dm = module(split_dataset(tmp_path / "ds"))
    assert {name: len(ds) for name, ds in dm.splits.items()} == {"train": 8, "val": 3, "test": 3}


def test_missing_val_is_split_off_train_the_same_way_every_time(tmp_path):
    root = split_dataset(tmp_path / "ds", counts=(20, 0, 4))
    first = module(root, split={"val": 0.25})
    second = find_splits(root, split={"val": 0.25})
    assert len(first.splits["val"]) == 5 and len(first.splits["train"]) == 15
    assert stems(first.splits["val"]) == [image.stem for image, _ in second["val"]]
    assert not set(stems(first.splits["val"])) & set(stems(first.splits["train"]))
    other_seed = find_splits(root, split={"val": 0.25, "seed": 1})
    assert [p[0].stem for p in other_seed["val"]] != stems(first.splits["val"])


def test_flat_images_and_masks_are_split_by_ratio_without_overlap(tmp_path):
    write_pairs(tmp_path / "ds", 40)
    dm = module(tmp_path / "ds", split={"val": 0.2, "test": 0.1})
    sizes = {name: len(ds) for name, ds in dm.splits.items()}
    assert sizes == {"train": 28, "val": 8, "test": 4}
    all_stems = [s for ds in dm.splits.values() for s in stems(ds)]
    assert len(all_stems) == len(set(all_stems)) == 40


def test_masks_pair_by_stem_plus_suffix_and_another_extension(tmp_path):
    write_pairs(tmp_path / "ds", 10, image_ext=".jpg", mask_suffix="_segmentation")
    dm = module(tmp_path / "ds", mask_suffix="_segmentation")
    image, mask = dm.splits["train"].pairs[0]
    assert mask.name == f"{image.stem}_segmentation.png"


def test_a_missing_suffix_is_suggested(tmp_path):
    write_pairs(tmp_path / "ds", 10, mask_suffix="_segmentation")
    with pytest.raises(
        DataError, match=r"img_000\.png: no mask named img_000\.\*.*set data\.mask_suffix='_segmentation'"
    ):
        module(tmp_path / "ds")


# --- formats: channels reach the model without being said twice --------------------------------------------


@pytest.mark.parametrize(
    ("ext", "convert", "channels", "scale"),
    [
        (".png", None, 1, 255),
        (".jpg", lambda g: cv2.merge([g, g // 2, g]), 3, 255),
        (".tif", lambda g: g.astype(np.uint16) * 257, 1, 65535),  # 16-bit grey TIFF
        (".tiff", lambda g: cv2.merge([g, g, g]).astype(np.uint16) * 257, 3, 65535),  # 16-bit RGB TIFF
        (".png", lambda g: cv2.merge([g, g, g, np.full_like(g, 200)]), 3, 255),  # RGBA: alpha dropped
    ],
)
def test_formats_and_channel_counts_are_read(tmp_path, ext, convert, channels, scale):
    split_dataset(tmp_path / "ds", image_ext=ext, to_image=convert)
    dm = module(tmp_path / "ds")
    assert dm.in_channels == channels and len(dm.mean) == channels
    item = dm.splits["val"][0]
    assert item["image"].shape == (channels, 24, 32)
    # auto normalization: the training images' pixels have mean 0 and std 1 per channel
    train = torch.stack([dm.splits["train"][i]["image"] for i in range(8)])
    assert torch.allclose(train.mean(dim=(0, 2, 3)), torch.zeros(channels), atol=2e-3)
    assert torch.allclose(train.std(dim=(0, 2, 3)), torch.ones(channels), atol=2e-2)


def test_sixteen_bit_and_eight_bit_copies_give_the_same_items(tmp_path):
    split_dataset(tmp_path / "a")
    split_dataset(tmp_path / "b", image_ext=".tif", to_image=lambda g: g.astype(np.uint16) * 257)
    a, b = module(tmp_path / "a"), module(tmp_path / "b")
    assert a.mean == pytest.approx(b.mean) and a.std == pytest.approx(b.std)
    assert torch.allclose(a.splits["test"][1]["image"], b.splits["test"][1]["image"], atol=1e-5)


def folder_cfg(tmp_path, root, *overrides):
    """The tiny test config with data=folder instead of the generated dataset."""
    tiny = [o for o in tiny_overrides(tmp_path) if not o.startswith("data.")]
    return compose_config([*tiny, "data=folder", f"data.root={root}", "data.batch_size=4", *overrides])


def test_a_grey_folder_trains_with_no_channel_key(tmp_path):
    from seg.run.train import train

    root = split_dataset(tmp_path / "grey", counts=(16, 5, 5), size=(40, 40))  # 40 px: padded to 64 for val/test
    cfg = folder_cfg(tmp_path, root, "trainer.max_epochs=1")
    summary = train(cfg)
    assert cfg.data.in_channels == "auto" and cfg.data.mean == "auto"  # the config is not written into
    saved = torch.load(summary["best_checkpoint"], map_location="cpu", weights_only=False)
    settled = saved["seg_config"]["data"]  # the settled values, stored in the checkpoint and config.yaml
    assert settled["in_channels"] == 1 and len(settled["mean"]) == 1
    assert OmegaConf.load(Path(summary["run_dir"]) / "config.yaml").data.in_channels == 1
    assert saved["state_dict"]["net.encoder.conv1.weight"].shape[1] == 1
    assert 0.0 <= summary["test/iou"] <= 1.0


# --- mask policies --------------------------------------------------------------------------------------


def test_zero_one_and_zero_255_masks_decode_alike(tmp_path):
    split_dataset(tmp_path / "a", to_mask=lambda m: m)
    split_dataset(tmp_path / "b")
    assert torch.equal(module(tmp_path / "a").splits["val"][0]["mask"], module(tmp_path / "b").splits["val"][0]["mask"])


def test_jpeg_masks_need_the_threshold_policy(tmp_path):
    split_dataset(tmp_path / "ds", mask_ext=".jpg")
    with pytest.raises(
        DataError,
        match=r"masks/img_\d+\.jpg: mask values \{.*\} are outside the mask policy.*data\.mask\.threshold=128",
    ):
        module(tmp_path / "ds")
    dm = module(tmp_path / "ds", mask=MaskPolicy(threshold=128))
    _, mask = picture(100)
    assert np.array_equal(dm.splits["val"][0]["mask"][0].numpy(), mask)  # JPEG noise thresholded away


def test_trimap_border_is_ignored_by_loss_and_metrics(tmp_path):
    def trimap(mask):  # 1 pet, 2 background, 3 a border ring around the pet
        border = cv2.dilate(mask, np.ones((3, 3), np.uint8)) - cv2.erode(mask, np.ones((3, 3), np.uint8))
        return np.where(border > 0, 3, np.where(mask > 0, 1, 2)).astype(np.uint8)

    split_dataset(tmp_path / "ds", to_mask=trimap)
    dm = module(tmp_path / "ds", mask=MaskPolicy(foreground=[1], background=[2], ignore=[3]))
    batch = next(iter(dm.val_dataloader()))
    _, mask = picture(100)
    stored = trimap(mask)
    assert torch.equal(batch["valid"][0, 0, :24], torch.from_numpy(stored != 3))  # rows 24..31: padding
    assert torch.equal(batch["mask"][0, 0, :24], torch.from_numpy((stored == 1).astype(np.float32)))

    # whatever the network says on ignored pixels changes neither a head's loss nor the metrics
    logits = torch.randn(batch["mask"].shape, requires_grad=True)
    flipped = torch.where(batch["valid"], logits, -logits)
    for head in (SigmoidBCE(), TanhMSE()):
        loss = head.loss(logits, batch["mask"], batch["valid"])
        assert torch.allclose(loss, head.loss(flipped, batch["mask"], batch["valid"]))
        (grad,) = torch.autograd.grad(loss, logits)
        assert grad[~batch["valid"]].abs().max() == 0
    scores = []
    for z in (logits, flipped):
        metrics = segmentation_metrics("val")
        metrics.update(*as_metric_input(z >= 0, batch["mask"], batch["valid"]))
        scores.append(metrics.compute()["val/iou"])
    assert scores[0] == scores[1]


# --- sizes: padded to the U-Net's multiple, scored on the original pixels only ----------------------------


def test_images_of_different_sizes_are_padded_and_scored_on_their_own_pixels(tmp_path):
    root = tmp_path / "ds"
    write_pairs(root / "train", 4)
    write_pairs(root / "val", 1, start=100, size=(24, 32))
    write_pairs(root / "val", 1, start=101, size=(50, 37))
    write_pairs(root / "test", 2, start=200)
    dm = module(root)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape[-2:] == (64, 64)  # 50 x 37 rounded up to multiples of 32
    assert int(batch["valid"][0].sum()) == 24 * 32 and int(batch["valid"][1].sum()) == 50 * 37

    # IoU of the padded batch == IoU of the two images scored alone at their own sizes
    decision = batch["image"][:, :1] > 0
    padded = segmentation_metrics("val")
    padded.update(*as_metric_input(decision, batch["mask"], batch["valid"]))
    alone = segmentation_metrics("val")
    for i, (h, w) in enumerate([(24, 32), (50, 37)]):
        crop = (slice(i, i + 1), slice(None), slice(h), slice(w))
        alone.update(*as_metric_input(decision[crop], batch["mask"][crop], batch["valid"][crop]))
    assert padded.compute()["val/iou"] == alone.compute()["val/iou"]


def test_padding_mirrors_the_image():
    item = {
        "image": torch.arange(6.0).reshape(1, 2, 3),
        "mask": torch.ones(1, 2, 3),
        "valid": torch.ones(1, 2, 3, dtype=torch.bool),
    }
    batch = PadCollate(4)([item])
    assert batch["image"][0, 0].tolist() == [[0, 1, 2, 2], [3, 4, 5, 5], [3, 4, 5, 5], [0, 1, 2, 2]]
    assert batch["mask"][0, 0, 2:].sum() == 0 and batch["valid"][0, 0].sum() == 6


def test_every_batch_says_which_pixels_count_even_when_all_do(tmp_path):
    split_dataset(tmp_path / "ds", size=(32, 32))
    batch = next(iter(module(tmp_path / "ds").val_dataloader()))
    assert batch["valid"].dtype == torch.bool and batch["valid"].shape == batch["mask"].shape
    assert batch["valid"].all()


# --- bad data: one line naming the file, found before training ------------------------------------------


def corrupt(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n not really")


def truncate_as_jpeg(root: Path) -> None:
    (root / "train/images/img_003.png").unlink()
    encoded = cv2.imencode(".jpg", picture(3)[0])[1].tobytes()
    (root / "train/images/img_003.jpg").write_bytes(encoded[: len(encoded) * 3 // 4])  # decodes, half grey


BAD_DATA = {
    "image without mask": (
        lambda r: (r / "train/masks/img_001.png").unlink(),
        r"train/images/img_001\.png: no mask named img_001\.\*",
    ),
    "mask without image": (
        lambda r: (r / "val/images/img_100.png").unlink(),
        r"val/masks/img_100\.png: no image named img_100\.\*",
    ),
    "unreadable image": (
        lambda r: corrupt(r / "train/images/img_002.png"),
        r"img_002\.png: cannot be decoded as an image",
    ),
    "unreadable mask": (
        lambda r: corrupt(r / "test/masks/img_201.png"),
        r"test/masks/img_201\.png: cannot be decoded as a mask",
    ),
    "truncated jpeg": (truncate_as_jpeg, r"img_003\.jpg: JPEG file is truncated"),
    "mask size": (
        lambda r: cv2.imwrite(str(r / "val/masks/img_101.png"), np.zeros((10, 32), np.uint8)),
        r"val/masks/img_101\.png: mask is 32x10 but its image img_101\.png is 32x24",
    ),
    "mask values": (
        lambda r: cv2.imwrite(str(r / "train/masks/img_004.png"), np.full((24, 32), 7, np.uint8)),
        r"img_004\.png: mask values \{7\} are outside the mask policy",
    ),
    "colour mask": (
        lambda r: cv2.imwrite(
            str(r / "train/masks/img_004.png"),
            np.dstack([np.zeros((24, 32), np.uint8), np.full((24, 32), 255, np.uint8), np.zeros((24, 32), np.uint8)]),
        ),
        r"img_004\.png: mask has 3 different colour channels",
    ),
    "mixed channels": (
        lambda r: cv2.imwrite(str(r / "test/images/img_200.png"), np.zeros((24, 32, 3), np.uint8)),
        r"test/images/img_200\.png: has 3 channel\(s\) but 13 other images have 1",
    ),
    "duplicate stems": (
        lambda r: cv2.imwrite(str(r / "train/images/img_005.jpg"), picture(5)[0]),
        r"img_005\.(png|jpg): two files share the stem 'img_005'",
    ),
    "empty split": (
        lambda r: [p.unlink() for p in (r / "test/images").iterdir()],
        r"test/images: no images .* an empty split",
    ),
    "no layout": (
        lambda r: [(r / name).rename(r / f"old_{name}") for name in ("train", "val", "test")],
        r"expected train/, val/, test/ folders .*found old_test/, old_train/, old_val/",
    ),
    "no train": (lambda r: (r / "train").rename(r / "training"), r"has val/, test/ but no train/"),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_clear_line(tmp_path, case):
    root = split_dataset(tmp_path / "ds")
    damage, message = BAD_DATA[case]
    damage(root)
    with pytest.raises(DataError, match=message) as error:
        module(root)
    assert "\n" not in str(error.value)


def test_a_channel_count_the_model_does_not_take_is_named(tmp_path):
    split_dataset(tmp_path / "ds")
    with pytest.raises(
        DataError, match=r"img_000\.png: has 1 channel\(s\) but the model takes 3; set data\.in_channels=1 \(or auto\)"
    ):
        module(tmp_path / "ds", in_channels=3)


def test_many_bad_files_are_counted_in_the_one_line(tmp_path):
    root = split_dataset(tmp_path / "ds")
    for i in range(3):
        corrupt(root / f"train/images/img_00{i}.png")
    with pytest.raises(
        DataError, match=r"img_000\.png: cannot be decoded .* \[2 more bad file\(s\) in .*ds, e\.g\. .*img_001\.png\]"
    ):
        module(root)


def test_missing_root_is_reported(tmp_path):
    dm = FolderDataModule(root=tmp_path / "nowhere", in_channels=1, mean=[0.5], std=[0.25])
    with pytest.raises(DataError, match="data.root not found"):
        dm.prepare_data()


def test_relative_root_is_taken_from_the_project_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    dm = FolderDataModule(root="data/x", in_channels=1, mean=[0.5], std=[0.25])
    assert dm.root == Path(__file__).resolve().parent.parent / "data" / "x"


@pytest.mark.slow  # a real CLI process (imports alone take seconds); the in-process tests cover the logic
def test_bad_data_stops_train_py_with_one_line_and_no_traceback(tmp_path):
    root = split_dataset(tmp_path / "ds")
    cv2.imwrite(str(root / "val/masks/img_102.png"), np.full((24, 32), 9, np.uint8))
    result = run_cli("data=folder", f"data.root={root}", f"paths.output_dir={tmp_path / 'run'}", timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "img_102.png: mask values {9} are outside the mask policy" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()  # stopped before training


# --- the validation pass: cached, and never touches the user's files ----------------------------------------


def test_a_second_setup_decodes_nothing_and_a_changed_file_is_decoded_again(tmp_path, monkeypatch):
    root = split_dataset(tmp_path / "ds")
    decoded = []
    real = scan_module.inspect
    monkeypatch.setattr(scan_module, "inspect", lambda pair: decoded.append(pair[0].name) or real(pair))
    module(root)
    assert len(decoded) == 14
    decoded.clear()
    module(root)
    assert decoded == []
    cv2.imwrite(str(root / "val/masks/img_100.png"), np.full((24, 32), 9, np.uint8))
    with pytest.raises(DataError, match="img_100.png: mask values"):
        module(root)
    assert decoded == ["img_100.png"]


def test_the_users_files_are_only_read(tmp_path):
    root = split_dataset(tmp_path / "ds")
    before = {
        p: (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }
    dm = module(root)
    next(iter(dm.train_dataloader()))
    after = {
        p: (hashlib.sha1(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()
    }
    assert after == before


def test_statistics_match_numpy(tmp_path):
    split_dataset(tmp_path / "ds", image_ext=".jpg", to_image=lambda g: cv2.merge([g, 255 - g, g // 3]))
    dm = module(tmp_path / "ds")
    pixels = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p, _ in dm.splits["train"].pairs]) / 255
    assert dm.mean == pytest.approx(pixels.mean(axis=(0, 1, 2)).tolist(), abs=1e-5)
    assert dm.std == pytest.approx(pixels.std(axis=(0, 1, 2)).tolist(), abs=1e-5)


def test_policy_values_listed_twice_are_refused():
    with pytest.raises(DataError, match=r"value\(s\) \[1\] listed in two of foreground/background/ignore"):
        MaskPolicy(foreground=[1], background=[0, 1])


def test_decoded_ignore_value_is_reserved():
    assert IGNORE == 255 and MaskPolicy(foreground=[255], ignore=[128]).decode(
        np.array([[255, 128, 0]]), "m"
    ).tolist() == [[1, IGNORE, 0]]


def test_gif_masks_are_read(tmp_path):
    split_dataset(tmp_path / "ds")
    path = tmp_path / "ds/train/masks/img_000.png"
    Image.open(path).save(path.with_suffix(".gif"))
    path.unlink()
    dm = module(tmp_path / "ds")
    assert dm.splits["train"].pairs[0][1].suffix == ".gif"
    assert torch.equal(dm.splits["train"][0]["mask"][0], torch.from_numpy(picture(0)[1].astype(np.float32)))


def test_scan_records_survive_json(tmp_path):
    split_dataset(tmp_path / "ds")
    module(tmp_path / "ds")
    (cache,) = (tmp_path / "scan-cache").glob("*.json")
    assert len(json.loads(cache.read_text())) == 14


def test_eval_py_on_a_padded_dataset_with_ignored_pixels_equals_training(tmp_path):
    from hydra import compose, initialize_config_dir

    from seg.inference.evaluate import evaluate
    from seg.run.train import train
    from tests.conftest import CONF_DIR

    def trimap(mask):
        border = cv2.dilate(mask, np.ones((3, 3), np.uint8)) - mask
        return np.where(border > 0, 3, np.where(mask > 0, 1, 2)).astype(np.uint8)

    root = tmp_path / "pets"
    write_pairs(root / "train", 12, size=(40, 40), to_mask=trimap)
    write_pairs(root / "test", 3, start=200, size=(50, 37), to_mask=trimap)  # padded to 64 x 64, val split off train
    policy = ["data.mask.foreground=[1]", "data.mask.background=[2]", "data.mask.ignore=[3]"]
    summary = train(folder_cfg(tmp_path, root, *policy, "data.split.val=0.25", "trainer.max_epochs=2"))
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="eval", overrides=[f"ckpt={summary['best_checkpoint']}", f"output={tmp_path / 'e.json'}"]
        )
    report = evaluate(cfg)
    assert abs(report["test/iou"] - summary["test/iou"]) < 1e-6 and report["images"] == 3
