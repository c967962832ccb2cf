"""The cases of the generated adversarial suite (issue 28), built from tables: each command's input slots x
each kind of bad file, each output slot x each kind of bad destination, config overrides x the commands that
read a config, and the special inputs (NaN features, foreign checkpoints, a real Market-1501 folder as the
synthetic root, Ctrl-C, a second run into a locked folder ...).

A :class:`Case` is one command line run in a fresh working folder that its ``setup`` fills; the test
(``test_generated_adversarial.py``) asserts four things of every case: the exit code, a stderr line that
names the cause (``message``, a regular expression), no ``Traceback`` anywhere, and that no file outside
``outputs`` changed (``keep`` must not change even inside ``outputs``). Paths in argv are relative to the
working folder. ``xfail`` holds the short description of a bug that still breaks the case.
"""

from __future__ import annotations

import fnmatch
import io
import json
import os
import pickle
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tests.reliability.fs_snapshot import FOLDER
from tests.reliability.reliability_inputs import image_bytes, market_tree

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "demo.yaml"
COMMANDS = ("train", "labels", "evaluate", "compare", "synth", "resume", "extract")

Setup = Callable[[Path], object]


@dataclass(frozen=True)
class Case:
    name: str
    command: str  # one of COMMANDS ("resume" is `train --resume`)
    argv: tuple[str, ...]
    code: int | tuple[int, ...]  # the exit status, or the statuses that are all right
    message: str = ""  # regular expression one stderr line must match when the exit status is not 0
    setup: tuple[Setup, ...] = ()
    outputs: tuple[str, ...] = ()  # paths (and everything under them) the command may create or change
    keep: tuple[str, ...] = ()  # paths (or globs) that must not change, even inside outputs
    warns: bool = False  # the message is required even when the command succeeds (a warning)
    trains: bool = False  # may reach the training loop (tiny configs only); else a guard stops it there
    nonroot: bool = False  # needs file modes to bind: runs without root's DAC capabilities when run as root
    chmod: tuple[tuple[str, int], ...] = ()  # applied after setup (and after the ownership change)
    subprocess: bool = False  # run `python -m streamlabel` (signals) instead of cli.main in-process
    interrupt_when: str = ""  # subprocess: send SIGINT to its process group once this path exists
    holder: tuple[str, ...] = ()  # a paused `train` (kill_target.py argv) holding the run folder meanwhile
    timeout: float = 60.0
    xfail: str = ""

    @property
    def codes(self) -> tuple[int, ...]:
        return self.code if isinstance(self.code, tuple) else (self.code,)


# ----------------------------------------------------------------------------- regular expressions

def names(part: str, cause: str) -> str:
    """A line that contains ``part`` (literally) and matches ``cause`` (case-insensitive), in any order."""
    return rf"(?i)(?=.*{re.escape(part)})(?=.*(?:{cause}))"


MISSING = r"(not found|does not exist|no such file)"
EMPTY = r"(empty|zero[- ]byte|0 bytes|no bytes|starts with b'')"
FOLDER_CAUSE = r"(is a (folder|directory)|not a (regular |plain )?file)"
SPECIAL = r"(not a regular file|fifo|named pipe|device|special file|not a (plain )?file)"
UNREADABLE = r"(permission denied|not readable|cannot be read|no permission|unreadable)"
DANGLING = r"(not found|does not exist|no such file|broken|dangling|link)"
TOO_LONG = r"(too long|255)"
UNWRITABLE = r"(not writable|read-only|permission denied|cannot (be )?writ|no permission)"
SAME_AS_INPUT = (r"(is (also )?(the|an|one of the) input|same (file|folder|path) as|is the input|equals|"
                 r"(would )?(overwrite|write over)|input)")
UNSAFE = r"(unsafe|arbitrary|refused|not allowed|weights_only|untrusted|never holds|not loaded|trusted)"
NOT_SCORED = r"(nothing (could be|was|to be)? ?scored|no quer(y|ies)|could not be scored|cannot be scored|not scored)"
LONG = "L" * 300  # one path component of 300 bytes: above the 255 of every common file system
ODD = "odd name ü €$x;'(1)"  # spaces, non-ASCII, shell and YAML punctuation


# ----------------------------------------------------------------------------- input builders

def clusters(num_ids: int = 6, per_id: int = 5, dim: int = 16, seed: int = 0) -> dict[str, np.ndarray]:
    """Well separated identities, cameras alternating 0/1: a clean feature dump."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_ids, dim))
    feats = np.repeat(centres, per_id, axis=0) + 0.05 * rng.normal(size=(num_ids * per_id, dim))
    pids = np.repeat(np.arange(num_ids), per_id)
    camids = np.tile(np.arange(per_id) % 2, num_ids)
    return {"feats": feats.astype(np.float32), "pids": pids, "camids": camids}


def npz_bytes(**arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def dump(path: Path) -> None:
    write(path, npz_bytes(**clusters()))


def query_part() -> dict[str, np.ndarray]:
    data = clusters(per_id=4)
    part = {k: v[::4] for k, v in data.items()}
    part["camids"] = np.zeros_like(part["camids"])
    return part


def gallery_part() -> dict[str, np.ndarray]:
    data = clusters(per_id=4)
    part = {k: v[np.arange(len(v)) % 4 != 0] for k, v in data.items()}
    part["camids"] = np.ones_like(part["camids"])
    return part


def query_file(path: Path) -> None:
    write(path, npz_bytes(**query_part()))


def eval_pair(work: Path) -> None:
    query_file(work / "q.npz")
    write(work / "g.npz", npz_bytes(**gallery_part()))


def split_file(path: Path) -> None:
    write(path, npz_bytes(**clusters()))


SIZES = "num_train_ids: 12, num_test_ids: 6, num_cams: 2, images_per_cam: 2, height: 32, width: 16"


def tiny_yaml(output_dir: str = "run") -> str:
    """A synthetic source -> target run of 2 + 4 iterations at 32x16 (seconds on one CPU thread)."""
    return (
        f"_base_: {json.dumps(str(DEMO))}\n"
        f"output_dir: {json.dumps(output_dir)}\n"
        "cpu_threads: 1\n"
        "data:\n"
        f"  source: {{name: synthetic, root: data/source, kwargs: {{domain: source, {SIZES}}}}}\n"
        f"  target: {{name: synthetic, root: data/target, kwargs: {{domain: target, {SIZES}}}}}\n"
        "  height: 32\n  width: 16\n  num_instances: 2\n  num_workers: 0\n"
        "model: {name: osnet_x0_25}\n"
        "train: {source_batch: 8, target_batch: 8, pretrain_iterations: 2, iterations: 4, iters_per_epoch: 2,\n"
        "        eval_every_epochs: 0}\n"
        "log: {tensorboard: false}\n"
        "eval: {batch_size: 32}\n"
    )


def tiny_config(work: Path) -> None:
    write(work / "tiny.yaml", tiny_yaml())


def tiny_config_at(path: Path) -> None:
    write(path, tiny_yaml())


_CACHE: dict[str, Path] = {}


def trained_cache() -> Path:
    """A folder with tiny.yaml, data/ and run/ of one finished tiny run (made once per session)."""
    if "run" not in _CACHE:
        import atexit
        import contextlib

        from streamlabel.launch import cli

        base = Path(tempfile.mkdtemp(prefix="sl-adv-cache-"))
        atexit.register(shutil.rmtree, base, True)
        tiny_config(base)
        cwd = os.getcwd()
        os.chdir(base)
        try:
            err = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = cli.main(["train", "--config", "tiny.yaml", "--cpu", "--quiet"])
        finally:
            os.chdir(cwd)
        if code != 0:
            raise RuntimeError(f"the tiny run the resume cases copy failed: {err.getvalue()[-2000:]}")
        _CACHE["run"] = base
    return _CACHE["run"]


def copy_data(work: Path) -> None:
    """The tiny run's generated synthetic data (so a case does not render it again) and tiny.yaml."""
    cache = trained_cache()
    shutil.copytree(cache / "data", work / "data", symlinks=True)
    tiny_config(work)


def copy_run(work: Path) -> None:
    """tiny.yaml, data/ and the finished run/ (checkpoints, latest.txt, config.yaml, results.json)."""
    cache = trained_cache()
    copy_data(work)
    shutil.copytree(cache / "run", work / "run", symlinks=True)


def newest_checkpoint() -> str:
    """File name of the checkpoint the cached run's latest.txt names first."""
    return (trained_cache() / "run" / "checkpoints" / "latest.txt").read_text().split()[0]


def older_checkpoints() -> list[str]:
    return (trained_cache() / "run" / "checkpoints" / "latest.txt").read_text().split()[1:]


def checkpoint_bytes() -> bytes:
    return (trained_cache() / "run" / "checkpoints" / newest_checkpoint()).read_bytes()


def checkpoint_file(path: Path) -> None:
    write(path, checkpoint_bytes())


def model_state() -> dict:
    import torch

    state = torch.load(io.BytesIO(checkpoint_bytes()), map_location="cpu", weights_only=False)
    return state["model"] if "model" in state else state["state"]["model"]


def torch_bytes(obj: object) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def tensor(*shape: int) -> object:
    import torch

    return torch.ones(shape)


def state_dict_file(path: Path) -> None:
    write(path, torch_bytes(model_state()))


def market(work: Path, name: str = "market") -> Path:
    """A real-looking Market-1501 copy: tiny valid-named JPEGs and the user's notes.txt."""
    root = market_tree(work / name)
    (root / "notes.txt").write_text("months of collection notes; do not delete\n")
    return root


class Evil:
    """Not a tensor, not a container: unpickling it runs code (what weights_only refuses)."""

    def __reduce__(self):
        return (print, ("unpickled arbitrary code",))


def unsafe_checkpoint(path: Path) -> None:
    write(path, torch_bytes({"format": "streamlabel-checkpoint", "payload": Evil()}))


def plain_pickle(path: Path) -> None:
    write(path, pickle.dumps({"weights": [1, 2, 3], "note": "a pickle, not torch.save"}))


def fifo(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)


def dangling(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    os.symlink("nowhere/gone" + path.suffix, path)


def folder(path: Path) -> None:
    path.mkdir(parents=True)
    (path / "keep.txt").write_text("the user's\n")


def empty(path: Path) -> None:
    write(path, b"")


def half_of(make: Callable[[Path], None]) -> Callable[[Path], None]:
    """The first half of the bytes ``make`` writes."""

    def build(path: Path) -> None:
        make(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])

    return build


def text(data: str | bytes) -> Callable[[Path], None]:
    return lambda path: write(path, data)


def at(rel: str, make: Callable[[Path], object]) -> Setup:
    """Setup that runs ``make(work / rel)``."""

    def build(work: Path) -> None:
        make(work / rel)

    build.__name__ = f"at_{rel}"
    return build


def huge_npy_header(path: Path) -> None:
    """An .npz whose feats header claims 2**40 x 2**20 float32 (4 EiB); the data is 16 bytes."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1048576), }"
    header = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 16
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("feats.npy", npy)


def corrupt_npy_header(path: Path) -> None:
    """An .npz whose feats header is not a Python literal dict."""
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 4), os.system('x') }"
    header = header + " " * (63 - (10 + len(header)) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + b"\0" * 64
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("feats.npy", npy)


def arrays(path_name: str, **change: Callable[[dict], np.ndarray] | np.ndarray) -> Setup:
    """Setup: an evaluate file ``path_name`` (query cams 0, gallery cams 1) with some arrays replaced."""

    def build(work: Path) -> None:
        data = query_part() if path_name.startswith("q") else gallery_part()
        for key, value in change.items():
            data[key] = value(data) if callable(value) else value
        write(work / path_name, npz_bytes(**data))

    return build


def with_row(value: float, row: int = 1) -> Callable[[dict], np.ndarray]:
    def make(data: dict) -> np.ndarray:
        feats = data["feats"].copy()
        feats[row] = value
        return feats

    return make


# ----------------------------------------------------------------------------- the tables

def _argv(*parts: str | Iterable[str]) -> tuple[str, ...]:
    out: list[str] = []
    for part in parts:
        out.extend([part] if isinstance(part, str) else part)
    return tuple(out)


@dataclass(frozen=True)
class InputSlot:
    """One place a command reads a file from; ``argv(path)`` is the command line with that file there."""

    command: str
    slot: str
    argv: Callable[[str], tuple[str, ...]]
    suffix: str
    good: Callable[[Path], None]
    truncated: Callable[[Path], None]
    truncated_cause: str
    wrong: Callable[[Path], None]
    wrong_cause: str
    base: tuple[Setup, ...] = ()
    ok_trains: bool = False
    ok_outputs: tuple[str, ...] = ()
    config: bool = False  # a YAML config (a not-UTF-8 case too; /dev/null must be refused as a device)
    folder_cause: str = FOLDER_CAUSE
    dev_null_cause: str = SPECIAL + "|" + EMPTY  # a config must be refused as a device (issue 28)


TRAIN = ("--cpu", "--quiet")
YAML_SYNTAX = r"(not valid YAML|YAML|truncated|end of (the )?(file|stream)|line \d+)"
NOT_YAML = r"(not (a )?(valid )?(YAML|text|UTF-?8)|binary|utf-?8|decode|encoding)"
CUT_YAML = tiny_yaml()[: tiny_yaml().index("kwargs: {domain: target") + 10]
PNG = image_bytes(fmt="PNG")
NPZ_CUT = r"(truncated|corrupt|cannot read|not a zip|BadZipFile|incomplete)"
NOT_NPZ = r"(not an? \.?npz|not a zip|archive)"
CKPT_CUT = r"(truncated|corrupt|incomplete|not a streamlabel checkpoint)"
NOT_CKPT = r"(not a (streamlabel |torch |PyTorch )?checkpoint|not written by|not a zip|not a torch)"
NOT_STATE_DICT = (r"(not a (PyTorch |torch )?(state[- ]?dict|weights?)|expected a (PyTorch |torch )?state[- ]?dict|"
                  r"state[- ]?dict.*\bgot\b|mapping name -> tensor|not (a )?torch\.save)")

INPUT_SLOTS = (
    InputSlot("train", "config", lambda p: _argv("train", "--config", p, TRAIN), ".yaml", tiny_config_at,
              text(CUT_YAML), YAML_SYNTAX, text(PNG), NOT_YAML, ok_trains=True, ok_outputs=("run", "data"),
              config=True, dev_null_cause=SPECIAL),
    InputSlot("compare", "config", lambda p: _argv("compare", "--config", p, "--refresh-every", "0", TRAIN),
              ".yaml", tiny_config_at, text(CUT_YAML), YAML_SYNTAX, text(PNG), NOT_YAML, ok_trains=True,
              ok_outputs=("run", "data"), config=True, dev_null_cause=SPECIAL),
    InputSlot("labels", "features", lambda p: _argv("labels", "--features", p, "--quiet"), ".npz", dump,
              half_of(dump), NPZ_CUT, text("train:\n  iterations: 5\n"), NOT_NPZ),
    InputSlot("evaluate", "query", lambda p: _argv("evaluate", "--query", p, "--gallery", "g.npz"), ".npz",
              query_file, half_of(query_file), NPZ_CUT, text(PNG), NOT_NPZ, base=(eval_pair,)),
    InputSlot("evaluate", "split", lambda p: _argv("evaluate", "--split-by-camera", p), ".npz", split_file,
              half_of(split_file), NPZ_CUT, text(b"\x93NUMPY" + bytes(200)), NOT_NPZ),
    InputSlot("evaluate", "checkpoint", lambda p: _argv("evaluate", "--checkpoint", p, "--quiet"), ".pt",
              checkpoint_file, half_of(checkpoint_file), CKPT_CUT,
              text("a text file, not a checkpoint\n"), NOT_CKPT, base=(copy_run,),
              folder_cause=FOLDER_CAUSE + r"|no checkpoint in",  # a folder is read as a checkpoints/ folder
              dev_null_cause=SPECIAL + "|" + EMPTY + "|" + NOT_CKPT),
    InputSlot("train", "pretrained",
              lambda p: _argv("train", "--config", "tiny.yaml", f"model.pretrained={p}", TRAIN), ".pth",
              state_dict_file, half_of(state_dict_file), CKPT_CUT + "|" + NOT_STATE_DICT,
              lambda path: write(path, npz_bytes(**clusters())), NOT_STATE_DICT, base=(copy_data,),
              ok_trains=True, ok_outputs=("run",)),
)


def input_cases() -> list[Case]:
    """Every input slot x missing, empty, folder, FIFO, /dev/null, unreadable, truncated, wrong format,
    dangling link, too-long name, not-UTF-8 config, and an odd but valid name (that one must work)."""
    cases = []
    for s in INPUT_SLOTS:
        x = s.suffix
        prefix = f"{s.command}_{s.slot}"
        kinds: list[tuple[str, str, Setup | None, int | tuple[int, ...], str, dict]] = [
            ("missing", f"absent{x}", None, 2, names(f"absent{x}", MISSING), {}),
            ("empty", f"empty{x}", empty, 2, names(f"empty{x}", EMPTY + "|" + s.truncated_cause), {}),
            ("folder", f"afolder{x}", folder, 2, names(f"afolder{x}", s.folder_cause), {}),
            ("fifo", f"pipe{x}", fifo, 2, names(f"pipe{x}", SPECIAL), {"timeout": 5.0}),
            ("dev_null", "/dev/null", None, 2, names("/dev/null", s.dev_null_cause), {}),
            ("unreadable", f"locked{x}", s.good, 2, names(f"locked{x}", UNREADABLE),
             {"nonroot": True, "chmod": ((f"locked{x}", 0o000),)}),
            ("truncated", f"cut{x}", s.truncated, 2, names(f"cut{x}", s.truncated_cause), {}),
            ("wrong_format", f"wrong{x}", s.wrong, 2, names(f"wrong{x}", s.wrong_cause), {}),
            ("dangling_link", f"dangling{x}", dangling, 2,  # naming the link or its target
             rf"(?i)(?=.*(dangling|nowhere/gone){re.escape(x)})(?=.*{DANGLING})", {}),
            ("name_too_long", f"{LONG}{x}", None, 2, names("LLLLLLLLLLLLLLLL", TOO_LONG), {}),
        ]
        if s.config:
            kinds.append(("not_utf8", f"latin1{x}", text(b"# caf\xe9 au lait\ntrain: {iterations: 5}\n"), 2,
                          names(f"latin1{x}", NOT_YAML), {}))
        for kind, rel, make, code, message, extra in kinds:
            setup = (*s.base, *((at(rel, make),) if make is not None else ()))
            cases.append(Case(f"{prefix}_{kind}", s.command, s.argv(rel), code, message, setup, **extra))
        odd = f"{ODD}{x}"
        cases.append(Case(f"{prefix}_odd_name_works", s.command, s.argv(odd), 0, "",
                          (*s.base, at(odd, s.good)), outputs=s.ok_outputs, trains=s.ok_trains, timeout=120))
    return cases


def resume_checkpoint_cases() -> list[Case]:
    """`train --resume` whose newest checkpoint (the one latest.txt names) is replaced by a bad file; the
    other checkpoints, config.yaml and results.json of the run must come out unchanged when it refuses."""
    argv = _argv("train", "--resume", "--config", "tiny.yaml", TRAIN)
    keep_run = ("run/checkpoints", "run/config.yaml", "run/results.json")

    def replaced(make: Callable[[Path], None]) -> Setup:
        def build(work: Path) -> None:
            newest = work / "run" / "checkpoints" / newest_checkpoint()
            newest.unlink()
            make(newest)

        return build

    def locked(path: Path) -> None:
        write(path, checkpoint_bytes())
        path.chmod(0o000)

    def cut(path: Path) -> None:
        data = checkpoint_bytes()
        write(path, data[: len(data) // 2])

    ckpt = r"epoch\d+"  # the checkpoint files are <phase>_epoch<N>.pt
    bad = [  # kind, setup, exit codes, cause, extra
        ("missing", replaced(lambda p: None), (0, 2), ckpt + ".*" + MISSING, {}),  # an older one may be used
        ("empty", replaced(empty), 2, rf"(?i){ckpt}.*({EMPTY}|{CKPT_CUT})", {}),
        ("folder", replaced(folder), 2, rf"(?i){ckpt}.*{FOLDER_CAUSE}", {}),
        ("fifo", replaced(fifo), (0, 2), rf"(?i){ckpt}.*{SPECIAL}", {"timeout": 8.0}),
        ("unreadable", replaced(locked), 2, rf"(?i){ckpt}.*{UNREADABLE}", {"nonroot": True}),
        ("truncated", replaced(cut), 2, rf"(?i){ckpt}.*{CKPT_CUT}", {}),
        ("text_file", replaced(text("not a checkpoint\n")), 2, rf"(?i){ckpt}.*{NOT_CKPT}", {}),
        ("plain_pickle", replaced(plain_pickle), 2, rf"(?i){ckpt}.*({NOT_CKPT}|{UNSAFE})", {}),
        ("unsafe_pickle", replaced(unsafe_checkpoint), 2, rf"(?i){ckpt}.*{UNSAFE}", {}),
        ("dangling_link", replaced(dangling), (0, 2), rf"(?i){ckpt}.*{DANGLING}", {}),
    ]
    cases = []
    for kind, setup, code, message, extra in bad:
        keep = () if code != 2 else keep_run
        cases.append(Case(f"resume_checkpoint_{kind}", "resume", argv, code, message, (copy_run, setup),
                          outputs=("run",), keep=keep, trains=True, **extra))
    return cases


def latest_txt_cases() -> list[Case]:
    """`--resume` beside complete checkpoints whose latest.txt is empty, missing, a folder, garbage, points
    outside, a FIFO or unreadable: pick the newest complete checkpoint by its header or stop with a clear
    error; never start over on top of the checkpoints (they must come out byte-identical)."""
    argv = _argv("train", "--resume", "--config", "tiny.yaml", TRAIN)
    latest = "run/checkpoints/latest.txt"
    cause = names("latest.txt", r".")
    pt = ("run/checkpoints/*.pt",)

    def pointer(make: Callable[[Path], None]) -> Setup:
        def build(work: Path) -> None:
            (work / latest).unlink()
            make(work / latest)

        return build

    rows = [
        ("empty", pointer(empty), {}),
        ("missing", pointer(lambda p: None), {}),
        ("folder", pointer(folder), {}),
        ("binary_garbage", pointer(text(b"\xff\xfe\x00garbage\x80\n")), {}),
        ("points_outside", pointer(text("../../outside.pt\n")), {}),
        ("names_missing_file", pointer(text("adapt_epoch9999.pt\n")), {}),
        ("fifo", pointer(fifo), {"timeout": 6.0}),
        ("unreadable", pointer(lambda p: write(p, newest_checkpoint() + "\n")),
         {"nonroot": True, "chmod": ((latest, 0o000),)}),
    ]
    out = []
    for kind, setup, extra in rows:
        setups: tuple[Setup, ...] = (copy_run, setup)
        if kind == "points_outside":
            setups = (*setups, at("outside.pt", text("not yours to read\n")))
        out.append(Case(f"resume_latest_txt_{kind}", "resume", argv, (0, 2), cause, setups,
                        outputs=("run",), keep=pt, trains=True, **extra))
    return out


def foreign_checkpoint_cases() -> list[Case]:
    """output_dir/checkpoints holding files streamlabel did not write (or wrote for another config)."""
    argv = _argv("train", "--resume", "--config", "tiny.yaml", TRAIN)
    keep = ("run/checkpoints", "run/config.yaml", "run/results.json")

    def foreign_only(with_pointer: bool) -> Setup:
        def build(work: Path) -> None:
            ckpt = work / "run" / "checkpoints"
            ckpt.mkdir(parents=True)
            (ckpt / "adapt_epoch0003.pt").write_bytes(b"PK\x03\x04 someone else's file")
            (ckpt / "model_best.pt").write_bytes(torch_bytes({"state_dict": {}}))
            if with_pointer:
                (ckpt / "latest.txt").write_text("adapt_epoch0003.pt\n")

        return build

    def other_config(work: Path) -> None:  # a run of the same tiny config with another learning rate
        text_ = (work / "tiny.yaml").read_text() + "optim: {lr: 0.01}\n"
        (work / "tiny.yaml").write_text(text_)

    def no_pointer(work: Path) -> None:
        (work / "run" / "checkpoints" / "latest.txt").unlink()
        other_config(work)

    def tampered_shape(work: Path) -> None:
        import torch

        path = work / "run" / "checkpoints" / newest_checkpoint()
        state = torch.load(path, map_location="cpu", weights_only=False)
        model = state["model"] if "model" in state else state["state"]["model"]
        key = next(k for k, v in model.items() if v.ndim == 4)
        model[key] = model[key][:, :1].clone()
        torch.save(state, path)

    return [
        Case("resume_foreign_checkpoints_no_pointer", "resume", argv, 2,
             names("run/checkpoints", r"(foreign|not (a )?streamlabel|no (usable|complete|valid)|not written by)"),
             (copy_data, foreign_only(False)), outputs=("run",), keep=keep, trains=True),
        Case("resume_foreign_checkpoint_named_by_pointer", "resume", argv, 2,
             names("adapt_epoch0003.pt", NOT_CKPT + "|" + CKPT_CUT), (copy_data, foreign_only(True)),
             outputs=("run",), keep=keep, trains=True),
        Case("resume_checkpoint_of_another_config", "resume", argv, 2, names("optim.lr", r"."),
             (copy_run, other_config), outputs=("run",), keep=keep, trains=True),
        Case("resume_another_config_without_pointer", "resume", argv, 2, names("optim.lr", r"."),
             (copy_run, no_pointer), outputs=("run",), keep=keep + ("run/checkpoints/latest.txt",), trains=True),
        Case("resume_checkpoint_weights_of_wrong_shape", "resume", argv, 2, r"(?i)(shape|size).*\d.*\d",
             (copy_run, tampered_shape), outputs=("run",), keep=keep, trains=True),
        Case("resume_checkpoints_path_is_a_file", "resume", argv, 2,
             names("checkpoints", r"(is a file|not a (folder|directory))"),
             (copy_data, at("run/checkpoints", text("a file where the checkpoint folder goes\n"))),
             outputs=("run",), keep=("run/checkpoints",), trains=True),
        Case("resume_checkpoint_folder_read_only", "resume", _argv(argv, "train.iterations=6"), 2,
             names("checkpoints", UNWRITABLE), (copy_run,), outputs=("run",), keep=keep, trains=False,
             nonroot=True, chmod=(("run/checkpoints", 0o555),)),
        Case("evaluate_checkpoint_folder_only_foreign_files", "evaluate",
             _argv("evaluate", "--checkpoint", "run/checkpoints", "--quiet"), 2, names("checkpoints", r"."),
             (copy_data, foreign_only(False))),
        Case("evaluate_checkpoint_unsafe_pickle", "evaluate", _argv("evaluate", "--checkpoint", "evil.pt", "--quiet"),
             2, names("evil.pt", UNSAFE), (copy_data, at("evil.pt", unsafe_checkpoint))),
        Case("evaluate_checkpoint_weights_of_wrong_shape", "evaluate",
             _argv("evaluate", "--checkpoint", "run/checkpoints", "--quiet"), 2, r"(?i)(shape|size).*\d.*\d",
             (copy_run, tampered_shape)),
        Case("evaluate_checkpoint_folder_empty_pointer", "evaluate",
             _argv("evaluate", "--checkpoint", "run/checkpoints", "--quiet"), (0, 2), names("latest.txt", r"."),
             (copy_run, at("run/checkpoints/latest.txt", empty))),
        Case("evaluate_checkpoint_dataset_root_missing", "evaluate",
             _argv("evaluate", "--checkpoint", "run/checkpoints", "--quiet"), 2, names("data/target", MISSING),
             (copy_run, lambda w: shutil.rmtree(w / "data" / "target"))),
        Case("evaluate_checkpoint_dataset_root_is_a_real_market", "evaluate",
             _argv("evaluate", "--checkpoint", "run/checkpoints", "--quiet"), 2,
             names("data/target", r"(not empty|foreign|did not write|synthetic|not (a )?streamlabel)"),
             (copy_run, lambda w: shutil.rmtree(w / "data" / "target"), lambda w: market(w, "data/target")),
             keep=("data/target",)),
    ]


@dataclass(frozen=True)
class OutputSlot:
    """One place a command writes to; ``argv(path)`` is the command line writing there."""

    command: str
    slot: str
    argv: Callable[[str], tuple[str, ...]]
    suffix: str  # "" = a folder
    base: tuple[Setup, ...] = ()
    others: tuple[str, ...] = ()  # other outputs the command writes (besides the one under test)
    trains: bool = False  # the command trains when the output is accepted


SMALL_SYNTH = ("--domain", "target", "--train-ids", "2", "--test-ids", "1", "--cams", "2", "--images-per-cam", "1",
               "--height", "8", "--width", "8", "--quiet")
SMALL_PREVIEW = ("--ids", "1", "--shots", "1", "--cams", "2", "--height", "8", "--width", "8", "--quiet")

OUTPUT_SLOTS = (
    OutputSlot("labels", "out", lambda p: _argv("labels", "--features", "f.npz", "--out", p, "--quiet"), ".npy",
               base=(at("f.npz", dump),)),
    OutputSlot("extract", "out", lambda p: _argv("extract", "--config", "tiny.yaml", "--split", "query", "--out", p,
                                                 "--quiet"), ".npz", base=(copy_data,), others=("data",)),
    OutputSlot("synth", "out", lambda p: _argv("synth", "--out", p, SMALL_SYNTH), ""),
    OutputSlot("synth", "preview", lambda p: _argv("synth", "--preview", p, SMALL_PREVIEW), ".png"),
    OutputSlot("compare", "out",
               lambda p: _argv("compare", "--config", "tiny.yaml", "--refresh-every", "0", "--out", p, TRAIN), "",
               base=(copy_data,), others=("run", "data"), trains=True),
    OutputSlot("train", "output_dir", lambda p: _argv("train", "--config", "tiny.yaml", f"output_dir={p}", TRAIN),
               "", base=(copy_data,), others=("data",), trains=True),
)


def output_cases() -> list[Case]:
    """Every output slot x a file in place of a parent folder, a read-only parent, a name too long for the
    file system, an empty path, a path under /proc, a dangling link as parent, and an odd but valid name."""
    cases = []
    for s in OUTPUT_SLOTS:
        x = s.suffix
        prefix = f"{s.command}_{s.slot}"
        flag = "output_dir" if s.slot == "output_dir" else f"--{s.slot}"
        rows: list[tuple[str, str, tuple[Setup, ...], int, str, dict]] = [
            ("parent_is_a_file", f"a_file/x{x}", (at("a_file", text("the user's file\n")),), 2,
             names("a_file", r"(is a file|not a (folder|directory))"), {}),
            ("read_only_parent", f"ro/x{x}", (at("ro/keep.txt", text("the user's\n")),), 2,
             names("ro", UNWRITABLE), {"nonroot": True, "chmod": (("ro", 0o555),)}),
            ("name_too_long", f"{LONG}{x}", (), 2, names("LLLLLLLLLLLLLLLL", TOO_LONG), {}),
            ("name_too_long_in_parent", f"{LONG}/x{x}", (), 2, names("LLLLLLLLLLLLLLLL", TOO_LONG), {}),
            ("empty_path", "", (), 2, names(flag, r"(empty|''|\"\"|is a folder|give)"), {}),
            ("parent_is_a_dangling_link", f"gone/x{x}", (at("gone", dangling),), 2,
             names("gone", r"(link|does not exist|not a (folder|directory)|not found|broken|dangling)"), {}),
        ]
        if s.slot != "out" or s.command != "labels":  # labels --out /proc/... is a hand-written case
            rows.append(("under_proc", f"/proc/sl-adv/x{x}", (), 2,
                         names("/proc/sl-adv", r"(cannot|not writable|read-only|no such file|permission|does not "
                                               r"exist|not a (folder|directory))"), {}))
        for kind, rel, setup, code, message, extra in rows:
            cases.append(Case(f"{prefix}_{kind}", s.command, s.argv(rel), code, message, (*s.base, *setup),
                              **extra))
        odd = f"{ODD}/{ODD}{x}" if x else f"{ODD}/{ODD} out"
        cases.append(Case(f"{prefix}_odd_name_works", s.command, s.argv(odd), 0, "", s.base,
                          outputs=(odd.split("/")[0], *s.others), trains=s.trains, timeout=120))
    not_utf8 = os.fsdecode(b"f\xff.npz")  # a name that is not UTF-8 (surrogate-escaped in argv)
    cases += [  # a newline inside a file name is legal on POSIX
        Case("labels_out_newline_in_name_works", "labels",
             _argv("labels", "--features", "f.npz", "--out", "two\nlines.npy", "--quiet"), 0, "",
             (at("f.npz", dump),), outputs=("two\nlines.npy",)),
        Case("labels_features_not_utf8_name_works", "labels", _argv("labels", "--features", not_utf8, "--quiet"), 0,
             "", (at(not_utf8, dump),)),
    ]
    return cases


def _user_config(work: Path) -> None:
    write(work / "mine" / "config.yaml", tiny_yaml(output_dir="run"))


def tiny_config_at_npz(work: Path) -> None:
    """The tiny config under an .npz name (YAML reads it): an output spelled like an input."""
    write(work / "tiny.npz", tiny_yaml())


def _checkpoint_named(work: Path, name: str) -> None:
    write(work / "run" / "checkpoints" / name, checkpoint_bytes())


def same_input_output_cases() -> list[Case]:
    """An output that is one of the inputs (directly, through another spelling, or through a link)."""
    return [
        Case("labels_out_is_the_features_file", "labels", _argv("labels", "--features", "f.npy", "--out", "f.npy"),
             2, names("f.npy", SAME_AS_INPUT), (at("f.npy", dump),)),
        Case("labels_out_is_the_features_file_spelled_differently", "labels",
             _argv("labels", "--features", "./f.npy", "--out", "sub/../f.npy"), 2, names("f.npy", SAME_AS_INPUT),
             (at("f.npy", dump), at("sub/keep.txt", text("x\n")))),
        Case("labels_out_is_a_link_to_the_features_file", "labels",
             _argv("labels", "--features", "f.npz", "--out", "link.npy"), 2, names("link.npy", SAME_AS_INPUT),
             (at("f.npz", dump), lambda w: os.symlink("f.npz", w / "link.npy"))),
        Case("extract_out_is_the_config_file", "extract",
             _argv("extract", "--config", "tiny.npz", "--out", "tiny.npz"), 2, names("tiny.npz", SAME_AS_INPUT),
             (tiny_config_at_npz,)),
        Case("extract_out_is_a_link_to_the_checkpoint", "extract",
             _argv("extract", "--checkpoint", "run/checkpoints/" + "ckpt.npz", "--out", "link.npz"), 2,
             names("link.npz", SAME_AS_INPUT), (copy_data, lambda w: _checkpoint_named(w, "ckpt.npz"),
                                                 lambda w: os.symlink("run/checkpoints/ckpt.npz", w / "link.npz"))),
        Case("extract_synthetic_root_is_a_real_market_folder", "extract",
             _argv("extract", "--config", "tiny.yaml", "data.target.root=market", "--out", "x.npz"), 2,
             names("market", r"(not empty|foreign|did not write|never clears)"), (tiny_config, market)),
        Case("train_output_dir_is_the_target_data_root", "train",
             _argv("train", "--config", "tiny.yaml", "output_dir=data/target", TRAIN), 2,
             names("data/target", SAME_AS_INPUT + r"|dataset|data root"), (copy_data,)),
        Case("train_output_dir_holds_the_config_it_reads", "train",
             _argv("train", "--config", "mine/config.yaml", "output_dir=mine", TRAIN), 2,
             names("mine", SAME_AS_INPUT + r"|overwrite"), (copy_data, _user_config), outputs=()),
        Case("compare_out_is_the_target_data_root", "compare",
             _argv("compare", "--config", "tiny.yaml", "--refresh-every", "0", "--out", "data/target", TRAIN), 2,
             names("data/target", SAME_AS_INPUT + r"|dataset|data root|not empty"), (copy_data,)),
        Case("compare_out_would_overwrite_the_users_table", "compare",
             _argv("compare", "--config", "tiny.yaml", "--refresh-every", "0", "--out", "mine", TRAIN), 2,
             names("table.md", r"(exists|overwrite|not empty|foreign|already)"),
             (copy_data, at("mine/table.md", text("# my own results table\n")))),
        Case("synth_out_is_a_real_market_folder_with_overwrite", "synth",
             _argv("synth", "--out", "market", "--overwrite", SMALL_SYNTH), 2,
             names("market", r"(not empty|foreign|did not write|never clears|not (a )?streamlabel)"), (market,)),
        Case("synth_out_is_a_real_market_folder", "synth", _argv("synth", "--out", "market", SMALL_SYNTH), 2,
             names("market", r"(not empty|foreign|did not write|never clears)"), (market,)),
        Case("synth_out_both_domains_into_a_users_folder", "synth",
             _argv("synth", "--out", "mine", "--overwrite", SMALL_SYNTH[2:]), 2,
             names("mine", r"(not empty|foreign|did not write|never clears)"),
             (lambda w: market(w, "mine/target"),)),
        Case("train_tensorboard_folder_is_a_file", "train",
             _argv("train", "--config", "tiny.yaml", "log.tensorboard=true", TRAIN), 2,
             names("logs", r"(is a file|not a (folder|directory))"), (copy_data, at("run/logs", text("x\n")))),
        Case("train_config_dump_path_is_a_folder", "train", _argv("train", "--config", "tiny.yaml", TRAIN), 2,
             names("config.yaml", FOLDER_CAUSE + r"|write over|did not write"),
             (copy_data, at("run/config.yaml/keep.txt", text("x\n")))),
        Case("train_results_path_is_a_folder", "train", _argv("train", "--config", "tiny.yaml", TRAIN), 2,
             names("results.json", FOLDER_CAUSE + r"|write over|did not write"),
             (copy_data, at("run/results.json/keep.txt", text("x\n")))),
        Case("compare_out_read_only_is_found_before_training", "compare",
             _argv("compare", "--config", "tiny.yaml", "--refresh-every", "0", "--out", "ro", TRAIN), 2,
             names("ro", UNWRITABLE), (copy_data, at("ro/keep.txt", text("x\n"))), nonroot=True,
             chmod=(("ro", 0o555),)),
        Case("train_output_dir_read_only_itself", "train",
             _argv("train", "--config", "tiny.yaml", "output_dir=ro", TRAIN), 2, names("ro", UNWRITABLE),
             (copy_data, at("ro/keep.txt", text("x\n"))), nonroot=True, chmod=(("ro", 0o555),)),
        Case("synth_out_read_only_itself", "synth", _argv("synth", "--out", "ro", SMALL_SYNTH), 2,
             names("ro", UNWRITABLE), (at("ro/.keep", text("")),), nonroot=True, chmod=(("ro", 0o555),)),
    ]


# config overrides every config-reading command gets: (name, override, cause)
RANGE = (r"(>=|<=|>|<|positive|at least|at most|must be in [\[(]|between|range|above|below|limit|maximum|minimum|"
         r"too (large|big|many|small)|refused|exceeds|only \d+)")


def bounded(key: str) -> str:
    """A line naming ``key`` and the bound it broke, in any wording."""
    return rf"(?i)(?=.*{key})(?=.*{RANGE})"


# config overrides every config-reading command gets: (name, override, cause)
OVERRIDES = (
    ("iterations_text", "train.iterations=abc", r"train\.iterations.*integer"),
    ("lr_list", "optim.lr=[1]", r"optim\.lr.*number"),
    ("height_float", "data.height=1.5", r"data\.height.*integer"),
    ("seed_text", "seed=abc", r"seed.*integer"),
    ("seed_beyond_2_64", "seed=100000000000000000000", bounded(r"seed") + r"|seed.*2\*\*(32|64)"),
    ("output_dir_list", "output_dir=[1, 2]", r"output_dir.*(string|str|path)"),
    ("output_dir_mapping", "output_dir={a: 1}", r"output_dir.*(string|str|path)"),
    ("output_dir_empty", "output_dir=", r"(?i)output_dir.*(empty|current (folder|directory)|'')"),
    ("model_kwargs_scalar", "model.kwargs=5", r"model\.kwargs.*mapping"),
    ("imports_scalar", "imports=5", r"imports.*list"),
    ("tensorboard_maybe", "log.tensorboard=maybe", r"log\.tensorboard.*(bool|true|false)"),
    ("num_instances_zero", "data.num_instances=0", bounded(r"data\.num_instances")),
    ("target_batch_zero", "train.target_batch=0", bounded(r"train\.target_batch")),
    ("height_zero", "data.height=0", bounded(r"data\.height")),
    ("width_negative", "data.width=-1", bounded(r"data\.width")),
    ("iters_per_epoch_zero", "train.iters_per_epoch=0", bounded(r"train\.iters_per_epoch")),
    ("eval_batch_zero", "eval.batch_size=0", bounded(r"eval\.batch_size")),
    ("num_workers_negative", "data.num_workers=-1", bounded(r"data\.num_workers")),
    ("gamma_nan", "optim.gamma=.nan", r"optim\.gamma.*finite"),
    ("lr_inf", "optim.lr=.inf", r"optim\.lr.*finite"),
    ("temperature_overflows", "loss.temperature=1e400", r"loss\.temperature.*finite"),
    ("grad_clip_negative", "train.grad_clip=-1", bounded(r"train\.grad_clip") + r"|grad_clip.*negative"),
    ("sigma_inf", "policy.sigma=.inf", r"sigma"),
    ("height_absurd", "data.height=1000000", bounded(r"data\.height")),
    ("width_absurd", "data.width=1000000", bounded(r"data\.width")),
    ("target_batch_absurd", "train.target_batch=4000000", bounded(r"target_batch")),
    ("num_instances_absurd", "data.num_instances=1000000", bounded(r"num_instances") + r"|num_instances.*multiple"
                                                            r"|multiple of .*num_instances"),
    ("cpu_threads_absurd", "cpu_threads=1000000", bounded(r"cpu_threads") + r"|cpu_threads.*cores"),
    ("num_workers_absurd", "data.num_workers=100000", bounded(r"num_workers") + r"|num_workers.*cores"),
    ("k_absurd", "policy.k=1000000000", bounded(r"(policy\.k\b|'k')") + r"|\bk\b.*< N"),
    ("link_k_absurd", "policy.link_k=1000000000", r"link_k"),
    ("num_ids_absurd", "data.target.kwargs.num_train_ids=1000000000", bounded(r"num_train_ids")),
    ("model_kwargs_unknown", "model.kwargs.bogus=1", r"(?i)bogus"),
    ("model_kwargs_bad_value", "model.kwargs.feat_dim=-5", r"(?i)feat_dim"),
    ("model_kwargs_bad_choice", "model.kwargs.head=pyramidd", r"(?i)head.*pyramidd|pyramidd.*head"),
    ("model_name_typo", "model.name=osnet_x0_2S", r"(?i)osnet_x0_2S.*(did you mean|unknown|available)"),
    ("pretrained_not_a_path", "model.pretrained=5", r"(?i)model\.pretrained.*(string|str|path)"),
    ("imports_missing_module", "imports=[no_such_module_xyz]", r"no_such_module_xyz"),
)


def _plugins(work: Path) -> None:
    write(work / "plugins" / "evil.py", "from pathlib import Path\nPath('pwned.txt').write_text('ran')\n")
    write(work / "plugins" / "broken.py", "def f(:\n    pass\n")


def config_cases() -> list[Case]:
    """OVERRIDES x {train, compare}, a few x resume, and the imports / YAML specials."""
    cases = []
    commands = {
        "train": ("train", _argv("train", "--config", "tiny.yaml"), (copy_data,)),
        "compare": ("compare", _argv("compare", "--config", "tiny.yaml", "--refresh-every", "0"), (copy_data,)),
    }
    for label, (command, head, base) in commands.items():
        for name, override, cause in OVERRIDES:
            cases.append(Case(f"{label}_override_{name}", command, _argv(head, override, TRAIN), 2, cause, base))
    resume_head = _argv("train", "--resume", "--config", "tiny.yaml")
    keep = ("run/checkpoints", "run/config.yaml", "run/results.json")
    for name, override, cause in OVERRIDES:
        if name in ("iterations_text", "lr_inf", "output_dir_empty", "cpu_threads_absurd", "k_absurd",
                    "num_ids_absurd", "model_kwargs_unknown"):
            cases.append(Case(f"resume_override_{name}", "resume", _argv(resume_head, override, TRAIN), 2, cause,
                              (copy_run,), outputs=("run",), keep=keep))
    bomb = "model:\n  name: osnet_x0_25\n  kwargs:\n    bomb: [&a [1, 1, 1, 1, 1, 1, 1, 1, 1]"
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        bomb += f", &{level} [" + ", ".join([f"*{prev}"] * 9) + "]"
    bomb += "]\n"
    huge = "output_dir: run\n" + ("# " + "x" * 1021 + "\n") * 4096  # 4 MiB of comments
    for label, (command, head, base) in commands.items():
        cases += [
            Case(f"{label}_imports_run_after_validation", command,
                 _argv(head, "imports=[plugins/evil.py]", "train.iteratons=5", TRAIN), 2,
                 r"train\.iteratons.*did you mean", (*base, _plugins)),
            Case(f"{label}_imports_syntax_error", command, _argv(head, "imports=[plugins/broken.py]", TRAIN), 2,
                 names("broken.py", r"(syntax|line \d)"), (*base, _plugins)),
            Case(f"{label}_yaml_alias_bomb", command, _argv(head[:1], "--config", "bomb.yaml", TRAIN), 2,
                 r"(?i)bomb\.yaml.*(alias|anchor|billion|too (many|large)|expand)",
                 (*base, at("bomb.yaml", text(bomb))), timeout=10.0),
            Case(f"{label}_config_too_large", command, _argv(head[:1], "--config", "huge.yaml", TRAIN), 2,
                 r"(?i)huge\.yaml.*(too (large|big)|exceeds|limit|MiB|MB|bytes)",
                 (*base, at("huge.yaml", text(huge))), timeout=30.0),
        ]
    return cases


def market_cases() -> list[Case]:
    """A real-looking Market-1501 folder (and other folders the user owns) given where streamlabel writes its
    synthetic data: it must come out byte-identical, and the command must say why it stopped."""
    refused = r"(not empty|foreign|did not write|never clears|not (a )?streamlabel|synthetic)"
    sizes = ("data.target.kwargs.num_cams=1",)  # invalid: the synthetic sizes are validated after the root today
    return [
        Case("train_default_demo_target_root_is_market", "train", ("train", "data.target.root=market", "--quiet"), 2,
             names("market", refused), (market,), outputs=("runs",), keep=("market",)),
        Case("train_default_demo_source_root_is_market", "train", ("train", "data.source.root=market", "--quiet"), 2,
             names("market", refused), (market,), outputs=("runs",), keep=("market",)),
        Case("train_default_demo_market_root_and_bad_sizes", "train",
             ("train", "data.target.root=market", *sizes, "--quiet"), 2, r"(?i)(market|num_cams)",
             (market,), outputs=("runs",), keep=("market",)),
        Case("train_default_demo_target_root_is_the_working_folder", "train",
             ("train", "data.target.root=.", "--quiet"), 2, refused + r"|input",
             (at("thesis.txt", text("three years of work\n")), at("query/me.txt", text("x\n"))), outputs=("runs",),
             keep=("thesis.txt", "query")),
        Case("train_default_demo_target_root_holds_only_notes", "train", ("train", "data.target.root=notes", "--quiet"),
             2, names("notes", refused), (at("notes/todo.txt", text("x\n")),), outputs=("runs",), keep=("notes",)),
        Case("compare_default_demo_target_root_is_market", "compare",
             ("compare", "--refresh-every", "0", "data.target.root=market", "--quiet"), 2, names("market", refused),
             (market,), outputs=("runs",), keep=("market",)),
        Case("resume_default_demo_target_root_is_market", "resume",
             ("train", "--resume", "data.target.root=market", "--quiet"), 2, names("market", refused), (market,),
             outputs=("runs",), keep=("market",)),
        Case("train_users_file_inside_a_synthetic_root_survives_a_size_change", "train",
             _argv("train", "--config", "tiny.yaml", "data.target.kwargs.num_train_ids=10", TRAIN), (0, 2),
             names("data/target", r"(not empty|foreign|did not write|never clears|keep|user)"),
             (copy_data, at("data/target/query/my_notes.txt", text("mine\n"))), outputs=("run", "data"),
             keep=("data/target/query/my_notes.txt",), trains=True),
    ]


def feature_cases() -> list[Case]:
    """Feature dumps with NaN / Inf / all-zero rows, no rows, mismatched widths, nothing to score, huge or
    corrupt .npy headers."""
    q, g = ("--query", "q.npz"), ("--gallery", "g.npz")
    ev = ("evaluate",)
    zero_feats = lambda d: np.zeros_like(d["feats"])  # noqa: E731
    return [
        Case("evaluate_query_nan_row", "evaluate", _argv(ev, "--query", "qn.npz", g), 2, names("qn.npz", "NaN"),
             (eval_pair, arrays("qn.npz", feats=with_row(np.nan)))),
        Case("evaluate_gallery_inf_row", "evaluate", _argv(ev, q, "--gallery", "gi.npz"), 2,
             names("gi.npz", r"(inf|NaN)"), (eval_pair, arrays("gi.npz", feats=with_row(np.inf)))),
        Case("evaluate_gallery_zero_row", "evaluate", _argv(ev, q, "--gallery", "gz.npz"), 2,
             names("gz.npz", r"zero"), (eval_pair, arrays("gz.npz", feats=with_row(0.0)))),
        Case("evaluate_query_all_zero", "evaluate", _argv(ev, "--query", "qz.npz", g), 2, names("qz.npz", "zero"),
             (eval_pair, arrays("qz.npz", feats=zero_feats))),
        Case("evaluate_split_nan_row", "evaluate", ("evaluate", "--split-by-camera", "sn.npz"), 2,
             names("sn.npz", "NaN"), (at("sn.npz", lambda p: write(p, npz_bytes(**{
                 **clusters(), "feats": np.where(np.arange(30)[:, None] == 2, np.nan, clusters()["feats"])}))),)),
        Case("evaluate_query_no_rows", "evaluate", _argv(ev, "--query", "q0.npz", g), 2,
             names("q0.npz", r"(at least one row|no rows|empty)"),
             (eval_pair, arrays("q0.npz", feats=lambda d: d["feats"][:0], pids=lambda d: d["pids"][:0],
                                camids=lambda d: d["camids"][:0]))),
        Case("evaluate_gallery_wider_than_query", "evaluate", _argv(ev, q, "--gallery", "gw.npz"), 2,
             r"(?i)(dim|width).*16.*32|(dim|width).*32.*16",
             (eval_pair, arrays("gw.npz", feats=lambda d: np.tile(d["feats"], (1, 2))))),
        Case("evaluate_rerank_widths_differ", "evaluate", _argv(ev, q, "--gallery", "gw.npz", "--rerank"), 2,
             r"(?i)(dim|width).*16.*32|(dim|width).*32.*16",
             (eval_pair, arrays("gw.npz", feats=lambda d: np.tile(d["feats"], (1, 2))))),
        Case("evaluate_every_query_pid_is_junk", "evaluate", _argv(ev, "--query", "qj.npz", g), (0, 2),
             NOT_SCORED, (eval_pair, arrays("qj.npz", pids=lambda d: np.full_like(d["pids"], -1))), warns=True),
        Case("evaluate_no_query_has_a_gallery_match", "evaluate", _argv(ev, "--query", "qx.npz", g), (0, 2),
             NOT_SCORED, (eval_pair, arrays("qx.npz", pids=lambda d: d["pids"] + 1000)), warns=True),
        Case("evaluate_split_query_matches_only_its_own_camera", "evaluate",
             ("evaluate", "--split-by-camera", "so.npz"), (0, 2), NOT_SCORED,
             (at("so.npz", lambda p: write(p, npz_bytes(**{**clusters(), "pids": np.arange(30)}))),), warns=True),
        Case("labels_every_row_zero", "labels", ("labels", "--features", "z.npz"), 2, names("z.npz", "zero"),
             (at("z.npz", lambda p: write(p, npz_bytes(feats=np.zeros((10, 4), np.float32)))),)),
        Case("labels_huge_npy_header", "labels", ("labels", "--features", "huge.npz"), 2,
             names("huge.npz", r"(too (large|big)|header|shape|memory|cannot read|truncated|corrupt)"),
             (at("huge.npz", huge_npy_header),), timeout=20.0),
        Case("evaluate_huge_npy_header", "evaluate", _argv(ev, "--query", "huge.npz", g), 2,
             names("huge.npz", r"(too (large|big)|header|shape|memory|cannot read|truncated|corrupt)"),
             (eval_pair, at("huge.npz", huge_npy_header)), timeout=20.0),
        Case("labels_corrupt_npy_header", "labels", ("labels", "--features", "bad.npz"), 2,
             names("bad.npz", r"(header|cannot read|corrupt|not an? \.?np)"), (at("bad.npz", corrupt_npy_header),)),
        Case("evaluate_corrupt_npy_header", "evaluate", ("evaluate", "--split-by-camera", "bad.npz"), 2,
             names("bad.npz", r"(header|cannot read|corrupt|not an? \.?np)"), (at("bad.npz", corrupt_npy_header),)),
    ]


def pretrained_cases() -> list[Case]:
    """model.pretrained files of the wrong kind or shape."""
    head = _argv("train", "--config", "tiny.yaml")

    def reshaped(path: Path) -> None:
        state = model_state()
        key = next(k for k, v in state.items() if v.ndim == 4)
        state[key] = state[key][:, :1].clone()
        write(path, torch_bytes(state))

    return [
        Case("train_pretrained_plain_pickle", "train", _argv(head, "model.pretrained=p.pkl", TRAIN), 2,
             names("p.pkl", NOT_STATE_DICT + "|" + UNSAFE), (copy_data, at("p.pkl", plain_pickle))),
        Case("train_pretrained_unsafe_pickle", "train", _argv(head, "model.pretrained=evil.pth", TRAIN), 2,
             names("evil.pth", UNSAFE), (copy_data, at("evil.pth", unsafe_checkpoint))),
        Case("train_pretrained_text_file", "train", _argv(head, "model.pretrained=w.txt", TRAIN), 2,
             names("w.txt", NOT_STATE_DICT + "|" + NOT_CKPT), (copy_data, at("w.txt", text("weights\n")))),
        Case("train_pretrained_tensor_not_a_dict", "train", _argv(head, "model.pretrained=t.pth", TRAIN), 2,
             names("t.pth", NOT_STATE_DICT + r"|mapping|Tensor"),
             (copy_data, at("t.pth", lambda p: write(p, torch_bytes(tensor(3)))))),
        Case("train_pretrained_shape_mismatch_is_named", "train", _argv(head, "model.pretrained=s.pth", TRAIN),
             (0, 2), r"(?i)(shape|size).*\(\d+, \d+, \d+, \d+\).*\(\d+, \d+, \d+, \d+\)",
             (copy_data, at("s.pth", reshaped)), outputs=("run",), trains=True, warns=True),
        Case("train_pretrained_nothing_matches", "train", _argv(head, "model.pretrained=other.pth", TRAIN), 2,
             names("other.pth", r"(no (tensor|key|weight|parameter)|none of|nothing|0 (of|tensors))"),
             (copy_data, at("other.pth", lambda p: write(p, torch_bytes({"fc.weight": tensor(2, 2)}))))),
    ]


def signal_cases() -> list[Case]:
    """Ctrl-C during training (print where the last checkpoint is, exit 130) and a second run into a run
    folder another live run holds."""
    long_run = ("train.iterations=400", "train.iters_per_epoch=2")
    where = r"(?i)(?=.*checkpoint)(?=.*(run/|\.pt|checkpoints))"
    return [
        Case("train_ctrl_c_names_the_last_checkpoint", "train",
             _argv("train", "--config", "tiny.yaml", long_run, TRAIN), 130, where, (copy_data,),
             outputs=("run",), trains=True, subprocess=True, interrupt_when="run/checkpoints/latest.txt",
             timeout=120.0),
        Case("compare_ctrl_c_names_the_last_checkpoint", "compare",
             _argv("compare", "--config", "tiny.yaml", "--refresh-every", "0", long_run, TRAIN), 130, where,
             (copy_data,), outputs=("run",), trains=True, subprocess=True,
             interrupt_when="run/refresh_every_0/checkpoints/latest.txt", timeout=120.0),
        Case("resume_while_another_run_holds_the_folder", "resume",
             _argv("train", "--resume", "--config", "tiny.yaml", TRAIN), 2,
             r"(?i)(lock|another run|in use|pid \d+|running)", (copy_data,), outputs=("run",), trains=True,
             holder=("1", "--config", "tiny.yaml", *TRAIN), keep=("run/checkpoints",), timeout=60.0),
    ]


def synth_cases() -> list[Case]:
    """synth sizes with no sane upper bound."""
    out = ("synth", "--out", "d", "--quiet")
    pre = ("synth", "--preview", "p.png", "--quiet")
    return [
        Case("synth_train_ids_absurd", "synth", _argv(out, "--train-ids", "1000000000"), 2,
             bounded(r"--train-ids\b")),
        Case("synth_height_absurd", "synth", _argv(out, "--height", "1000000"), 2, bounded(r"--height\b")),
        Case("synth_preview_ids_absurd", "synth", _argv(pre, "--ids", "1000000000"), 2, bounded(r"--ids\b")),
        Case("synth_preview_width_absurd", "synth", _argv(pre, "--width", "10000000"), 2, bounded(r"--width\b")),
        Case("synth_cams_absurd", "synth", _argv(out, "--cams", "100000000"), 2, bounded(r"--cams\b")),
        Case("synth_one_camera", "synth", _argv(out, "--cams", "1"), 2, r"(?i)(cams|camera).*2"),
    ]


def labels_cases() -> list[Case]:
    """labels parameters with no sane upper bound."""
    head = ("labels", "--features", "f.npz")
    base = (at("f.npz", dump),)
    return [
        Case("labels_link_k_absurd", "labels", _argv(head, "link_k=1000000000"), 2, r"link_k", base),
        Case("labels_batch_size_absurd_works", "labels", _argv(head, "--batch-size", "1000000000", "--passes", "1",
                                                                "--quiet"), 0, "", base),
        Case("labels_k_not_an_integer", "labels", _argv(head, "k=3.5"), 2, r"(?i)\bk\b.*integer", base),
        Case("labels_param_yaml_mapping", "labels", _argv(head, "k={a: 1}"), 2, r"(?i)\bk\b.*integer", base),
    ]


def all_cases() -> list[Case]:
    cases = (input_cases() + resume_checkpoint_cases() + latest_txt_cases() + foreign_checkpoint_cases()
             + output_cases() + same_input_output_cases() + config_cases() + market_cases() + feature_cases()
             + pretrained_cases() + signal_cases() + synth_cases() + labels_cases())
    return [replace(c, xfail=KNOWN_BUGS.get(c.name, "")) for c in cases]


# ----------------------------------------------------------------------------- the bugs that still break cases
# bug class -> the cases it breaks (marked xfail, strict: once a bug is fixed its cases XPASS and fail the suite
# until they are taken out of this table)
BUGS_BY_CLASS: dict[str, tuple[str, ...]] = {}  # every bug class the suite found is fixed
KNOWN_BUGS: dict[str, str] = {name: bug for bug, names in BUGS_BY_CLASS.items() for name in names}


# ----------------------------------------------------------------------------- comparing trees

def _under(rel: str, patterns: Iterable[str]) -> bool:
    for pattern in patterns:
        if rel == pattern or rel.startswith(pattern.rstrip("/") + "/"):
            return True
        if "*" in pattern and fnmatch.fnmatchcase(rel, pattern):
            return True
    return False


def changes_outside(before: dict[str, str], after: dict[str, str], outputs: Iterable[str],
                    keep: Iterable[str] = ()) -> list[str]:
    """The paths that changed (created, removed, modified) outside ``outputs``, or inside ``keep``; folders
    created on the way to an output are allowed."""
    outputs, keep = tuple(outputs), tuple(keep)
    bad = []
    for rel in sorted(before.keys() | after.keys()):
        if before.get(rel) == after.get(rel):
            continue
        if not _under(rel, keep):
            if _under(rel, outputs):
                continue
            if after.get(rel) == FOLDER and rel not in before and any(o.startswith(rel + "/") for o in outputs):
                continue
        was, now = before.get(rel, "(absent)"), after.get(rel, "(absent)")
        bad.append(f"{rel!r}: {was[:24]} -> {now[:24]}")
    return bad


CASES: list[Case] = []  # filled on first use by cases() (building some needs the tiny trained run)


def cases() -> list[Case]:
    if not CASES:
        CASES.extend(all_cases())
    return CASES

