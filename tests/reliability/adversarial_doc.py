"""Write the adversarial-command-line table of ``docs/reliability.md`` from the real output of every case.

Run from the repository root: ``OMP_NUM_THREADS=1 python tests/reliability/adversarial_doc.py``. Each case of
``test_adversarial_cli.CASES`` runs in a fresh temporary folder; the table shows its command line, exit code
and the stderr line its test matches (or the first ``[streamlabel]`` warning / error line).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
DOC = HERE.parents[1] / "docs" / "reliability.md"
BEGIN, END = "<!-- adversarial cases: begin -->", "<!-- adversarial cases: end -->"


def _message(case, code: int, lines: list[str]) -> str:
    if case.message:
        matching = [line for line in lines if re.search(case.message, line)]
        if matching:
            return matching[0]
    flagged = [line for line in lines if "error:" in line or "warning:" in line]
    return flagged[0] if flagged else ("(no message; result checked)" if code == 0 else "")


def run_case(case) -> tuple[int, str]:
    """Exit code and message line of one case, run in a fresh temporary working folder."""
    from streamlabel.launch import cli

    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            case.setup(Path(tmp))
            err = io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                try:
                    code = cli.main([*case.argv, "--json"] if case.argv[0] in cli.COMMANDS else case.argv)
                except SystemExit as exit_:
                    code = int(exit_.code or 0)
        finally:
            os.chdir(cwd)
    return code, _message(case, code, err.getvalue().splitlines())


def table(cases) -> str:
    rows = ["| case | command line | exit | message |", "|---|---|---|---|"]
    for case in cases:
        code, message = run_case(case)
        command = " ".join(["streamlabel", *case.argv]).replace("|", "\\|")
        rows.append(f"| `{case.name}` | `{command}` | {code} | `{message.replace('|', '/')}` |")
    return "\n".join(rows)


def main() -> None:
    sys.path.insert(0, str(HERE.parents[1]))  # the checkout, so the tests package imports by path
    from tests.reliability.test_adversarial_cli import CASES

    text = DOC.read_text()
    start, stop = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table(CASES) + "\n" + text[stop:])
    print(f"{len(CASES)} cases -> {DOC}")


if __name__ == "__main__":
    main()
