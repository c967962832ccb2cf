"""The per-method recipes: configs/<method>_cuhk03.yaml (the CPU benchmark setting) and <method>_paper.yaml.

Only load_config runs (no dataset, model file or ../shared is read), so these checks are fast anywhere.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from streamlabel.launch.run_config import load_run_config as load_config
from streamlabel.methods import available_policies

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SUFFIXES = ("_cuhk03.yaml", "_paper.yaml")
# the CPU benchmark config itself is the hcd recipe of the CPU setting
ALIASES = {"cpu_cuhk03.yaml": "hcd"}
RECIPES = sorted(p.name for p in CONFIGS.glob("*.yaml") if p.name.endswith(SUFFIXES))


def method_of(name: str) -> str:
    """The policy a recipe file is for: its name without the suffix (cpu_cuhk03.yaml: hcd)."""
    if name in ALIASES:
        return ALIASES[name]
    return next(name[: -len(s)] for s in SUFFIXES if name.endswith(s))


@pytest.mark.parametrize("name", RECIPES)
def test_recipe_loads_and_names_its_policy(name):
    cfg = load_config(CONFIGS / name)
    assert cfg["policy"]["name"] == method_of(name)
    assert method_of(name) in available_policies()
    if cfg["policy"]["name"] != "hcd":  # offline: re-cluster what the paper clusters
        assert cfg["policy"]["refresh_every"] >= 1
        # SpCL's release clusters its momentum-updated instance memory; the others extract afresh
        assert cfg["policy"]["refresh_source"] == ("bank" if cfg["policy"]["name"] == "spcl" else "extract")


@pytest.mark.parametrize("name", [n for n in RECIPES if n.endswith("_cuhk03.yaml") and n not in ALIASES])
def test_cuhk03_recipes_keep_the_cpu_setting(name):
    """Only the method changes: model, data and run length are those of cpu_cuhk03.yaml."""
    base, cfg = load_config(CONFIGS / "cpu_cuhk03.yaml"), load_config(CONFIGS / name)
    assert cfg["model"] == base["model"]
    assert cfg["data"] == base["data"]
    for key in ("iterations", "iters_per_epoch", "source_batch", "target_batch", "pretrain_iterations"):
        assert cfg["train"][key] == base["train"][key], key
    assert cfg["policy"]["momentum"] == base["policy"]["momentum"]


@pytest.mark.parametrize("name", [n for n in RECIPES if n.endswith("_paper.yaml")])
def test_paper_recipes_name_a_backbone_and_weights(name):
    cfg = load_config(CONFIGS / name)
    assert cfg["model"]["name"] in ("resnet50", "resnet50_ibn_a")
    assert cfg["model"]["pretrained"]  # a local file the user provides; only training opens it


def test_every_method_has_both_recipes_and_docs_link_them():
    methods = {method_of(n) for n in RECIPES}
    assert methods == set(available_policies())
    for method in methods:
        assert f"{method}_paper.yaml" in RECIPES
    docs = (ROOT / "docs" / "methods.md").read_text(encoding="utf-8")
    for name in RECIPES:
        assert f"configs/{name}" in docs, name
