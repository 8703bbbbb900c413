"""The README's configuration table, generated from the Settings fields (variable name, default, help text) so that
the documented settings cannot drift from the code. `spasm-cds docs` writes it between two marker comments;
`spasm-cds docs --check` and the test suite fail when the README's copy is stale."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..settings import PREFIX, Settings

START = "<!-- settings-table:start -->"
END = "<!-- settings-table:end -->"


def default_text(f: dataclasses.Field) -> str:
    """How the table shows a field's default: the value in backticks, `(empty)`, or `(see meaning)` for a default
    computed where the package is installed (an absolute path), which the help text describes."""
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
        if isinstance(value, Path) and value.is_absolute():
            return "(see meaning)"
    else:
        raise ValueError(f"setting {f.name} has no default")
    text = str(value)
    return f"`{text}`" if text else "(empty)"


def settings_table() -> str:
    """The Markdown table of every setting, in the order Settings declares them."""
    lines = ["| variable | default | meaning |", "|---|---|---|"]
    for f in dataclasses.fields(Settings):
        meaning = " ".join(str(f.metadata.get("help", "")).split()).replace("|", "\\|")
        lines.append(f"| `{PREFIX}{f.name.upper()}` | {default_text(f)} | {meaning} |")
    return "\n".join(lines) + "\n"


def with_settings_table(text: str, name: str = "README.md") -> str:
    """The document with the generated table between the markers (each on a line of its own). ValueError naming
    the document when the markers are missing, repeated or out of order."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise ValueError(f"{name}: needs one {START} line followed by one {END} line around the settings table")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{settings_table()}{END}{tail}"
