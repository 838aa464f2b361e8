"""Run `streamproxy inject` in-process and capture what it writes."""

from __future__ import annotations

import contextlib
import io
import sys
from dataclasses import dataclass
from pathlib import Path

from sidecar.k8s.inject import main

TESTDATA = Path(__file__).parent / "testdata"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


def run_inject(*argv: str, stdin: str = "") -> Result:
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:  # argparse errors
                code = int(exc.code or 0)
    finally:
        sys.stdin = saved
    return Result(code, out.getvalue(), err.getvalue())


def case_args(path: Path) -> list[str]:
    """The options of a case: its first line, `# args: ...`."""
    first = path.read_text().splitlines()[0]
    return first.removeprefix("# args:").split() if first.startswith("# args:") else []
