"""The chart's values table, generated from the `# --` comments of values.yaml.

`python -m tests.chart.values_doc` prints the Markdown table that docs/kubernetes.md carries
between its `<!-- values-table -->` markers; `--write` updates the file in place.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "charts" / "streamproxy" / "values.yaml"
DOC = ROOT / "docs" / "kubernetes.md"
BEGIN, END = "<!-- values-table:begin -->", "<!-- values-table:end -->"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?P<rest>.*)$")


def documented_keys(text: str) -> dict[str, str]:
    """Dotted key path -> its `# --` description, in file order."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    comments: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comments.append(stripped.lstrip("#").strip())
            continue
        match = KEY_LINE.match(line)
        if not match:
            comments = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([key for _, key in stack] + [match["key"]])
        stack.append((indent, match["key"]))
        starts = [i for i, text in enumerate(comments) if text.startswith("--")]
        if starts:
            words = " ".join(comments[starts[-1] :]).removeprefix("--").split()
            found[path] = " ".join(words)
        comments = []
    return found


def leaves(values: Any, prefix: str = "") -> list[str]:
    if isinstance(values, dict) and values:
        paths: list[str] = []
        for key, child in values.items():
            paths += leaves(child, f"{prefix}.{key}" if prefix else key)
        return paths
    return [prefix]


def lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        values = values[part]
    return values


def table() -> str:
    text = VALUES.read_text()
    values = yaml.safe_load(text)
    rows = ["| Key | Default | Description |", "|---|---|---|"]
    for path, description in documented_keys(text).items():
        default = json.dumps(lookup(values, path), separators=(", ", ": "))
        default = default.replace("|", "\\|")
        description = description.replace("|", "\\|")
        rows.append(f"| `{path}` | `{default}` | {description} |")
    return "\n".join(rows) + "\n"


def replace_table(doc: str, new_table: str) -> str:
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    return f"{head}{BEGIN}\n{new_table}{END}{tail}"


def main(argv: list[str]) -> int:
    if "--write" in argv:
        DOC.write_text(replace_table(DOC.read_text(), table()))
    else:
        sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
