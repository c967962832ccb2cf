"""Loss terms in a real (tiny) training run: they move the weights, and config mistakes are clear errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from streamlabel.engine.checkpoint import load_checkpoint
from streamlabel.launch import train as train_entry
from tests.training.tiny_runs import REPO, tiny_overrides

CONFIG = REPO / "configs" / "dcml_demo.yaml"


def _run(out: Path, synthetic_root: Path, *extra: str) -> tuple[dict, dict]:
    overrides = [*tiny_overrides(out, synthetic_root), "train.iterations=2", *extra]  # 2 warm-up + 2 adaptation
    args = argparse.Namespace(config=CONFIG, overrides=overrides, resume=False, cpu=True, quiet=True)
    results = train_entry.run(args)
    return results, load_checkpoint(out / "checkpoints", fingerprint=None)["model"]


def test_dcml_terms_change_the_weights(tmp_path: Path, synthetic_root: Path) -> None:
    # same seed, data and dcml policy; the only difference is loss.terms (triplet + 0.01 IMS vs none).
    # The triplet also runs on the source batch (real labels, always P x K) so the term is active in
    # every iteration of this 4-iteration run, whatever pseudo labels the tiny target gets.
    # The recipe trains without the hybrid memory loss; both runs switch it on so that "no terms" can train.
    both = "loss.terms.triplet.domains=both"
    memory = "loss.hybrid_memory=true"
    with_terms, weights = _run(tmp_path / "terms", synthetic_root, "policy.eps=0.6", memory, both)
    without, plain = _run(tmp_path / "plain", synthetic_root, "policy.eps=0.6", memory, "loss.terms=null")
    assert with_terms["clusters"] > 0 and "bcubed_f" in with_terms
    # identical first forward pass, then the term adds to the loss and the weights move differently
    assert with_terms["loss_trace"][0] > without["loss_trace"][0]
    assert with_terms["loss_trace"][1:] != without["loss_trace"][1:]
    changed = [k for k, v in weights.items() if v.dtype.is_floating_point and not torch.equal(v, plain[k])]
    assert changed, "loss.terms did not change any weight"


@pytest.mark.parametrize(("override", "hint"), [
    ("loss.terms={tripplet: {weight: 1.0}}", "did you mean 'loss.terms.triplet'"),
    ("loss.terms.ims.margn=0.2", "did you mean 'loss.terms.ims.margin'"),
])
def test_unknown_term_or_parameter_names_the_nearest_key(
    tmp_path: Path, synthetic_root: Path, capsys: pytest.CaptureFixture[str], override: str, hint: str
) -> None:
    code = train_entry.main(["--config", str(CONFIG), "--cpu", "--quiet",
                             *tiny_overrides(tmp_path / "bad", synthetic_root), override])
    assert code == 2
    assert hint in capsys.readouterr().err
