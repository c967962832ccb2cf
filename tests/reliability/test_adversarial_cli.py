"""Adversarial command lines: what a newcomer mistypes and what an adversary tries, one case each.

Every case runs ``streamlabel`` in-process in an empty working folder and asserts three things: the exit
code, one stderr line that names the cause (a regular expression), and the files left behind (nothing
half-written, nothing outside where the user asked). Cases that must succeed also check the result.
``docs/reliability.md`` lists every case with its message.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from streamlabel.launch import cli
from tests.reliability.adversarial_cases import clusters as _clusters

REPO = Path(__file__).resolve().parents[2]


def _write(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def good_dump(tmp: Path) -> None:
    _write(tmp / "f.npz", **_clusters())


def scaled_dumps(tmp: Path) -> None:
    data = _clusters()
    _write(tmp / "f.npz", **data)
    _write(tmp / "big.npz", **{**data, "feats": data["feats"].astype(np.float64) * 1e300})
    _write(tmp / "tiny.npz", **{**data, "feats": data["feats"] * np.float32(1e-30)})


def eval_dumps(tmp: Path) -> None:
    data = _clusters(num_ids=6, per_id=4)
    query = {k: v[::4] for k, v in data.items()}
    gallery = {k: v[np.arange(len(v)) % 4 != 0] for k, v in data.items()}
    query["camids"] = np.zeros_like(query["camids"])
    gallery["camids"] = np.ones_like(gallery["camids"])
    _write(tmp / "q.npz", **query)
    _write(tmp / "g.npz", **gallery)
    for name, scale in (("q_big", 1e20), ("g_big", 1e20), ("q_tiny", 1e-20), ("g_tiny", 1e-20)):
        part = query if name.startswith("q") else gallery
        _write(tmp / f"{name}.npz", **{**part, "feats": part["feats"].astype(np.float64) * scale})
    _write(tmp / "g_wide.npz", **{**gallery, "feats": np.ones((len(gallery["pids"]), 8), np.float32)})
    _write(tmp / "q_nopids.npz", feats=query["feats"], camids=query["camids"])


def identical_rows(tmp: Path) -> None:
    _write(tmp / "f.npz", feats=np.ones((40, 8), np.float32), pids=np.arange(40) % 4)


def two_directions(tmp: Path) -> None:
    feats = np.zeros((40, 8), np.float32)
    feats[:20, 0], feats[20:, 1] = 1.0, 1.0
    _write(tmp / "f.npz", feats=feats)


def config_files(tmp: Path) -> None:
    (tmp / "empty.yaml").write_text("")
    (tmp / "comments.yaml").write_text("# nothing but a comment\n")
    (tmp / "scalar_section.yaml").write_text("train: 5\n")
    (tmp / "list_top.yaml").write_text("- train\n- data\n")
    (tmp / "bad_syntax.yaml").write_text("train:\n  iterations: [1, 2\n")
    (tmp / "folder.yaml").mkdir()
    (tmp / "a_file").write_text("not a folder\n")


def old_run(tmp: Path) -> None:
    ckpt = tmp / "run" / "checkpoints"
    ckpt.mkdir(parents=True)
    (ckpt / "adapt_epoch0000.pt").write_bytes(b"an earlier run's checkpoint")


def crafted_checkpoint(tmp: Path) -> None:
    (tmp / "not_a_checkpoint.pt").write_bytes(b"PK\x03\x04 this is not a torch file")
    (tmp / "no_checkpoints").mkdir()


def nothing(tmp: Path) -> None:
    """No inputs: the case is about the command line alone."""


@dataclass
class Case:
    name: str
    argv: list[str]
    code: int
    message: str = ""  # regular expression one stderr line must match
    setup: Callable[[Path], None] = nothing
    created: tuple[str, ...] = ()  # files the command must leave (relative to the working folder)
    check: Callable[[dict, Path], None] | None = None
    marks: tuple = field(default_factory=tuple)


def _same_labels_as_unscaled(result: dict, tmp: Path) -> None:
    scaled = np.load(tmp / "out.npy")
    assert cli.main(["labels", "--features", str(tmp / "f.npz"), "--out", str(tmp / "ref.npy"), "--quiet"]) == 0
    np.testing.assert_array_equal(scaled, np.load(tmp / "ref.npy"))


def _perfect_map(result: dict, tmp: Path) -> None:
    assert result["mAP"] == pytest.approx(1.0)


TRAIN_FAST = ["train.iterations=2", "train.pretrain_iterations=0", "log.tensorboard=false"]

CASES = [
    # ---- labels: input files
    Case("labels_features_is_folder", ["labels", "--features", "."], 2, r"\. is a folder, not a \.npz file"),
    Case("labels_features_missing", ["labels", "--features", "nope.npz"], 2, r"feature file not found: nope\.npz"),
    Case("labels_features_wrong_key", ["labels", "--features", "w.npz"], 2, r"missing key\(s\) feats \(has: x\)",
         setup=lambda t: _write(t / "w.npz", x=np.ones((4, 2)))),
    Case("labels_features_1d", ["labels", "--features", "v.npz"], 2, r"feats must be a real-valued \[N, D\] array",
         setup=lambda t: _write(t / "v.npz", feats=np.ones(8))),
    Case("labels_features_complex", ["labels", "--features", "c.npz"], 2, r"real-valued .* complex",
         setup=lambda t: _write(t / "c.npz", feats=np.ones((4, 2), np.complex64))),
    Case("labels_one_row", ["labels", "--features", "one.npz"], 2, r"need at least 2 feature rows, got 1",
         setup=lambda t: _write(t / "one.npz", feats=np.ones((1, 4), np.float32))),
    Case("labels_camids_short", ["labels", "--features", "s.npz"], 2, r"camids has shape \(3,\), expected \(30,\)",
         setup=lambda t: _write(t / "s.npz", feats=_clusters()["feats"], camids=np.zeros(3, int))),
    Case("labels_pids_float", ["labels", "--features", "p.npz"], 2, r"pids must be integers, got dtype float",
         setup=lambda t: _write(t / "p.npz", feats=_clusters()["feats"], pids=np.zeros(30))),
    Case("labels_nan_row", ["labels", "--features", "n.npz"], 2, r"NaN or infinite values in 1 row\(s\), first row 3",
         setup=lambda t: _write(t / "n.npz", feats=np.where(np.arange(30)[:, None] == 3, np.nan,
                                                            _clusters()["feats"]))),
    Case("labels_zero_row", ["labels", "--features", "z.npz"], 2, r"1 all-zero row\(s\).*first row 0",
         setup=lambda t: _write(t / "z.npz", feats=np.where(np.arange(30)[:, None] == 0, 0.0,
                                                            _clusters()["feats"]))),
    Case("labels_huge_float64_is_fine", ["labels", "--features", "big.npz", "--out", "out.npy", "--quiet"], 0,
         setup=scaled_dumps, created=("out.npy",), check=_same_labels_as_unscaled),
    Case("labels_tiny_rows_are_fine", ["labels", "--features", "tiny.npz", "--out", "out.npy", "--quiet"], 0,
         setup=scaled_dumps, created=("out.npy",), check=_same_labels_as_unscaled),
    Case("labels_identical_rows_warn", ["labels", "--features", "f.npz", "--quiet"], 0,
         r"\[streamlabel\] warning: degenerate features: the 40 rows span only 1 direction\(s\) of 8",
         setup=identical_rows),
    Case("labels_two_directions_warn", ["labels", "--features", "f.npz", "--quiet"], 0,
         r"\[streamlabel\] warning: degenerate features: the 40 rows span only 2 direction\(s\) of 8",
         setup=two_directions),
    # ---- labels: flags and parameters
    Case("labels_out_is_folder", ["labels", "--features", "f.npz", "--out", "."], 2,
         r"--out \. is a folder; give a file name ending in \.npy", setup=good_dump),
    Case("labels_out_no_suffix", ["labels", "--features", "f.npz", "--out", "labels"], 2,
         r"--out labels must end in \.npy", setup=good_dump),
    Case("labels_out_parent_is_file", ["labels", "--features", "f.npz", "--out", "a_file/l.npy"], 2,
         r"a_file is a file, not a folder", setup=lambda t: (good_dump(t), (t / "a_file").write_text("x"))),
    Case("labels_out_new_folder", ["labels", "--features", "f.npz", "--out", "new/dir/l.npy", "--quiet"], 0,
         setup=good_dump, created=("new/dir/l.npy",)),
    Case("labels_level_too_high", ["labels", "--features", "f.npz", "--level", "7"], 2,
         r"--level \(policy 'hcd' has 5 level\(s\)\) must be in \[-5, 4\], got 7", setup=good_dump),
    Case("labels_batch_size_zero", ["labels", "--features", "f.npz", "--batch-size", "0"], 2,
         r"--batch-size must be >= 1, got 0", setup=good_dump),
    Case("labels_passes_negative", ["labels", "--features", "f.npz", "--passes", "-1"], 2,
         r"--passes must be in \[0, 100000\], got -1", setup=good_dump),
    Case("labels_device_not_a_device", ["labels", "--features", "f.npz", "--device", "gpu7"], 2,
         r"--device 'gpu7' is not a torch device", setup=good_dump),
    Case("labels_unknown_policy", ["labels", "--features", "f.npz", "--policy", "hdc"], 2,
         r"unknown policy 'hdc'; did you mean 'hcd'\? \(available: dcml, hcd", setup=good_dump),
    Case("labels_unknown_param", ["labels", "--features", "f.npz", "kk=3"], 2,
         r"unknown key 'kk' in policy 'hcd'; did you mean 'k'\?", setup=good_dump),
    Case("labels_k_zero", ["labels", "--features", "f.npz", "k=0"], 2, r"k must be", setup=good_dump),
    Case("labels_param_not_key_value", ["labels", "--features", "f.npz", "k30"], 2, r"k30.*key=value",
         setup=good_dump),
    Case("labels_param_twice", ["labels", "--features", "f.npz", "k=30", "k=20"], 2,
         r"k is given twice \(k=30 and k=20\); give it once", setup=good_dump),
    Case("labels_out_in_proc", ["labels", "--features", "f.npz", "--out", "/proc/l.npy", "--quiet"], 2,
         r"--out /proc/l\.npy: cannot write in /proc", setup=good_dump,
         marks=(pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc"),)),
    Case("labels_intermixed_params", ["labels", "--features", "f.npz", "k1=5", "--quiet", "eps=0.6",
                                      "--policy", "spcl", "--out", "l.npy"], 0,
         setup=good_dump, created=("l.npy",)),
    # ---- evaluate
    Case("evaluate_checkpoint_is_npz", ["evaluate", "--checkpoint", "f.npz"], 2,
         r"f\.npz is not a streamlabel checkpoint \(a zip archive, but not one written by torch\.save\)",
         setup=good_dump),
    Case("evaluate_query_is_folder", ["evaluate", "--query", ".", "--gallery", "g.npz"], 2,
         r"\. is a folder, not a \.npz file", setup=eval_dumps),
    Case("evaluate_both_inputs", ["evaluate", "--query", "q.npz", "--gallery", "g.npz", "--split-by-camera",
                                  "q.npz"], 2, r"give either --split-by-camera or --query/--gallery, not both",
         setup=eval_dumps),
    Case("evaluate_no_input", ["evaluate"], 2, r"need --query and --gallery, or --split-by-camera FILE"),
    Case("evaluate_rank_zero", ["evaluate", "--query", "q.npz", "--gallery", "g.npz", "--ranks", "0,5"], 2,
         r"--ranks must be integers in \[1, 1,000,000\]", setup=eval_dumps),
    Case("evaluate_rank_text", ["evaluate", "--query", "q.npz", "--gallery", "g.npz", "--ranks", "one"], 2,
         r"--ranks must be comma-separated integers", setup=eval_dumps),
    Case("evaluate_lambda_out_of_range", ["evaluate", "--query", "q.npz", "--gallery", "g.npz", "--rerank",
                                          "--lambda-value", "1.5"], 2, r"--lambda-value must be in \[0\.0, 1\.0\]",
         setup=eval_dumps),
    Case("evaluate_unknown_metric", ["evaluate", "--query", "q.npz", "--gallery", "g.npz", "--metric",
                                     "manhattan"], 2, r"--metric.*invalid choice: 'manhattan'", setup=eval_dumps),
    Case("evaluate_dim_mismatch", ["evaluate", "--query", "q.npz", "--gallery", "g_wide.npz"], 2,
         r"feature dims differ: query 16, gallery 8", setup=eval_dumps),
    Case("evaluate_query_without_pids", ["evaluate", "--query", "q_nopids.npz", "--gallery", "g.npz"], 2,
         r"missing key\(s\) pids", setup=eval_dumps),
    Case("evaluate_query_cam_absent", ["evaluate", "--split-by-camera", "g.npz", "--query-cam", "9"], 2,
         r"--query-cam 9 not in g\.npz \(has 1\)", setup=eval_dumps),
    Case("evaluate_huge_features", ["evaluate", "--query", "q_big.npz", "--gallery", "g_big.npz",
                                    "--metric", "euclidean"], 0, setup=eval_dumps, check=_perfect_map),
    Case("evaluate_tiny_features", ["evaluate", "--query", "q_tiny.npz", "--gallery", "g_tiny.npz"], 0,
         setup=eval_dumps, check=_perfect_map),
    Case("evaluate_checkpoint_garbage", ["evaluate", "--checkpoint", "not_a_checkpoint.pt"], 2,
         r"not_a_checkpoint\.pt", setup=crafted_checkpoint),
    Case("evaluate_checkpoint_empty_folder", ["evaluate", "--checkpoint", "no_checkpoints"], 2,
         r"no checkpoint .*no_checkpoints", setup=crafted_checkpoint),
    Case("evaluate_device_absent", ["evaluate", "--query", "q.npz", "--gallery", "g.npz", "--device", "cuda:7"],
         2, r"--device cuda:7", setup=eval_dumps, marks=(pytest.mark.skipif(
             torch.cuda.device_count() > 7, reason="this machine has a cuda:7"),)),
    # ---- train: configs and output folders (all refused before any work starts)
    Case("train_empty_config", ["train", "--config", "empty.yaml"], 2,
         r"empty\.yaml is empty", setup=config_files),
    Case("train_comment_only_config", ["train", "--config", "comments.yaml"], 2,
         r"comments\.yaml is empty", setup=config_files),
    Case("train_scalar_section", ["train", "--config", "scalar_section.yaml"], 2,
         r"'train' in scalar_section\.yaml must be a mapping, got int 5", setup=config_files),
    Case("train_list_config", ["train", "--config", "list_top.yaml"], 2,
         r"list_top\.yaml must hold a mapping of keys", setup=config_files),
    Case("train_yaml_syntax", ["train", "--config", "bad_syntax.yaml"], 2, r"bad_syntax\.yaml.*line",
         setup=config_files),
    Case("train_config_is_folder", ["train", "--config", "folder.yaml"], 2,
         r"folder\.yaml is a folder, not a config file", setup=config_files),
    Case("train_config_missing", ["train", "--config", "nope.yaml"], 2, r"config file nope\.yaml does not exist"),
    Case("train_output_dir_is_file", ["train", "output_dir=a_file", *TRAIN_FAST], 2,
         r"output_dir a_file is a file, not a folder", setup=config_files),
    Case("train_reuses_run_without_resume", ["train", "output_dir=run", *TRAIN_FAST], 2,
         r"output_dir run already holds checkpoints of an earlier run: pass --resume", setup=old_run,
         created=("run/checkpoints/adapt_epoch0000.pt",)),
    Case("train_dataset_root_missing", ["train", "output_dir=run", "data.source=null", "data.target.name=market1501",
                                        "data.target.root=nowhere", *TRAIN_FAST], 2,
         r"dataset root nowhere does not exist or is not a folder"),  # and no run folder is left behind
    Case("train_override_twice", ["train", "train.iterations=3", "train.iterations=4"], 2,
         r"train\.iterations is given twice"),
    Case("train_inclr_without_parts", ["train", "policy.name=inclr"], 2,
         r"policy inclr \(from command line\) clusters part features but the model returns none"),
    Case("labels_inclr_dump_without_parts", ["labels", "--features", "f.npz", "--policy", "inclr"], 2,
         r"inclr refines global clusters with part clusters \(LGMR\) but got no part features", setup=good_dump),
    Case("train_negative_iterations", ["train", "train.iterations=-5"], 2, r"train\.iterations.*-5"),
    Case("train_unknown_key", ["train", "train.iteratons=5"], 2, r"train\.iteratons.*did you mean.*iterations"),
    Case("train_section_override_scalar", ["train", "data=3"], 2,
         r"'data' in command line must be a mapping, got int 3"),
    Case("train_device_absent", ["train", "device=cuda:7", *TRAIN_FAST], 2,
         r"'device' in command line must be one of auto, cpu, cuda; got 'cuda:7'",
         marks=(pytest.mark.skipif(torch.cuda.device_count() > 7, reason="this machine has a cuda:7"),)),
    Case("train_device_nonsense", ["train", "device=tpu", *TRAIN_FAST], 2,
         r"'device' in command line must be one of auto, cpu, cuda; got 'tpu'"),
    # ---- compare and synth
    Case("compare_negative_interval", ["compare", "--refresh-every", "0,-1"], 2, r"--refresh-every"),
    Case("compare_sets_refresh_every_itself", ["compare", "--refresh-every", "0,1", "policy.refresh_every=2"], 2,
         r"compare sets policy\.refresh_every itself: give the intervals with --refresh-every"),
    Case("compare_interval_text", ["compare", "--refresh-every", "online"], 2, r"--refresh-every"),
    Case("compare_unknown_baseline", ["compare", "--refresh-every", "0", "--baseline", "spc"], 2,
         r"unknown policy 'spc'.*did you mean 'spcl'"),
    Case("compare_out_is_file", ["compare", "--refresh-every", "0", "--out", "a_file"], 2,
         r"--out a_file is a file, not a folder", setup=config_files),
    Case("synth_out_is_file", ["synth", "--out", "a_file"], 2, r"--out a_file is a file, not a folder",
         setup=config_files),
    Case("synth_zero_ids", ["synth", "--out", "d", "--train-ids", "0"], 2, r"--train-ids must be >= 1, got 0"),
    Case("synth_tiny_height", ["synth", "--out", "d", "--height", "0"], 2, r"--height must be >= 8, got 0"),
    Case("synth_preview_not_png", ["synth", "--preview", "grid.txt"], 2, r"--preview grid\.txt must end in \.png"),
]


def _tree(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def _run(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str], dict]:
    import json

    try:
        code = cli.main([*argv, "--json"] if argv[0] in cli.COMMANDS else argv)
    except SystemExit as exit_:  # argparse's own errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    lines = [line for line in out.splitlines() if line.startswith("{")]
    return code, err.splitlines(), (json.loads(lines[-1]) if code == 0 and lines else {})


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=c.marks) for c in CASES])
def test_adversarial_command_line(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    case.setup(tmp_path)
    before = _tree(tmp_path)
    code, err_lines, result = _run(case.argv, capsys)
    assert code == case.code, f"exit {code}, stderr: {err_lines}"
    assert not any("Traceback" in line for line in err_lines), err_lines
    if case.message:
        matching = [line for line in err_lines if re.search(case.message, line)]
        assert matching, f"no stderr line matches {case.message!r}: {err_lines}"
        assert all(len(line) < 600 for line in matching)
    if case.code != 0:
        assert not [line for line in err_lines if line.startswith("streamlabel") and "error" in line][1:], \
            "one error line"
    after = _tree(tmp_path)
    assert after - before == set(case.created) - before, f"files left: {sorted(after - before)}"
    if case.check is not None:
        case.check(result, tmp_path)


def test_the_suite_is_large_enough() -> None:
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


def test_every_case_is_documented() -> None:
    doc = (REPO / "docs" / "reliability.md").read_text()
    missing = [c.name for c in CASES if f"`{c.name}`" not in doc]
    assert not missing, f"run tests/reliability/adversarial_doc.py: {missing}"
