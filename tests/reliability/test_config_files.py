"""Config files that are not a few KiB of YAML: FIFOs, devices, sockets, huge files, alias bombs, deep
nesting; and ``imports``, which runs code, only after everything else in the config is checked.

Each case asserts the exit status (2), that the one stderr line names the cause and the file, that no
traceback is printed, and that no file in the working folder changed. The mutant each test kills is named
in its docstring.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from streamlabel.config.loading import MAX_CONFIG_BYTES, MAX_YAML_NODES
from streamlabel.launch.run_config import load_run_config
from tests.reliability.fs_snapshot import tree_digest
from tests.reliability.refusal_checks import changed, refused
from tests.reliability.reliability_inputs import REPO


def _refused(args: list[str], folder: Path, capsys: pytest.CaptureFixture, pattern: str) -> str:
    return refused(args, capsys, pattern, folder)


def _bomb(levels: int = 9, width: int = 9) -> str:
    """Billion laughs: each anchor a list of ``width`` aliases of the previous one (width**levels values)."""
    lines = ["lol0: &l0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels + 1):
        lines.append(f"lol{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_fifo_config_is_refused_without_hanging(work: Path) -> None:
    """A FIFO as --config (and as a _base_) ends at once with an error. Mutant: ``_read_yaml`` opens the path
    before checking its kind (``path.read_text``): the read blocks forever and the subprocess times out."""
    fifo = work / "pipe.yaml"
    os.mkfifo(fifo)
    including = work / "child.yaml"
    including.write_text("_base_: pipe.yaml\n", encoding="utf-8")
    before = tree_digest(work)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    for config in (fifo, including):
        try:
            done = subprocess.run([sys.executable, "-m", "streamlabel", "train", "--config", str(config)], cwd=work,
                                  env=env, capture_output=True, text=True, timeout=120)
        except subprocess.TimeoutExpired:
            pytest.fail(f"streamlabel train --config {config.name} hung on a FIFO")
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        assert "config file pipe.yaml is a FIFO (named pipe), not a regular file" in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert changed(before, tree_digest(work)) == []


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/null", "/dev/urandom"])
def test_device_config_is_refused(work: Path, capsys: pytest.CaptureFixture, device: str) -> None:
    """/dev/zero would be read forever (MemoryError), /dev/null read as an empty file. Mutant: no kind check
    (``stat.S_ISREG``) before reading."""
    if not Path(device).exists():
        pytest.skip(f"no {device}")
    _refused(["train", "--config", device], work, capsys,
             rf"config file {device} is a character device, not a regular file")


def test_socket_config_is_refused(work: Path, capsys: pytest.CaptureFixture) -> None:
    """A UNIX socket cannot be opened for reading at all. Mutant: no kind check."""
    path = work / "s.yaml"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(str(path))
        _refused(["train", "--config", str(path)], work, capsys, r"config file .*s.yaml is a socket, not a regular")
    finally:
        server.close()


def test_huge_config_is_refused_before_parsing(work: Path, capsys: pytest.CaptureFixture) -> None:
    """A config over 1 MiB (a log or a dataset named by mistake). Mutant: no size cap (the whole file is read
    and parsed: here a valid comment, so the command would go on to train)."""
    path = work / "huge.yaml"
    path.write_text("# " + "x" * (MAX_CONFIG_BYTES + 10) + "\ntrain: {iterations: 1}\n", encoding="utf-8")
    _refused(["train", "--config", str(path)], work, capsys,
             r"config file .*huge.yaml is larger than 1 MiB \([\d,]+ bytes\); a config is a few KiB")


def test_size_cap_reads_at_most_cap_plus_one_bytes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mutant: the file is read whole before its size is compared (``handle.read()``)."""
    from streamlabel.config import loading

    path = tmp_path / "big.yaml"
    path.write_bytes(b"#" * (3 * MAX_CONFIG_BYTES))
    sizes: list[int] = []
    real_fdopen = os.fdopen

    def counting_fdopen(fd, *args, **kwargs):
        handle = real_fdopen(fd, *args, **kwargs)
        real_read = handle.read

        class Counted:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                handle.close()

            def fileno(self):
                return handle.fileno()

            def read(self, size=-1):
                data = real_read(size)
                sizes.append(len(data))
                return data

        return Counted()

    monkeypatch.setattr(loading.os, "fdopen", counting_fdopen)
    with pytest.raises(loading.ConfigError, match="larger than 1 MiB"):
        loading.read_text_capped(path, "big.yaml")
    assert sum(sizes) <= MAX_CONFIG_BYTES + 1


def test_alias_bomb_config_is_refused(work: Path, capsys: pytest.CaptureFixture) -> None:
    """Billion laughs (9 levels of 9 aliases: 9**9 = 387M values from 10 lines). Mutant: no expansion count in
    ``_Loader`` (the checker then walks every expanded value: minutes of CPU and memory, or an unknown-key
    error long after)."""
    path = work / "bomb.yaml"
    path.write_text(_bomb(), encoding="utf-8")
    _refused(["train", "--config", str(path)], work, capsys,
             rf"config file .*bomb.yaml is refused: its anchors and aliases .* expand to more than "
             rf"{MAX_YAML_NODES:,} values \(an alias bomb")


def test_alias_bomb_in_a_base_file_and_on_the_command_line(work: Path, capsys: pytest.CaptureFixture) -> None:
    """The same check covers every YAML the loader reads: a _base_ file and a key=value override (labels
    params are read by the same parser). Mutant: the check only in ``_read_yaml``."""
    (work / "bomb.yaml").write_text(_bomb(), encoding="utf-8")
    (work / "top.yaml").write_text("_base_: bomb.yaml\n", encoding="utf-8")
    _refused(["train", "--config", "top.yaml"], work, capsys, r"config file bomb.yaml is refused: .*alias bomb")
    value = "[&a [1,1,1,1,1,1,1,1,1,1], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a], &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b], " \
            "&d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c], &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]]"
    _refused(["train", f"train.milestones={value}"], work, capsys,
             r"override 'train.milestones' on the command line is refused: .*alias bomb")


def test_modest_aliases_still_load(tmp_path: Path) -> None:
    """Aliases are not refused as such: a config that reuses a mapping with ``<<: *anchor`` loads."""
    path = tmp_path / "ok.yaml"
    path.write_text("optim: &o\n  milestones: &m [10, 20]\ntrain:\n  iterations: 30\n", encoding="utf-8")
    cfg = load_run_config(path, ["optim.milestones=[&a 5, *a]"])
    assert cfg["optim"]["milestones"] == [5, 5] and cfg["train"]["iterations"] == 30


def test_recursive_alias_is_refused(work: Path, capsys: pytest.CaptureFixture) -> None:
    """An alias inside its own anchor makes a cyclic structure. Mutant: no cycle check (the checker recurses
    until RecursionError: 'configuration is nested too deeply', which names neither the cause nor the file)."""
    path = work / "loop.yaml"
    path.write_text("train: &t\n  inner: *t\n", encoding="utf-8")
    _refused(["train", "--config", str(path)], work, capsys,
             r"config file .*loop.yaml is refused: an alias refers to the node that contains it")


def test_deeply_nested_yaml_is_refused(work: Path, capsys: pytest.CaptureFixture) -> None:
    """5000 nested lists overflow PyYAML's recursive composer. Mutant: RecursionError not caught around
    ``yaml.load`` (a traceback)."""
    path = work / "deep.yaml"
    path.write_text("train: " + "[" * 5000 + "\n", encoding="utf-8")
    _refused(["train", "--config", str(path)], work, capsys, r"config file .*deep.yaml is nested too deeply")


def _plugin(folder: Path, marker: Path, model: str) -> Path:
    path = folder / "plugin.py"
    path.write_text(
        "from pathlib import Path\n"
        "from torch import nn\n"
        "from streamlabel.models import register_model, osnet\n"
        f"Path({str(marker)!r}).write_text('plugin code ran')\n"
        f"register_model({model!r})(lambda **kw: osnet(width=0.25, **kw))\n",
        encoding="utf-8",
    )
    return path


def test_imports_run_only_after_the_rest_of_the_config_is_checked(
    work: Path, capsys: pytest.CaptureFixture
) -> None:
    """A config with a bad value and an ``imports`` entry is refused before the plugin's code runs. Mutant:
    ``import_plugins`` called before ``Checker.node`` (as it was): the plugin writes its marker file."""
    outside = work.parent / f"{work.name}_marker.txt"
    plugin = _plugin(work, outside, f"net_{work.name[-8:]}")
    config = work / "bad.yaml"
    config.write_text(f"imports: [{plugin}]\ntrain:\n  iterations: 0\n", encoding="utf-8")
    _refused(["train", "--config", str(config)], work, capsys, r"'train.iterations' in .*bad.yaml must be in \[1, ")
    assert not outside.exists(), "the plugin ran although the config was refused"
    # an unknown key anywhere, or a batch that is not P x K, is refused before the import too
    config.write_text(f"imports: [{plugin}]\ntrian: {{}}\n", encoding="utf-8")
    _refused(["train", "--config", str(config)], work, capsys, r"unknown key 'trian'")
    config.write_text(f"imports: [{plugin}]\ntrain:\n  target_batch: 30\n", encoding="utf-8")
    _refused(["train", "--config", str(config)], work, capsys, r"must be a multiple of data.num_instances")
    assert not outside.exists()


def test_plugin_names_are_checked_after_the_import(tmp_path: Path) -> None:
    """What a plugin registers (here a model) is valid in the same config: the name checks run after the
    import. Mutant: model.name checked in the first pass (unknown model)."""
    marker = tmp_path / "ran.txt"
    name = f"net_{tmp_path.name[-8:]}"
    plugin = _plugin(tmp_path, marker, name)
    cfg = load_run_config(None, [f"imports=[{plugin}]", f"model.name={name}", "model.kwargs.feat_dim=64"])
    assert marker.exists() and cfg["model"]["name"] == name


def test_docs_say_imports_run_code() -> None:
    """docs/reliability.md and the config docs warn that ``imports`` runs code."""
    for doc in ("docs/reliability.md", "docs/custom_policy.md", "configs/base.yaml"):
        text = " ".join((REPO / doc).read_text(encoding="utf-8").split())
        assert "`imports` runs code" in text or "imports runs code" in text, doc
