"""Builders of the bad (and good) inputs the reliability tests feed to streamlabel."""

from __future__ import annotations

import io
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
MARKET_TRAIN = ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c2s3_070952_01.jpg",
                "0007_c3s3_071002_02.jpg"]
MARKET_QUERY = ["0002_c3s1_001051_00.jpg"]
MARKET_GALLERY = ["0002_c4s1_000301_01.jpg", "0007_c5s1_001426_03.jpg"]


def image_bytes(mode: str = "RGB", fmt: str = "JPEG", size: tuple[int, int] = (16, 32)) -> bytes:
    """A small image of PIL ``mode`` encoded as ``fmt``, with some texture so decoders do real work."""
    img = Image.effect_noise(size, 40).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def market_tree(root: Path, train: list[str] | None = None, data: bytes | None = None) -> Path:
    """A Market-1501 layout (train / query / gallery) of tiny JPEGs under ``root``."""
    payload = image_bytes() if data is None else data
    for folder, names in (("bounding_box_train", MARKET_TRAIN if train is None else train),
                          ("query", MARKET_QUERY), ("bounding_box_test", MARKET_GALLERY)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).write_bytes(payload)
    return root


def tiny_train_overrides(out_dir: Path, data_dir: Path, *, iterations: int = 4, iters_per_epoch: int = 2) -> list[str]:
    """A synthetic source -> target run small enough for seconds on one CPU thread."""
    sizes = "num_train_ids: 12, num_test_ids: 6, num_cams: 2, images_per_cam: 2, height: 32, width: 16"
    return [
        f"output_dir={out_dir}",
        f"data.source={{name: synthetic, root: {data_dir}/source, kwargs: {{domain: source, {sizes}}}}}",
        f"data.target={{name: synthetic, root: {data_dir}/target, kwargs: {{domain: target, {sizes}}}}}",
        "data.height=32", "data.width=16", "data.num_instances=2", "data.num_workers=0",
        "train.source_batch=8", "train.target_batch=8",
        f"train.pretrain_iterations={iters_per_epoch}", f"train.iterations={iterations}",
        f"train.iters_per_epoch={iters_per_epoch}",
        "train.eval_every_epochs=0", "log.tensorboard=false", "cpu_threads=1", "eval.batch_size=32",
        "model.name=osnet_x0_25",
    ]
