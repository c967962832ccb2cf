"""The README's "Use it on your data" commands run as written: the Market-1501 block end to end on a tiny
dataset in Market's layout (the paths /data/market1501 and runs/ point there, every `train` gets
`train.smoke=true`), the folder-dataset command the same way, and the other configs resolve and pass
their checks (they name a ResNet-50 weight file and datasets no test machine has)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from streamlabel.engine.checkpoint import load_checkpoint
from streamlabel.launch.cli import main
from streamlabel.launch.run_config import load_run_config
from tests.helpers.shared_data import shared_file

REPO = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.shared, pytest.mark.slow]


def readme_commands() -> list[list[str]]:
    """The commands of the bash blocks of the README's "Use it on your data" section, split like a shell."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Use it on your data", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [shlex.split(line) for block in blocks for line in block.splitlines() if line.strip()]


def _image(path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, size=(128, 64, 3), dtype=np.uint8)).save(path)


def market_layout(root: Path) -> Path:
    """20 train identities and 16 test identities in 2 cameras, plus distractors and junk, named as Market's."""
    count = 0
    for split, ids, per_cam in (("bounding_box_train", range(1, 21), 3), ("query", range(21, 37), 1),
                                ("bounding_box_test", range(21, 37), 2)):
        (root / split).mkdir(parents=True)
        for pid in ids:
            for cam in (1, 2):
                for shot in range(per_cam):
                    count += 1
                    _image(root / split / f"{pid:04d}_c{cam}s1_{count:06d}_{shot:02d}.jpg", count)
    for junk in ("0000_c1s1_900001_00.jpg", "-1_c2s1_900002_00.jpg"):
        _image(root / "bounding_box_test" / junk, 7)
    return root


def _in(tmp: Path, args: list[str]) -> list[str]:
    """The command with the README's paths moved into ``tmp`` and the smoke switch on every `train`."""
    out = [a.replace("/data/market1501", str(tmp / "market1501")).replace("/data/mine", str(tmp / "mine"))
           .replace("runs/", str(tmp / "runs") + "/") for a in args]
    out = [a if not a.endswith(".npz") and not a.endswith(".png") else str(tmp / a) for a in out]
    if out[1] == "train":
        out += [] if "train.smoke=true" in out else ["train.smoke=true"]
        if not any(a.startswith("output_dir=") for a in out):
            out.append(f"output_dir={tmp / 'runs' / 'cpu_market'}")
    return out[1:] + (["--quiet"] if out[1] in ("extract", "labels") else [])


def test_the_use_it_on_your_data_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared_file("models", "osnet_x0_25_msmt17.onnx")
    monkeypatch.chdir(REPO)  # configs name ../shared/models relative to the repository root
    market_layout(tmp_path / "market1501")
    folder = tmp_path / "mine"
    for split, source in (("train", "bounding_box_train"), ("query", "query"), ("gallery", "bounding_box_test")):
        (folder / split).mkdir(parents=True)
        for image in (tmp_path / "market1501" / source).iterdir():
            (folder / split / image.name).symlink_to(image)
    commands = readme_commands()
    assert [c[:2] for c in commands[:7]] == [["streamlabel", "train"], ["streamlabel", "train"],
                                             ["streamlabel", "extract"], ["streamlabel", "labels"],
                                             ["streamlabel", "extract"], ["streamlabel", "extract"],
                                             ["streamlabel", "evaluate"]]
    for args in commands:
        config = args[args.index("--config") + 1] if "--config" in args else None
        if config in ("configs/duke_to_market.yaml", "configs/market_to_msmt17.yaml"):
            overrides = [a for a in args[4:] if "=" in a and not a.startswith("model.pretrained")]
            load_run_config(REPO / config, overrides)  # resolves and passes every config check
            continue
        assert main(_in(tmp_path, args)) == 0, " ".join(args)
    smoke = load_checkpoint(tmp_path / "runs" / "market_smoke" / "checkpoints", fingerprint=None)
    assert smoke["policy"]["bank"]["features"].shape[0] == 16 * 6  # smoke: the first 16 of the 20 train ids
    for picture in ("clusters.png", "retrieval.png"):
        with Image.open(tmp_path / picture) as img:
            assert img.size[0] > 300 and img.size[1] > 150
