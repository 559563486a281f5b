"""What the notebook can hand to a model, and take back from it (pure: no IPython, no I/O).

* :func:`code_blocks` / :func:`code_for_cell`: the fenced code of a reply, as the source of a new
  cell (``%%ofox --code``, ``%ofox code``, ``%ofox fix``);
* :func:`error_report`: the last exception as a model should see it: type, message, the
  traceback trimmed to the user's frames, the failing cell (``%ofox explain``, ``%ofox fix``);
* :func:`describe`: a value of the notebook as text within a budget (``--vars``, ``--context``):
  a DataFrame or Series by its shape, dtypes and first rows, an array by its shape and dtype and
  numpy's own summary, anything else by its bounded ``repr``. pandas and numpy are recognised by
  the value's type, never imported here.
"""

from __future__ import annotations

import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from ._config import scrub

__all__ = [
    "CodeBlock",
    "bounded",
    "code_blocks",
    "code_for_cell",
    "describe",
    "error_report",
    "is_library_file",
    "users_error",
]

# A fenced block at the top level of the reply (not inside a quote or a list): its opening fence,
# info string, body, and the closing fence (or the end of a reply cut short).
_FENCED = re.compile(
    r"^ {0,3}(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n"
    r"(?P<body>.*?)(?:^ {0,3}(?P=fence)[`~]*[ \t]*$|\Z)",
    re.MULTILINE | re.DOTALL,
)
#: Languages whose blocks belong in a Python cell (an unlabelled block is taken to be code too).
_CELL_LANGUAGES = frozenset({"", "python", "py", "python3", "ipython", "ipython3", "jupyter"})
#: Longest source of the failing cell sent, and longest exception message.
CELL_BUDGET = 4_000
MESSAGE_BUDGET = 2_000
#: Longest text one value of the notebook becomes in a prompt.
VALUE_BUDGET = 4_000
#: Rows and columns of a DataFrame preview, and the widest cell shown.
PREVIEW_ROWS = 10
PREVIEW_COLUMNS = 12
PREVIEW_CELL = 40


@dataclass(frozen=True)
class CodeBlock:
    language: str
    code: str


def code_blocks(markdown: str) -> list[CodeBlock]:
    """The fenced code blocks of a reply, in order (empty ones left out)."""
    blocks = []
    for match in _FENCED.finditer(markdown):
        info = match.group("info").strip().split()
        language = info[0].lower() if info else ""
        code = match.group("body").rstrip("\n")
        if code.strip():
            blocks.append(CodeBlock(language, code))
    return blocks


def code_for_cell(blocks: Sequence[CodeBlock]) -> str:
    """The source of a new cell: one block as it is; several joined, each under a comment saying
    which it was. Blocks in another language (shell, SQL, output) become comments too, so the
    cell still runs as Python."""
    if len(blocks) == 1 and blocks[0].language in _CELL_LANGUAGES:
        return blocks[0].code
    parts = []
    for number, block in enumerate(blocks, 1):
        label = f" ({block.language})" if block.language else ""
        if block.language in _CELL_LANGUAGES:
            parts.append(f"# --- block {number}{label} ---\n{block.code}")
        else:
            commented = "\n".join(f"# {line}" if line else "#" for line in block.code.split("\n"))
            parts.append(f"# --- block {number}{label}, not Python ---\n{commented}")
    return "\n\n".join(parts)


def _library_roots() -> tuple[str, ...]:
    paths = sysconfig.get_paths()
    roots = {
        paths[name] for name in ("stdlib", "platstdlib", "purelib", "platlib") if name in paths
    }
    roots.add(sys.prefix)
    return tuple(sorted(roots, key=len, reverse=True))


def is_library_file(filename: str, roots: tuple[str, ...] | None = None) -> bool:
    """Code the user did not write: the standard library and installed packages (by path), and
    frozen or built-in modules."""
    if filename.startswith("<frozen ") or filename in ("<string>", "<built-in>"):
        return True
    return filename.startswith(roots if roots is not None else _library_roots())


def _short_path(filename: str, roots: tuple[str, ...]) -> str:
    """A library file by its place in the library (``json/__init__.py``), not the machine's
    paths, which say nothing to a model and something about the user."""
    for root in roots:
        if filename.startswith(root):
            relative = filename[len(root) :].lstrip("/\\")
            for marker in ("site-packages/", "dist-packages/"):
                relative = relative.split(marker, 1)[-1]
            return relative or filename
    return filename


def bounded(text: str, limit: int) -> str:
    """``text`` cut at ``limit`` characters, with a note saying how much more there was. Any
    live secret is taken out first: cut later, a key could keep its first characters."""
    text = scrub(text)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… (truncated, {len(text) - limit:,} more characters)"


def error_report(
    error: BaseException,
    tb: TracebackType | None,
    cell_name: Callable[[str], str | None],
    cell_source: Callable[[str], str | None],
) -> str:
    """Markdown describing ``error`` for a model.

    ``cell_name(filename)`` names a notebook cell's code (``In[3]``) or returns None for a file;
    ``cell_source(filename)`` gives that cell's source. The traceback keeps the user's frames
    (cells, and files outside the standard library and installed packages) and, after them, only
    the first library frame they called: what is inside a library is its business."""
    frames = traceback.extract_tb(tb) if tb is not None else []
    roots = _library_roots()

    def users(frame: traceback.FrameSummary) -> bool:
        return cell_name(frame.filename) is not None or not is_library_file(frame.filename, roots)

    kept: list[str] = []
    inside = 0  # library frames past the call into the library, not shown
    after_user = False  # the frame before was the user's
    ran: str | None = None  # the cell that was run: the first cell frame (else user frame)

    def note_inside() -> None:
        nonlocal inside
        if inside:
            kept.append(f"  … {inside} library frame{'s' if inside != 1 else ''}")
            inside = 0

    for frame in frames:
        if users(frame):
            note_inside()
            if ran is None or (cell_name(frame.filename) and not cell_name(ran)):
                ran = frame.filename
            after_user = True
        elif after_user:  # the user's call into a library: shown
            after_user = False
        else:  # the kernel running the cell (before), or a library's internals (after)
            inside += ran is not None
            continue
        line = (frame.line or "").strip()
        where = cell_name(frame.filename) or _short_path(frame.filename, roots)
        kept.append(f"  {where}, line {frame.lineno}, in {frame.name}")
        if line:
            kept.append(f"    {line}")
    note_inside()

    name = type(error).__qualname__
    if type(error).__module__ not in ("builtins", "__main__"):
        name = f"{type(error).__module__}.{name}"
    try:
        text = str(error)
    except Exception as err:  # noqa: BLE001 - the user's exception class: any failure is theirs
        text = f"(its message could not be read: {type(err).__name__})"
    message = bounded(text, MESSAGE_BUDGET)
    parts = [f"**{name}**: {message}" if message else f"**{name}**"]
    if kept:
        listing = "\n".join(kept)
        parts.append(f"Traceback (most recent call last), the user's code:\n\n```\n{listing}\n```")
    if isinstance(error, SyntaxError) and error.filename and ran is None:
        where = cell_name(error.filename) or error.filename
        parts.append(f"At {where}, line {error.lineno}: `{(error.text or '').strip()}`")
        ran = error.filename
    source = cell_source(ran) if ran is not None else None
    if source is not None and source.strip():
        label = cell_name(ran or "") or "the failing file"
        body = bounded(source.strip("\n"), CELL_BUDGET)
        parts.append(f"The cell that failed ({label}):\n\n```python\n{body}\n```")
    return "\n\n".join(parts)


def describe(value: object, budget: int = VALUE_BUDGET) -> str:
    """``value`` as text for a prompt, at most ``budget`` characters (and a note of what was cut).

    Raises whatever the value's own methods raise (the caller says whose object failed)."""
    if isinstance(value, str):
        return bounded(value, budget)
    kind = type(value)
    library = kind.__module__.split(".")[0]
    if library == "pandas" and kind.__name__ == "DataFrame":
        text = _frame(value)
    elif library == "pandas" and kind.__name__ == "Series":
        text = _series(value)
    elif library == "numpy" and kind.__name__ == "ndarray":
        shape = "×".join(str(n) for n in getattr(value, "shape", ()))
        # numpy's repr already summarises an array past 1,000 items ("...").
        text = (
            f"numpy array, shape {shape or '()'}, dtype {getattr(value, 'dtype', '?')}:\n{value!r}"
        )
    else:
        text = repr(value)
    return bounded(text if isinstance(text, str) else "", budget)


def _cell(value: object) -> str:
    text = " ".join(scrub(str(value)).split()).replace("|", "\\|")
    return text if len(text) <= PREVIEW_CELL else text[: PREVIEW_CELL - 1] + "…"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _frame(frame: Any) -> str:
    rows, columns = frame.shape
    shown_columns = list(frame.columns[:PREVIEW_COLUMNS])
    dtypes = ", ".join(f"{_cell(name)}: {frame.dtypes[name]}" for name in shown_columns)
    head = frame.iloc[:PREVIEW_ROWS, :PREVIEW_COLUMNS]
    # Row by row with each column's own type (``.values`` would turn a mixed frame's ints into
    # floats).
    table = _table(
        ["", *(_cell(name) for name in shown_columns)],
        [[_cell(cell) for cell in row] for row in head.itertuples(index=True, name=None)],
    )
    parts = [f"pandas DataFrame, {rows:,} rows × {columns:,} columns", f"dtypes: {dtypes}", table]
    cut = []
    if rows > PREVIEW_ROWS:
        cut.append(f"first {PREVIEW_ROWS} of {rows:,} rows")
    if columns > PREVIEW_COLUMNS:
        cut.append(f"first {PREVIEW_COLUMNS} of {columns:,} columns")
    if cut:
        parts.append(f"({' and '.join(cut)} shown)")
    return "\n".join(parts)


def _series(series: Any) -> str:
    head = series.iloc[:PREVIEW_ROWS]
    name = "" if series.name is None else f" {_cell(series.name)}"
    table = _table(
        ["", _cell(series.name) if series.name is not None else "value"],
        [[_cell(index), _cell(v)] for index, v in zip(head.index, head.values, strict=True)],
    )
    parts = [f"pandas Series{name}, {len(series):,} rows, dtype {series.dtype}", table]
    if len(series) > PREVIEW_ROWS:
        parts.append(f"(first {PREVIEW_ROWS} of {len(series):,} rows shown)")
    return "\n".join(parts)


def users_error(error: object, remembered: BaseException | None) -> BaseException | None:
    """The error to explain: ``error`` (the kernel's last one) unless it is a magic's own
    one-line complaint (IPython's ``UsageError``), then the one remembered before it."""
    if not isinstance(error, BaseException):
        return remembered
    if type(error).__name__ == "UsageError" and type(error).__module__.startswith("IPython"):
        return remembered
    return error
