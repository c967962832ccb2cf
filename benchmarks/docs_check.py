"""Docs true by construction: every number README.md and docs/ quote beside a results file must be in that file.

A block is a paragraph (lines up to a blank line) or one table row. In every block that cites files of
``benchmarks/results/`` (a link or a path; ``docs/labels_table.md`` stands for its results file) each decimal
number of the prose (not inside backticks, which hold commands and parameter values) must be found in one of
the cited files: written the same way in its markdown, or a number of its JSON that rounds to it, as a
fraction or in percent. The check fails when a cited file is missing, when a number is not in any cited file,
and when a cited file was recorded from a dirty tree (a ``commit`` ending in ``+dirty``).

    python benchmarks/docs_check.py [FILES...]      (default: README.md docs/*.md; exit 1 on a problem)
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
CITE = re.compile(r"benchmarks/results/([\w.-]+?)\.(?:md|json|log)\b|docs/labels_table\.md|\(labels_table\.md\)"
                  r"|(?:docs/)?compare/(?:README\.md)?")
COMPARE = REPO / "docs" / "compare"  # written by `streamlabel compare` (its table, rows and README)
NUMBER = re.compile(r"(?<![\w.])(\d+\.\d+)(?![\w.]*\d)")
CODE = re.compile(r"`[^`]*`")
LINK_TARGET = re.compile(r"\]\([^)]*\)")


def blocks(text: str) -> Iterator[tuple[int, str]]:
    """(first line number, text) of every paragraph and every table row."""
    start, lines = 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("|"):
            if lines:
                yield start, "\n".join(lines)
                lines = []
            yield number, line
        elif line.strip():
            if not lines:
                start = number
            lines.append(line)
        elif lines:
            yield start, "\n".join(lines)
            lines = []
    if lines:
        yield start, "\n".join(lines)


def cited(block: str) -> list[str]:
    """Stems of the results files a block cites."""
    out = []
    for match in CITE.finditer(block):
        if match.group(1):
            out.append(match.group(1))
        else:
            out.append("compare" if "compare" in match.group(0) else "labels_table")
    return list(dict.fromkeys(out))


def numbers_of(value: object) -> Iterator[float]:
    """Every number inside a JSON value."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from numbers_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from numbers_of(item)


def commits_of(value: object) -> Iterator[str]:
    """Every ``commit`` string inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "commit" and isinstance(item, str):
                yield item
            else:
                yield from commits_of(item)
    elif isinstance(value, list):
        for item in value:
            yield from commits_of(item)


class Source:
    """A results file: its markdown text and the numbers of its JSON."""

    def __init__(self, stem: str) -> None:
        self.stem = stem
        texts = [RESULTS / f"{stem}.md", RESULTS / f"{stem}.log"]
        jsons = [RESULTS / f"{stem}.json"]
        if stem == "labels_table":
            texts = [REPO / "docs" / "labels_table.md"]
        elif stem == "compare":
            texts, jsons = sorted(COMPARE.rglob("*.md")), sorted(COMPARE.rglob("*.json"))
        self.exists = any(p.is_file() for p in [*texts, *jsons])
        self.text = "\n".join(p.read_text() for p in texts if p.is_file())
        loaded = [json.loads(p.read_text()) for p in jsons if p.is_file()]
        data = loaded or None
        self.values = sorted(set(numbers_of(data))) if data is not None else []
        self.dirty = sorted({c for c in commits_of(data) if c.endswith("dirty")}) if data is not None else []

    def has(self, token: str) -> bool:
        """Whether the number written as ``token`` is in this file."""
        if re.search(rf"(?<![\d.]){re.escape(token)}(?![\d])", self.text):
            return True
        digits = len(token.split(".")[1])
        x, half = float(token), 0.5 * 10.0 ** -digits + 1e-12
        return any(abs(v - x) <= half or abs(100.0 * v - x) <= half for v in self.values)


def problems(paths: list[Path]) -> list[str]:
    out, sources = [], {}
    for path in paths:
        for line, block in blocks(path.read_text()):
            stems = cited(block)
            if not stems:
                continue
            for stem in stems:
                sources.setdefault(stem, Source(stem))
            where = f"{path.relative_to(REPO) if path.is_relative_to(REPO) else path}:{line}"
            missing = [s for s in stems if not sources[s].exists]
            out += [f"{where}: cites benchmarks/results/{s}, which does not exist" for s in missing]
            out += [f"{where}: cites {s}, recorded from a dirty tree ({', '.join(sources[s].dirty)})"
                    for s in stems if sources[s].dirty]
            prose = LINK_TARGET.sub("]", CODE.sub(" ", block))
            for token in NUMBER.findall(prose):
                if not any(sources[s].has(token) for s in stems if sources[s].exists):
                    out.append(f"{where}: {token} is in none of {', '.join(stems)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="markdown files (default: README.md, docs/*.md)")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.files] or [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    found = problems(paths)
    for line in found:
        print(line)
    print(f"docs_check: {len(found)} problem(s) in {len(paths)} file(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
