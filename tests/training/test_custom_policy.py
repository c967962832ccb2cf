"""A policy written outside the package (examples/knn_components_policy.py) trains under ``streamlabel train``
once a config names its file under ``imports``; broken imports and bank-less policies fail before any work."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamlabel.config.errors import ConfigError
from streamlabel.launch import cli
from streamlabel.launch.run_config import load_run_config as load_config
from streamlabel.methods import base as policy_base
from tests.training.tiny_runs import REPO, tiny_overrides

EXAMPLE = REPO / "examples" / "knn_components_policy.py"


@pytest.fixture(autouse=True)
def private_registry(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The policies these tests import stay out of the other tests: registry and plugin modules restored."""
    monkeypatch.setattr(policy_base.POLICIES, "_entries", dict(policy_base.POLICIES._entries))
    before = set(sys.modules)
    yield
    for name in [m for m in sys.modules if m.startswith("streamlabel_plugin_") and m not in before]:
        del sys.modules[name]


def test_user_policy_trains_under_streamlabel_train(tmp_path: Path, synthetic_root: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "--cpu", "--quiet", "--json", *tiny_overrides(tmp_path / "run", synthetic_root),
            f"imports=[{EXAMPLE}]", "policy={name: knn_components, k: 5, threshold: 0.5}"]
    assert cli.main(argv) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(result["history"]) == 3 and result["skipped_steps"] == 0  # first labels + 2 epochs
    saved = (tmp_path / "run" / "config.yaml").read_text()
    assert "knn_components" in saved and "threshold: 0.5" in saved


def test_imports_errors_name_the_entry(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot import 'nope\.py': FileNotFoundError: nope\.py is not a file"):
        load_config(None, ["imports=[nope.py]"])
    bad = tmp_path / "bad_plugin.py"
    bad.write_text("raise RuntimeError('broken plugin')\n")
    with pytest.raises(ConfigError, match="cannot import .*bad_plugin.py.*RuntimeError: broken plugin"):
        load_config(None, [f"imports=[{bad}]"])
    with pytest.raises(ConfigError, match="must be a list of module names"):
        load_config(None, ["imports=5"])


def test_a_policy_without_a_bank_is_refused_before_training(tmp_path: Path, synthetic_root: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "bankless.py"
    plugin.write_text(
        "import torch\n"
        "from streamlabel.methods import BankUpdatePolicy, register_policy\n"
        "@register_policy('bankless_test')\n"
        "class Bankless(BankUpdatePolicy):\n"
        "    def initialize(self, features, cameras=None): pass\n"
        "    def step(self, indices, features, cameras=None): pass\n"
        "    def labels(self, level=-1): return torch.zeros(self.num_samples, dtype=torch.long)\n"
        "    def state_dict(self): return {}\n"
        "    def load_state_dict(self, state): pass\n")
    argv = ["train", "--cpu", "--quiet", *tiny_overrides(tmp_path / "run", synthetic_root),
            f"imports=[{plugin}]", "policy={name: bankless_test}"]
    assert cli.main(argv) == 2
    assert "keeps no feature bank in self.bank" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoints").exists()
