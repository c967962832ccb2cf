"""Evaluations where nothing can be scored: every query pid -1, every gallery pid -1, query identities absent
from the gallery or seen only by the query's own camera. ``evaluate`` exits 2 saying so (before any distance
is computed); training refuses such an ``eval.split`` before it trains, instead of reporting an mAP of 0/0 as
0 or NaN (or failing after all the work).

Each case asserts exit 2, one error line naming the inputs and the cause, no traceback, an unchanged folder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamlabel.evaluation import NothingToScoreError, evaluate_retrieval, unscorable_reason
from tests.reliability import reliability_inputs
from tests.reliability.refusal_checks import refused
from tests.reliability.reliability_inputs import DEMO, MARKET_QUERY, MARKET_TRAIN


@pytest.fixture
def work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _dump(path: Path, pids: list[int], cams: list[int]) -> Path:
    rng = np.random.default_rng(len(pids))
    np.savez(path, feats=rng.random((len(pids), 8), dtype=np.float32) + 0.1, pids=np.array(pids),
             camids=np.array(cams))
    return path


CASES = {
    "every query pid -1": (([-1, -1, -1], [0, 1, 0]), ([1, 2, 3], [1, 0, 1]),
                           r"every one of the 3 query pids is -1 \(junk / unlabelled\), so no query has an "
                           r"identity to find"),
    "every gallery pid -1": (([1, 2], [0, 1]), ([-1, -1, -1], [1, 0, 1]),
                             r"every gallery pid is -1 \(junk / unlabelled\), so no query of the 2 can have a "
                             r"true match"),
    "identities absent or same camera": (([1, 2, -1], [0, 1, 0]), ([1, 5, 6], [0, 1, 1]),
                                         r"no query has a valid match in the gallery \(of the 3 queries, 1 has pid "
                                         r"-1 \(junk\); 1 has an identity absent from the gallery; 1 has only "
                                         r"same-camera matches, which the protocol excludes\)"),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("rerank", [False, True])
def test_evaluate_says_nothing_could_be_scored(work: Path, capsys: pytest.CaptureFixture, case: str,
                                               rerank: bool) -> None:
    """Mutant: no ``unscorable_reason`` check in evaluate_cmd (the accumulator's generic 'no query has a valid
    match' after every distance was computed, naming neither the inputs nor the cause)."""
    (qp, qc), (gp, gc), pattern = CASES[case]
    _dump(work / "q.npz", qp, qc)
    _dump(work / "g.npz", gp, gc)
    args = ["evaluate", "--query", "q.npz", "--gallery", "g.npz", *(["--rerank"] if rerank else [])]
    refused(args, capsys, r"streamlabel evaluate: error: q.npz vs g.npz: nothing could be scored: " + pattern, work)


def test_split_by_camera_without_shared_identities(work: Path, capsys: pytest.CaptureFixture) -> None:
    """One file split by camera whose query camera shares no identity with the others. Mutant: as above."""
    _dump(work / "all.npz", [1, 2, 3, 4], [0, 0, 1, 1])
    refused(["evaluate", "--split-by-camera", "all.npz", "--query-cam", "0"], capsys,
            r"all.npz \(query cam 0\): nothing could be scored: no query has a valid match in the gallery \(of the 2 "
            r"queries, 2 have an identity absent from the gallery\)", work)


def test_library_refuses_before_computing_distances() -> None:
    """``evaluate_retrieval`` raises NothingToScoreError (a ValueError) before the first distance block.
    Mutant: the up-front check removed from ``evaluate_from_distances`` (the blocks are computed first)."""
    feats = np.ones((3, 4), np.float32)
    calls = []

    def blocks():
        calls.append(1)
        yield np.zeros((3, 3), np.float32)

    from streamlabel.evaluation import evaluate_from_distances

    with pytest.raises(NothingToScoreError, match="every one of the 3 query pids is -1"):
        evaluate_from_distances(blocks(), [-1, -1, -1], [0, 0, 0], [1, 2, 3], [1, 1, 1])
    assert calls == []
    with pytest.raises(ValueError, match="nothing could be scored"):
        evaluate_retrieval(feats, [-1, -1, -1], [0, 0, 0], feats, [1, 2, 3], [1, 1, 1])


def test_partly_scorable_is_scored() -> None:
    """One valid query among junk is enough: no error, and the count says how many were scored."""
    assert unscorable_reason([-1, 2], [0, 0], [2, 3], [1, 1]) is None
    feats = np.eye(2, 4, dtype=np.float32) + 0.1
    res = evaluate_retrieval(feats, [-1, 2], [0, 0], feats, [2, 3], [1, 1])
    assert res["num_valid_queries"] == 1 and res["num_queries"] == 2


def _market(root: Path, gallery: list[str]) -> Path:
    """A Market-1501 layout whose gallery is ``gallery`` (the query is the shared one of reliability_inputs)."""
    for folder, names in (("bounding_box_train", MARKET_TRAIN), ("query", MARKET_QUERY),
                          ("bounding_box_test", gallery)):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / folder / name).write_bytes(reliability_inputs.image_bytes())
    return root


TRAIN = ["train", "--config", str(DEMO), "--cpu", "--quiet", "output_dir=run", "model.name=osnet_x0_25",
         "data.source=null", "train.pretrain_iterations=0", "data.height=32", "data.width=16",
         "data.num_instances=2", "train.target_batch=4", "data.num_workers=0", "log.tensorboard=false",
         "train.iterations=2", "train.iters_per_epoch=2", "eval.batch_size=8", "cpu_threads=1", "policy.k=2",
         "policy.link_k=1"]


@pytest.mark.parametrize(("gallery", "pattern"), [
    (["0002_c3s1_000301_01.jpg", "0007_c5s1_001426_03.jpg"],
     r"1 has only same-camera matches, which the protocol excludes"),
    (["0009_c4s1_000301_01.jpg", "-1_c5s1_001426_03.jpg"], r"1 has an identity absent from the gallery"),
])
def test_training_refuses_an_unscorable_eval_split_before_training(
    work: Path, capsys: pytest.CaptureFixture, gallery: list[str], pattern: str
) -> None:
    """The query (pid 2, camera 3) has no gallery match from another camera: training would end with an mAP of
    0/0. Refused after the datasets are read, before any training step or output. Mutant: no
    ``check_evaluable`` in ``Trainer.setup`` (the run trains, then fails in the final evaluation)."""
    _market(work / "m", gallery)
    refused([*TRAIN, "data.target={name: market1501, root: m}"], capsys,
            r"nothing could be scored on eval.split 'target' \(dataset 'market1501'\): no query has a valid match in "
            r"the gallery \(of the 1 queries, " + pattern, work)
    assert not (work / "run").exists()
