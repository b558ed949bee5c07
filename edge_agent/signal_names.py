"""Signal names from column headers and config names: what `csvdata` reads historian headers
with and the config checks its signal names with. A module of its own so the running agent's
config does not load the CSV reader (issue 16)."""

from __future__ import annotations

import re
import unicodedata

_SPACE = re.compile(r"\s+")
_TRAILING_GROUP = re.compile(r"\s*(\[[^\[\]]*\]|\([^()]*\))$")


def split_header(header: str) -> tuple[str, str | None]:
    """(signal name, unit or None) of a column header; see `edge_agent.csvdata`'s docstring."""
    name = _SPACE.sub(" ", unicodedata.normalize("NFC", header)).strip()
    unit: str | None = None
    while (m := _TRAILING_GROUP.search(name)) is not None and m.start() > 0:
        name, unit = name[: m.start()].rstrip(), (m[1][1:-1].strip() or None)
    return name, unit


def signal_name(header: str) -> str:
    """The signal a header (or a name given in a config or on the command line) stands for.
    Idempotent: `signal_name(signal_name(x)) == signal_name(x)`."""
    return split_header(header)[0]


def signal_names(text: str | None) -> list[str]:
    """A comma-separated command-line list (`--signals a,Flow Rate [m3/h]`) as signal names."""
    if not text:
        return []
    return [n for n in (signal_name(part) for part in text.split(",")) if n]
