"""No module of streamlabel imports from a layer above its own (docs/architecture.md, "Layers").

Every ``import`` / ``from ... import`` is checked, at module level and inside functions alike.
Imports within one layer are allowed.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "streamlabel"

# lowest first; a top-level module or package of streamlabel not named here fails the test
LAYERS = [
    {"", "keys", "registry", "config"},  # "" is the package itself (streamlabel.__version__)
    {"banks", "data", "models", "losses", "evaluation"},
    {"methods"},
    {"engine"},
    {"launch", "__main__"},
]

# (importing module, imported module) pairs that break the order, each with its reason
ALLOWED = {
    # the tracking probe measures how a policy's labels follow improving features: it builds a
    # policy (build_policy) and streams features through it, so it sits above methods/
    # (used by benchmarks/tracking.py, benchmarks/hcd_ablation.py,
    # tests/methods/test_hcd_real_data.py)
    ("streamlabel.evaluation.tracking_probe", "streamlabel.methods"),
}


def _layer(module: str) -> int:
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else ""
    for level, names in enumerate(LAYERS):
        if top in names:
            return level
    raise AssertionError(f"{module}: streamlabel.{top} is in no layer of tests/test_layering.py")


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _is_subpackage(name: str) -> bool:
    return (PACKAGE / name).is_dir() or (PACKAGE / f"{name}.py").is_file()


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported streamlabel module, line) of every import in ``path``, relative ones resolved."""
    return _imports_of(path.read_text(encoding="utf-8"), *_module_name(path))


def _imports_of(text: str, name: str, is_package: bool) -> list[tuple[str, int]]:
    """``_imports`` of the source ``text`` of module ``name``."""
    package = name if is_package else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # ``from streamlabel import engine``: the imported name is a subpackage, whose layer counts
            targets = [f"{source}.{alias.name}" if source == "streamlabel" and _is_subpackage(alias.name) else source
                       for alias in node.names]
        else:
            continue
        out += [(t, node.lineno) for t in targets
                if t == "streamlabel" or t.startswith("streamlabel.")]
    return out


def test_no_module_imports_from_a_layer_above():
    problems = []
    used = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        module, _ = _module_name(path)
        for target, line in _imports(path):
            if _layer(target) <= _layer(module):
                continue
            allowed = [(a, b) for a, b in ALLOWED
                       if module == a and (target == b or target.startswith(b + "."))]
            if allowed:
                used.update(allowed)
                continue
            where = path.relative_to(PACKAGE.parent)
            problems.append(f"{where}:{line}: {module} imports {target}")
    assert not problems, "imports from a layer above:\n" + "\n".join(problems)
    assert used == ALLOWED, f"allow-list entries no longer needed: {sorted(ALLOWED - used)}"


def test_an_import_through_the_root_package_is_seen():
    """``from streamlabel import engine`` inside banks/ names the engine layer, not the root package."""
    text = "from streamlabel import engine, __version__\nfrom .. import launch\n"
    found = [t for t, _ in _imports_of(text, "streamlabel.banks.probe", False)]
    assert found == ["streamlabel.engine", "streamlabel", "streamlabel.launch"]
    assert _layer(found[0]) > _layer("streamlabel.banks.probe")


def test_config_imports_no_other_streamlabel_package():
    for path in sorted((PACKAGE / "config").rglob("*.py")):
        for target, line in _imports(path):
            top = target.partition(".")[2].partition(".")[0]
            assert top in ("config", "keys"), f"{path.name}:{line} imports {target}"
