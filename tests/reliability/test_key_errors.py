"""No user-reachable error prints a bare ``KeyError: 'x'`` or ``streamlabel X: error: 'x'``: a missing entry
says what is missing and where (the checkpoint, its config, the lookup), and the CLI never shows a plain
KeyError as a quoted key.

Each case asserts exit 2, one error line naming the cause, no traceback and no file changed outside the
command's named outputs. The mutant each test kills is named in its docstring.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamlabel.config.fingerprint import config_fingerprint
from streamlabel.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from streamlabel.launch import cli, errors
from streamlabel.launch.run_config import load_run_config
from streamlabel.models import build_model
from tests.reliability.fs_snapshot import tree_digest
from tests.reliability.refusal_checks import changed, refused
from tests.reliability.reliability_inputs import DEMO, tiny_train_overrides

BARE_KEY = re.compile(r"error: (KeyError: )?'?[\w.]+'?\s*$")


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_resume_from_a_checkpoint_without_an_entry_names_the_entry(work: Path, capsys: pytest.CaptureFixture) -> None:
    """A checkpoint of this config (right fingerprint) without its 'phase' entry. Mutant: ``load_checkpoint``
    returns a plain dict (``CheckpointState`` dropped): ``streamlabel train: error: 'phase'``."""
    overrides = tiny_train_overrides(work / "run", work / "data")
    cfg = load_run_config(DEMO, overrides)
    ckpt = save_checkpoint(work / "run" / "checkpoints" / "adapt_epoch0000.pt", {"model": {}, "config": cfg},
                           fingerprint=config_fingerprint(cfg))
    neighbour = work / "mine"
    neighbour.mkdir()
    (neighbour / "notes.txt").write_text("not streamlabel's\n", encoding="utf-8")
    before_ckpts, before_mine = tree_digest(ckpt.parent), tree_digest(neighbour)
    code = cli.main(["train", "--quiet", "--resume", *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    line = err.strip().splitlines()[-1]
    assert re.search(r"streamlabel train: error: checkpoint .*adapt_epoch0000.pt has no 'phase' entry \(it has: "
                     r"config, model\); it was not written by this version of streamlabel train, or was edited",
                     line), line
    assert not BARE_KEY.search(line)
    assert changed(before_ckpts, tree_digest(ckpt.parent)) == [] and changed(before_mine, tree_digest(neighbour)) == []


def test_checkpoint_state_is_a_key_error_with_a_message(tmp_path: Path) -> None:
    """Library callers catching KeyError still can; the text names file and entry, unquoted. Mutant: as above."""
    path = save_checkpoint(tmp_path / "c.pt", {"a": 1}, fingerprint="f")
    state = load_checkpoint(path, fingerprint="f")
    with pytest.raises(KeyError) as info:
        state["optimizer"]
    assert isinstance(info.value, CheckpointError)
    assert str(info.value).startswith(f"checkpoint {path} has no 'optimizer' entry (it has: a)")
    # saved again (e.g. a shard rewritten), it still loads with weights_only=True
    again = save_checkpoint(tmp_path / "d.pt", state, fingerprint="f")
    assert load_checkpoint(again, fingerprint="f") == {"a": 1}


def _checkpoint(folder: Path, drop: str) -> Path:
    cfg = load_run_config(None, ["model.name=osnet_x0_25", "data.source=null", "train.pretrain_iterations=0",
                                 f"data.target.root={folder / 'nowhere'}"])
    node = cfg
    *parents, leaf = drop.split(".")
    for part in parents:
        node = node[part]
    del node[leaf]
    return save_checkpoint(folder / "ckpt.pt", {"config": cfg, "model": build_model("osnet_x0_25").state_dict()},
                           fingerprint="x")


@pytest.mark.parametrize(("drop", "named"), [("eval", "eval.split"), ("model.kwargs", "model.kwargs"),
                                             ("data.target.root", "data.target.root"), ("data.target", "data.target"),
                                             ("train", "train.channels_last")])
def test_checkpoint_config_without_a_key(work: Path, capsys: pytest.CaptureFixture, drop: str, named: str) -> None:
    """``evaluate --checkpoint`` whose carried config lacks a section or key. Mutant: no ``_config_gap`` check
    (``'eval'`` from a bare dict lookup deep in the command)."""
    path = _checkpoint(work, drop)
    line = refused(["evaluate", "--checkpoint", str(path)], capsys,
                   rf"ckpt.pt: the config inside the checkpoint has no '{re.escape(named)}' \(written by another "
                   r"version of streamlabel, or edited\)", work)
    assert not BARE_KEY.search(line)


def test_a_plain_key_error_is_never_printed_as_a_bare_key(work: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever KeyError escapes a command, the line says which key was missing and where it was looked up.
    Mutant: cli renders ``err.args[0]`` (as it did): ``streamlabel labels: error: bank``."""
    import numpy as np

    from streamlabel.launch import labels_cmd

    np.savez(work / "f.npz", feats=np.random.default_rng(0).random((20, 8), dtype=np.float32) + 0.1)

    def lookup(*_args, **_kwargs):
        return {}["bank"]

    monkeypatch.setattr(labels_cmd, "unit_rows", lookup)
    line = refused(["labels", "--features", "f.npz"], capsys,
                   r"streamlabel labels: error: missing key 'bank' \(looked up by run in "
                   r"streamlabel/launch/labels_cmd.py, line \d+\): an input .* lacks an entry", work)
    assert not BARE_KEY.search(line)


def test_labels_policy_key_error_is_described(work: Path, capsys: pytest.CaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """labels turns a policy's KeyError into a CommandError. Mutant: ``str(err.args[0])`` there (as it was):
    ``streamlabel labels: error: label_bank``."""
    import numpy as np

    from streamlabel.launch import labels_cmd

    np.savez(work / "f.npz", feats=np.random.default_rng(0).random((20, 8), dtype=np.float32) + 0.1)

    def build_policy(*_args, **_kwargs):
        raise KeyError("label_bank")

    monkeypatch.setattr(labels_cmd, "build_policy", build_policy)
    line = refused(["labels", "--features", "f.npz"], capsys, r"error: missing key 'label_bank' \(looked up by ",
                   work)
    assert not BARE_KEY.search(line)


def test_train_entry_point_renders_key_errors_too(work: Path, capsys: pytest.CaptureFixture,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m streamlabel.launch.train`` (what accelerate launch runs) prints the same line. Mutant:
    ``print(f"... {err}")`` there (as it was): ``streamlabel train: error: 'rng'``."""
    from streamlabel.launch import train

    def run(_args):
        return {"phase": 0}["rng"]

    monkeypatch.setattr(train, "run", run)
    assert train.main(["--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert re.search(r"streamlabel train: error: missing key 'rng' \(looked up by \w+ in .*\)", err), err
    assert not BARE_KEY.search(err.strip())


def test_messages_of_key_errors_that_have_one_are_kept() -> None:
    """An UnknownKeyError (registry, config) and a KeyError carrying a sentence print that text as it is."""
    from streamlabel.keys import UnknownKeyError

    assert errors.error_message(UnknownKeyError("unknown policy 'hdc'; did you mean 'hcd'?")) == \
        "unknown policy 'hdc'; did you mean 'hcd'?"
    assert errors.error_message(KeyError("no OSNet module for ONNX scope 'x'")) == "no OSNet module for ONNX scope 'x'"
