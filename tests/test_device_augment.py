"""augment=device_flips: the training split as one tensor, flips and turns applied to whole batches after the
transfer; the draws per image, a function of the sampler's seed, so a resumed run sees the same batches."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from seg.data.augment import DeviceFlips
from seg.data.batches import DRAWS
from seg.run.train import build_data
from tests.conftest import compose_config, write_tiny_folder_dataset


@pytest.mark.parametrize("code", range(16))
def test_each_draw_is_the_flips_then_the_turns_of_torch(code):
    flip_h, flip_v, turns = code // 8, code // 4 % 2, code % 4
    image = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    batch = {"image": image, "mask": image[:, :1] % 2, "valid": image[:, :1] > 30}
    draws = torch.tensor([[flip_h, flip_v, turns], [0, 0, 0]])
    out = DeviceFlips().apply(batch, draws)
    expected = image[0]
    expected = expected.flip(-1) if flip_h else expected
    expected = expected.flip(-2) if flip_v else expected
    expected = torch.rot90(expected, turns, dims=(-2, -1))
    assert torch.equal(out["image"][0], expected)
    assert torch.equal(out["mask"][0], expected[:1] % 2) and torch.equal(out["valid"][0], expected[:1] > 30)
    assert torch.equal(out["image"][1], image[1])  # each image its own draw


def test_draws_are_a_function_of_the_seed_with_the_configured_odds():
    flips = DeviceFlips(horizontal=0.5, vertical=0.2, rotate90=1.0)
    seeds = list(range(4000))
    draws = flips.draw(seeds)
    assert torch.equal(draws[7:9], flips.draw([7, 8]))  # whatever else is in the batch
    assert draws[:, 0].float().mean() == pytest.approx(0.5, abs=0.03)
    assert draws[:, 1].float().mean() == pytest.approx(0.2, abs=0.03)
    assert torch.bincount(draws[:, 2], minlength=4).tolist() == pytest.approx([1000] * 4, abs=90)
    assert not DeviceFlips(horizontal=0, vertical=0, rotate90=0).draw(seeds).any()


def _datamodule(tiny_cfg, *overrides):
    return build_data(tiny_cfg("augment=device_flips", *overrides))


def test_the_tensor_loader_serves_the_per_item_order_and_resumes_mid_epoch(tiny_cfg):
    datamodule = _datamodule(tiny_cfg)
    whole = list(datamodule.train_dataloader())
    assert len(whole) == 4 and whole[0]["image"].shape == (8, 1, 32, 32) and DRAWS in whole[0]
    order = datamodule.train_dataloader().sampler.items.order(0)
    assert torch.equal(whole[0]["image"], datamodule.train_tensor.image[order[:8]])
    flipped = datamodule.on_after_batch_transfer(whole[0], 0)
    assert DRAWS not in flipped and not torch.equal(flipped["image"], whole[0]["image"])

    datamodule.load_state_dict({"epoch": 0, "batches_done": 2})  # as a checkpoint written after batch 2
    resumed = list(datamodule.train_dataloader())
    assert len(resumed) == 2
    for a, b in zip(resumed, whole[2:], strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("image", "mask", "valid", DRAWS))


def test_where_the_split_cannot_be_one_tensor_each_image_is_flipped_on_the_host_with_the_same_draws(tiny_cfg):
    datamodule = _datamodule(tiny_cfg, "data.cache=false")
    assert datamodule.train_tensor is None
    batch = next(iter(datamodule.train_dataloader()))
    assert DRAWS not in batch and batch["image"].shape == (8, 1, 32, 32)

    tensor_route = _datamodule(tiny_cfg)
    sampler = tensor_route.train_dataloader().sampler.items
    (index, seed), *_ = iter(sampler)
    drawn = tensor_route.train_tensor[[(index, seed)]]
    on_device = tensor_route.on_after_batch_transfer(drawn, 0)["image"][0]
    per_item = datamodule.splits["train"][(index, seed)]["image"]  # the host route, the same item and seed
    assert torch.allclose(on_device, per_item)


def test_a_resize_or_images_of_several_sizes_take_the_per_item_route(tiny_cfg, tmp_path):
    crop = ["+data.train_resize._target_=albumentations.CenterCrop", "+data.train_resize.height=16",
            "+data.train_resize.width=16"]  # fmt: skip
    cropped = _datamodule(tiny_cfg, *crop)
    assert cropped.train_tensor is None
    assert next(iter(cropped.train_dataloader()))["image"].shape == (8, 1, 32, 32)  # 16 px padded to 32
    root = write_tiny_folder_dataset(tmp_path / "mixed", counts=(8, 2, 2))
    first = next((root / "train" / "images").iterdir())
    Image.open(first).resize((40, 32)).save(first)
    mask = root / "train" / "masks" / first.name
    Image.open(mask).resize((40, 32), Image.NEAREST).save(mask)
    cfg = compose_config([f"paths.output_dir={tmp_path}", "data=folder", f"data.root={root}", "augment=device_flips"])
    assert build_data(cfg).train_tensor is None
