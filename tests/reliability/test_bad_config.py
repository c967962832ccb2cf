"""Bad config files: every one is refused when loaded, by a message naming the file, the key and what was expected."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamlabel.config.errors import ConfigError
from streamlabel.launch import cli
from streamlabel.launch.run_config import load_run_config as load_config
from tests.reliability.reliability_inputs import DEMO, tiny_train_overrides

# (case, YAML text, regex the message must match; FILE stands for the config's path)
BAD_FILES = [
    ("unknown top-level key", "trian:\n  iterations: 5\n", r"unknown key 'trian' in FILE; did you mean 'train'"),
    ("unknown nested key", "train:\n  iteratons: 5\n", r"unknown key 'train.iteratons' in FILE; did you mean "
     r"'train.iterations'"),
    ("unknown policy parameter", "policy:\n  name: hcd\n  simga: 0.2\n", r"unknown key 'policy.simga' in FILE "
     r"\(parameters of policy 'hcd'\); did you mean 'policy.sigma'"),
    ("unknown policy", "policy:\n  name: hcdd\n", r"unknown policy 'hcdd' for 'policy.name' in FILE; did you "
     r"mean 'hcd'"),
    ("string for an integer", "train:\n  iterations: many\n", r"'train.iterations' in FILE must be an integer, "
     r"got str 'many'"),
    ("float for an integer", "train:\n  iterations: 10.5\n", r"'train.iterations' in FILE must be an integer, "
     r"got float"),
    ("string for a policy integer", "policy:\n  name: hcd\n  k: '30'\n", r"'policy.k' in FILE: parameter 'k' of "
     r"policy 'hcd' must be an integer, got str '30'"),
    ("float for a policy integer", "policy:\n  name: hcd\n  k: 7.5\n", r"'policy.k' in FILE: parameter 'k' .* "
     r"must be an integer, got float 7.5"),
    ("bool for a number", "optim:\n  lr: yes\n", r"'optim.lr' in FILE must be a number, got bool"),
    ("NaN learning rate", "optim:\n  lr: .nan\n", r"'optim.lr' in FILE must be a finite number"),
    ("negative learning rate", "optim:\n  lr: -3.5e-4\n", r"'optim.lr' in FILE must be > 0.0; got -0.00035"),
    ("negative source momentum", "loss:\n  source_momentum: -0.2\n", r"'loss.source_momentum' in FILE must be in "
     r"\[0.0, 1.0\]; got -0.2"),
    ("negative bank momentum", "policy:\n  name: hcd\n  momentum: -0.2\n", r"'policy.momentum' \(policy 'hcd'\) in "
     r"FILE: momentum must be in \[0, 1\), got -0.2"),
    ("temperature 0", "loss:\n  temperature: 0\n", r"'loss.temperature' in FILE must be > 0.0; got 0.0"),
    ("sigma 0", "policy:\n  name: hcd\n  dynamics: paper\n  sigma: 0\n",
     r"'policy.sigma' \(policy 'hcd'\) in FILE: sigma must be in \(0, 1\), got 0"),
    ("k = 0", "policy:\n  name: hcd\n  k: 0\n", r"'policy.k' \(policy 'hcd'\) in FILE: k must be >= 1, got 0"),
    ("link_k above k", "policy:\n  name: hcd\n  k: 5\n  link_k: 9\n", r"'policy.link_k' .* in FILE: link_k must be "
     r">= 1 and <= 5, got 9"),
    ("alpha 1", "policy:\n  name: hcd\n  alpha_split: 1.0\n", r"'policy.alpha_split' .* alpha_split must be in "
     r"\[0, 1\)"),
    ("unknown choice", "data:\n  on_bad_image: ignore\n", r"'data.on_bad_image' in FILE must be one of skip, raise; "
     r"got 'ignore'"),
    ("zero iterations", "train:\n  iterations: 0\n", r"'train.iterations' in FILE must be in \[1, 100000000\]; got 0"),
    ("batch not P x K", "train:\n  target_batch: 30\n", r"'train.target_batch' \(30, from FILE\) must be a multiple "
     r"of data.num_instances \(4\)"),
    ("mapping expected", "train: 5\n", r"'train' in FILE must be a mapping, got int 5"),
    ("duplicate key", "train:\n  iterations: 5\n  iterations: 6\n", r"FILE is not valid YAML: .*found duplicate "
     r"key 'iterations'"),
    ("YAML syntax", "train: [1, 2\n", r"config file FILE is not valid YAML: .*expected ',' or ']'"),
    ("tab indentation", "train:\n\titerations: 5\n", r"FILE is not valid YAML: .*found character '\\t'"),
    ("list at top level", "- train\n- policy\n", r"config file FILE must hold a mapping of keys .* got list"),
    ("_base_ cycle", "_base_: bad.yaml\n", r"_base_ cycle: FILE -> FILE"),
    ("missing _base_", "_base_: nowhere.yaml\n", r"config file .*nowhere.yaml does not exist \(expected a YAML file\)"),
]


@pytest.mark.parametrize(("case", "text", "pattern"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_config_file_names_file_key_and_expectation(tmp_path: Path, case: str, text: str, pattern: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert re.search(pattern.replace("FILE", re.escape(str(path))), message, re.S), f"{case}: {message}"


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*absent.yaml does not exist \(expected a YAML file\)"):
        load_config(tmp_path / "absent.yaml")


def test_k_larger_than_the_target_is_refused_before_training(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """k >= N is only known once the target is read: refused by setup, before any image is trained on."""
    overrides = [*tiny_train_overrides(tmp_path / "run", tmp_path / "data"), "policy.k=100"]
    code = cli.main(["train", "--config", str(DEMO), "--cpu", "--quiet", *overrides])
    err = capsys.readouterr().err
    assert code == 2
    assert re.search(r"streamlabel train: error: 'policy' \(name 'hcd', (\d+) target samples\): parameter 'k' of "
                     r"policy 'hcd' is 100 but there are only \1 samples: k .* must be < N = \1", err), err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_command_line_reports_a_config_error_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("_base_: " + str(DEMO) + "\nloss:\n  temperature: 0\n", encoding="utf-8")
    assert cli.main(["train", "--config", str(path), "--cpu", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamlabel train: error: 'loss.temperature' in {path}") and "Traceback" not in err
