"""Text from students, made safe for the places the kit writes it to.

File names, notebook code and roster cells are chosen by students. Written
raw into a text report or a terminal, escape sequences can recolour, hide or
rewrite lines; written raw into a CSV, a cell starting with `=` runs as a
formula when the instructor opens the file in a spreadsheet.
"""
from __future__ import annotations

import re

# ANSI/VT escape sequences (CSI, OSC, and two-character escapes), then any other C0/C1 control.
_ESCAPE_SEQUENCE = re.compile(
    r"\x1b\[[0-?]*[ -/]*[@-~]"          # CSI: colours, cursor movement, erasing
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC: window titles, hyperlinks
    r"|\x9b[0-?]*[ -/]*[@-~]"           # 8-bit CSI
    r"|\x1b[@-_]?"                      # any other escape
)
# C0 and C1 controls except tab and newline, and the bidirectional overrides that reorder what a reader sees.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SPELLED_OUT = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# Lone surrogates come from undecodable file names (os.fsdecode); they cannot be written as UTF-8.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
# Spreadsheets (Excel, LibreOffice, Google Sheets) treat a cell starting with one of these as a formula.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r", "\n")
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


def printable(text: object) -> str:
    """`text` without escape sequences and control characters (tab and newline stay), writable as UTF-8."""
    text = _SURROGATE.sub("\ufffd", str(text))
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def visible(text: object, *, limit: int = 200) -> str:
    """A name as reports show it: control characters spelled out (`\\x1b`), so that
    `jdoe\\x1b[2J_ml_ex2.ipynb` does not pass for `jdoe_ml_ex2.ipynb`; one line, at most `limit` characters."""
    text = _SURROGATE.sub("\ufffd", str(text))
    text = _SPELLED_OUT.sub(lambda match: match[0].encode("unicode_escape").decode("ascii"), text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def one_line(text: object, *, limit: int = 300) -> str:
    """printable(text) on one line, shortened to `limit` characters with an ellipsis."""
    flat = " ".join(printable(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def spreadsheet_safe(cell: object) -> str:
    """A CSV cell that a spreadsheet shows as text, never runs: formula starts get a leading `'`.

    Numbers (`-3`, `+1.5`) stay numbers. Control characters are dropped, since
    a spreadsheet shows them as nothing and some tools split rows on them.
    """
    text = "" if cell is None else str(cell)
    if _NUMBER.fullmatch(text):
        return text
    # Checked before and after cleaning: "\t=1+1" must not become " =1+1" and pass.
    cleaned = printable(text)
    if text.lstrip(" ").startswith(_FORMULA_START) or cleaned.lstrip().startswith(_FORMULA_START):
        return "'" + cleaned
    return cleaned
