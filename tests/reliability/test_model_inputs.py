"""Bad ``model.kwargs``, ``model.pretrained`` files of the wrong kind, and state dicts whose shapes do not fit.

Every case runs ``streamlabel train`` (or ``evaluate --checkpoint``) in-process in an empty folder and asserts
exit status 2, one error line naming the model / file and the cause, no traceback, and an unchanged folder
(nothing is generated, no run folder is made: the model is built before any dataset). The mutant each test
kills is named in its docstring.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlabel.config.errors import ConfigError
from streamlabel.engine.checkpoint import save_checkpoint
from streamlabel.engine.setup import build_network
from streamlabel.launch.run_config import load_run_config
from streamlabel.models import build_model, register_model
from tests.reliability.fs_snapshot import tree_digest
from tests.reliability.refusal_checks import refused
from tests.reliability.reliability_inputs import DEMO, REPO

SMALL = ["output_dir=run", "data.num_workers=0", "log.tensorboard=false"]
EXPECTED = r"expected a PyTorch state dict saved with torch.save"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(*overrides: str, model: str = "osnet_x0_25") -> list[str]:
    return ["train", "--config", str(DEMO), "--cpu", "--quiet", *SMALL, f"model.name={model}", *overrides]


# --------------------------------------------------------------------------- model.kwargs
@pytest.mark.parametrize(("override", "pattern"), [
    ("model.kwargs.feat_dimm=64", r"'model.kwargs.feat_dimm' in command line: model 'osnet_x0_25' takes no parameter "
                                  r"'feat_dimm'; did you mean 'feat_dim'\? \(its parameters: blocks, feat_dim"),
    ("model.kwargs.feat_dim=abc", r"'model.kwargs.feat_dim' in command line: parameter 'feat_dim' of model "
                                  r"'osnet_x0_25' must be an integer \(like its default 512\), got str 'abc'"),
    ("model.kwargs.fold_bn=3", r"'model.kwargs.fold_bn' .*parameter 'fold_bn' of model 'osnet_x0_25' must be true "
                               r"or false"),
    ("model.kwargs.head=pyr", r"'model.kwargs.head' in command line: model 'osnet_x0_25' refuses model.kwargs "
                              r"\{'head': 'pyr'\}: ValueError: unknown head 'pyr'"),
    ("model.kwargs.feat_dim=-5", r"'model.kwargs.feat_dim' in command line: model 'osnet_x0_25' refuses "
                                 r"model.kwargs \{'feat_dim': -5\}: RuntimeError: .*negative dimension -5"),
    ("model.name=resnet51", r"'model.name' in command line: unknown model 'resnet51'; did you mean 'resnet50'\?"),
])
def test_bad_model_kwargs_are_refused_when_the_config_is_loaded(
    work: Path, capsys: pytest.CaptureFixture, override: str, pattern: str
) -> None:
    """Mutant: no ``model_error`` in ``plugin_checks`` (kwargs reach the constructor only after the config is
    accepted: a TypeError naming neither the key nor the file, or a torch RuntimeError traceback)."""
    name, _, value = override.partition("=")
    args = _train(model=value) if name == "model.name" else _train(override)
    refused(args, capsys, pattern, work)


def test_absurd_model_size_is_an_up_front_memory_error(work: Path, capsys: pytest.CaptureFixture) -> None:
    """feat_dim = 10**9 would allocate terabytes. The model is sized on the meta device and compared with this
    machine's memory. Mutant: no memory estimate in ``model_error`` (the real build allocates until killed)."""
    refused(_train("model.kwargs.feat_dim=1000000000"), capsys,
            r"'model.kwargs.feat_dim' in command line: model 'osnet_x0_25' with model.kwargs \{'feat_dim': "
            r"1000000000\} \([\d,]+ parameters: [\d.]+ [GT]iB of fp32 weights.*\) needs about [\d.]+ TiB, more than "
            r"the [\d.]+ \w+ of memory available here", work)


def test_a_constructor_refusal_of_a_plugin_model_names_the_model(tmp_path: Path) -> None:
    """A plugin model is not dry-run (its builder may read files); what it raises when built is still a
    ConfigError naming the model and its kwargs. Mutant: ``build_network`` calls ``build_model`` unguarded."""
    name = f"picky_{tmp_path.name[-8:]}"

    def picky(**kwargs):
        if kwargs:
            raise TypeError(f"picky() got an unexpected keyword argument {next(iter(kwargs))!r}")
        return build_model("osnet_x0_25")

    register_model(name)(picky)
    cfg = load_run_config(None, [f"model.name={name}", "model.kwargs.depth=3"])
    pattern = rf"model '{name}' refuses model.kwargs \{{'depth': 3\}}: TypeError: .*'depth'"
    with pytest.raises(ConfigError, match=pattern):
        build_network(cfg)


# --------------------------------------------------------------------------- model.pretrained of the wrong kind
class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _wrong_kinds(folder: Path, marker: Path) -> dict[str, tuple[Path, str]]:
    text = folder / "weights.txt.pth"
    text.write_text("conv1.weight: [0.1, 0.2]\n", encoding="utf-8")
    npz = folder / "weights.npz"
    np.savez(npz, conv1=np.zeros((3, 3), np.float32))
    pickled = folder / "evil.pth"
    torch.save({"state_dict": {"conv1.weight": _RunsCode(str(marker))}}, pickled)
    pickled4 = folder / "evil4.pth"
    import pickle

    pickled4.write_bytes(pickle.dumps({"conv1.weight": _RunsCode(str(marker))}, protocol=4))
    empty = folder / "empty.pth"
    empty.write_bytes(b"")
    sub = folder / "weights_dir"
    sub.mkdir()
    a_list = folder / "list.pth"
    torch.save([torch.zeros(3)], a_list)
    foreign = folder / "foreign.pth"
    torch.save({"encoder.layer.0.attention.weight": torch.zeros(4, 4)}, foreign)
    return {
        "text": (text, rf"weight file {re.escape(str(text))} is not a PyTorch weight file: it looks like a text file; "
                       rf"{EXPECTED}"),
        "npz": (npz, rf"weight file .*weights.npz is not a PyTorch weight file: it looks like a zip archive not "
                     rf"written by torch.save \(an .npz\?\); {EXPECTED}"),
        "pickle": (pickled, r"weight file .*evil.pth was refused as unsafe: it calls posix.system .*it was not loaded "
                            r"\(nothing in it ran\)"),
        "pickle protocol 4": (pickled4, r"weight file .*evil4.pth was refused as unsafe: its pickle uses the "
                                        r"instruction FRAME .*nothing in it ran"),
        "empty": (empty, rf"weight file .*empty.pth is empty \(0 bytes\); {EXPECTED}"),
        "folder": (sub, rf"weight file .*weights_dir is a folder; {EXPECTED}"),
        "list": (a_list, rf"weight file .*list.pth holds a list, not a state dict .*; {EXPECTED}"),
        "foreign state dict": (foreign, r"weight file .*foreign.pth has no tensor that fits model OSNet: \d+ model "
                                        r"tensor\(s\) missing from the file: conv1.conv.weight, .* and \d+ more; "
                                        r"1 file tensor\(s\) the model does not have: "
                                        r"encoder.layer.0.attention.weight"),
    }


@pytest.mark.parametrize("kind", ["text", "npz", "pickle", "pickle protocol 4", "empty", "folder", "list",
                                  "foreign state dict"])
def test_pretrained_file_of_the_wrong_kind(work: Path, capsys: pytest.CaptureFixture, kind: str) -> None:
    """Mutants: ``load_pretrained`` calls ``torch.load`` directly (text: UnpicklingError traceback, npz:
    RuntimeError traceback, empty: EOFError traceback, folder: 'not found', pickle: 'Weights only load failed'
    in a traceback, list: TypeError traceback, foreign: trains from scratch silently)."""
    marker = work.parent / f"{work.name}_ran"
    path, pattern = _wrong_kinds(work, marker)[kind]
    refused(_train(f"model.pretrained={path}"), capsys, pattern, work)
    assert not marker.exists(), "code in the pickle ran"


def test_pretrained_fifo_is_refused_without_reading(tmp_path: Path) -> None:
    """Mutant: no kind check in ``read_weight_file`` (``torch.load`` opens the FIFO and waits for a writer for
    ever: the subprocess times out, so a regression fails instead of hanging the suite)."""
    fifo = tmp_path / "pipe.pth"
    os.mkfifo(fifo)
    before = tree_digest(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    try:
        done = subprocess.run([sys.executable, "-m", "streamlabel", *_train(f"model.pretrained={fifo}")],
                              cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("streamlabel train hung on a FIFO as model.pretrained")
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert re.search(rf"weight file .*pipe.pth is not a regular file \(a FIFO, device or socket; it was not "
                     rf"read\); {EXPECTED}", done.stderr), done.stderr
    assert tree_digest(tmp_path) == before


# --------------------------------------------------------------------------- shapes that do not fit
def test_pretrained_with_other_shapes_names_parameters_and_both_shapes(work: Path, capsys: pytest.CaptureFixture
                                                                       ) -> None:
    """A file written for feat_dim 64 into the default 512. Mutant: ``strict_shapes`` off in ``build_network``
    (the mismatched tensors are silently left at their random init and training goes on)."""
    path = work / "feat64.pth"
    torch.save(build_model("osnet_x0_25", feat_dim=64).state_dict(), path)
    refused(_train(f"model.pretrained={path}"), capsys,
            r"weight file .*feat64.pth does not fit model OSNet: 6 tensor\(s\) of another shape: fc.0.weight: file "
            r"\(64, 128\) vs model \(512, 128\), fc.0.bias: file \(64,\) vs model \(512,\), ", work)


def test_many_mismatches_are_listed_as_a_handful_and_a_count(work: Path, capsys: pytest.CaptureFixture) -> None:
    """OSNet x0.5 weights into x0.25: 5 named, then 'and N more'. Mutant: every mismatch listed (a line of
    hundreds of entries) or only a count."""
    path = work / "wide.pth"
    torch.save(build_model("osnet_x0_5").state_dict(), path)
    line = refused(_train(f"model.pretrained={path}"), capsys,
                   r"does not fit model OSNet: (\d+) tensor\(s\) of another shape: conv1.conv.weight: file "
                   r"\(32, 3, 7, 7\) vs model \(16, 3, 7, 7\), .* and \d+ more", work)
    assert line.count(" vs model ") == 5


def _checkpoint_with_model(folder: Path, weights: dict) -> Path:
    cfg = load_run_config(None, ["model.name=osnet_x0_25", "data.source=null", "train.pretrain_iterations=0",
                                 f"data.target.root={folder / 'nowhere'}"])
    return save_checkpoint(folder / "ckpt.pt", {"config": cfg, "model": weights}, fingerprint="x")


def test_checkpoint_model_with_other_shapes(work: Path, capsys: pytest.CaptureFixture) -> None:
    """``evaluate --checkpoint`` whose saved model has other shapes than its config builds. Mutant: plain
    ``model.load_state_dict`` in evaluate_cmd (torch's RuntimeError escapes as a traceback)."""
    path = _checkpoint_with_model(work, build_model("osnet_x0_25", feat_dim=64).state_dict())
    refused(["evaluate", "--checkpoint", str(path)], capsys,
            r"the model of checkpoint .*ckpt.pt does not fit model OSNet: 6 tensor\(s\) of another shape: "
            r"fc.0.weight: checkpoint \(64, 128\) vs model \(512, 128\)", work)


def test_checkpoint_model_with_missing_and_extra_tensors(work: Path, capsys: pytest.CaptureFixture) -> None:
    """Missing and unexpected parameters are named too. Mutant: as above."""
    weights = build_model("osnet_x0_25").state_dict()
    weights.pop("conv5.conv.weight")
    weights["head.extra"] = torch.zeros(2)
    path = _checkpoint_with_model(work, weights)
    refused(["evaluate", "--checkpoint", str(path)], capsys,
            r"does not fit model OSNet: 1 model tensor\(s\) missing from the checkpoint: conv5.conv.weight; 1 "
            r"checkpoint tensor\(s\) the model does not have: head.extra", work)
