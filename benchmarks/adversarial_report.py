"""Count the generated adversarial cases (issue 28) by command and outcome, for the closing note.

    OMP_NUM_THREADS=1 python benchmarks/adversarial_report.py [--list] [--publish | --out DIR] [pytest args ...]

Runs ``tests/reliability/test_generated_adversarial.py`` with pytest (a JUnit XML report in a temporary
folder), then prints one row per command (train, labels, evaluate, compare, synth, resume) with the cases that
passed, failed as a known bug (xfail), failed, passed although marked as a bug (xpass: remove the mark),
were skipped, and the suite's wall time. ``--list`` also lists the xfail cases with their bug descriptions.
The table is also written as ``adversarial.json`` / ``.md`` with the commit (``--publish``: into
``benchmarks/results/``, what docs/reliability.md quotes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SUITE = "tests/reliability/test_generated_adversarial.py"
OUTCOMES = ("passed", "xfailed", "failed", "xpassed", "skipped")


def outcome(case: ET.Element) -> tuple[str, str]:
    """(outcome, message) of one JUnit testcase element as pytest writes it."""
    for child in case:
        kind, message = child.tag, child.get("message", "")
        if kind == "skipped":
            return ("xfailed" if child.get("type") == "pytest.xfail" else "skipped"), message
        if kind in ("failure", "error"):
            return ("xpassed" if "XPASS(strict)" in message else "failed"), message
    return "passed", ""


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(REPO))
    import argparse

    from benchmarks import report
    from tests.reliability.adversarial_cases import COMMANDS, cases

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="also list the xfail and skipped cases")
    report.add_output_arguments(parser, "adversarial")
    args, extra = parser.parse_known_args(argv)
    listing = args.list
    by_name = {c.name: c for c in cases()}
    with tempfile.TemporaryDirectory() as tmp:
        xml = Path(tmp) / "report.xml"
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pytest", SUITE, "-q", "-p", "no:cacheprovider",
                        f"--junitxml={xml}", *extra], cwd=REPO, env=dict(os.environ, OMP_NUM_THREADS="1"),
                       stdout=subprocess.DEVNULL)
        seconds = time.perf_counter() - start
        tree = ET.parse(xml)
    table: dict[str, Counter] = defaultdict(Counter)
    notes: dict[str, list[str]] = defaultdict(list)
    for element in tree.iter("testcase"):
        name = element.get("name", "")
        if "[" not in name:
            continue
        case = by_name.get(name[name.index("[") + 1 : -1])
        command = case.command if case else "?"
        result, message = outcome(element)
        table[command][result] += 1
        if result != "passed" and case is not None:
            first = message.splitlines()[0][:160] if message else ""
            notes[result].append(f"{case.name}: {case.xfail or first}")
    header = f"| command | cases | {' | '.join(OUTCOMES)} |"
    lines = [header, "|---" * (len(OUTCOMES) + 2) + "|"]
    total: Counter = Counter()
    for command in (*COMMANDS, *sorted(set(table) - set(COMMANDS))):
        row = table.get(command, Counter())
        total.update(row)
        lines.append(f"| {command} | {sum(row.values())} | {' | '.join(str(row[o]) for o in OUTCOMES)} |")
    lines.append(f"| **all** | {sum(total.values())} | {' | '.join(str(total[o]) for o in OUTCOMES)} |")
    lines.append(f"\n{sum(total.values())} generated cases in {seconds:.0f} s (pytest wall time, "
                 f"OMP_NUM_THREADS=1, {os.cpu_count()} CPUs visible)")
    print("\n".join(lines))
    info = report.machine()
    payload = {"commit": report.commit(), "command": report.command_line(), "machine": info, "seconds": seconds,
               "by_command": {c: dict(row) for c, row in table.items()}, "total": dict(total)}
    markdown = (f"# Generated adversarial cases (issue 28)\n\nCommit `{payload['commit']}`, "
                f"`{payload['command']}`, {report.machine_line(info)}.\n\n" + "\n".join(lines) + "\n")
    report.wrote("adversarial_report.py", *report.write(report.output_dir(args), args.name, payload, markdown))
    for result in ("failed", "xpassed") + (("xfailed", "skipped") if listing else ()):
        if notes[result]:
            print(f"\n{result}:")
            for line in sorted(notes[result]):
                print(f"  {line}")
    return 0 if not (total["failed"] or total["xpassed"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
