"""The notebook around a ``%%ofox`` cell: its last error as a prompt, a reply's code as a new cell.

What the kernel knows is read here (``sys.last_exc``, IPython's cell file names and ``In``); what
is made of it lives in the pure :mod:`._context`. A new cell is the kernel's ``set_next_input``
payload, which JupyterLab, Notebook 7 and VS Code turn into a cell below the current one (not
run), and terminal IPython into the text of the next prompt.
"""

from __future__ import annotations

import linecache
import sys
from typing import TYPE_CHECKING

from ._context import (
    CELL_BUDGET,
    bounded,
    code_blocks,
    code_for_cell,
    describe,
    error_report,
    users_error,
)
from ._exceptions import OfoxError

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

__all__ = [
    "MAX_CONTEXT_CELLS",
    "explain_prompt",
    "fix_prompt",
    "last_error_report",
    "put_code_in_next_cell",
    "raw_inputs",
    "recent_cells",
]

#: The most cells ``--context N`` may add.
MAX_CONTEXT_CELLS = 50

_NO_ERROR = OfoxError(
    "no error yet in this kernel: nothing to explain", hint="run the cell that fails first"
)


def last_error_report(shell: InteractiveShell, remembered: BaseException | None = None) -> str:
    """The last exception of the user's code, described for a model (:func:`error_report`):
    the kernel's last one, unless that was a magic's one-line complaint (then ``remembered``)."""
    latest = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    error = users_error(latest, remembered)
    if error is None:
        raise _NO_ERROR
    tb = error.__traceback__ or getattr(sys, "last_traceback", None)
    numbers: dict[str, int] = getattr(shell.compile, "_filename_map", {})
    history = raw_inputs(shell)

    def cell_name(filename: str) -> str | None:
        number = numbers.get(filename)
        return f"In[{number}]" if number is not None else None

    parsed = shell.user_ns.get("In")

    def cell_source(filename: str) -> str | None:
        """The cell as typed when the history has it; else as compiled (linecache). A cell run
        without being stored (nbval, a frontend's silent request) shares its number with the
        stored one, so the two are compared first."""
        compiled = "".join(linecache.getlines(filename))
        number = numbers.get(filename)
        if (
            number is not None
            and isinstance(history, list)
            and isinstance(parsed, list)
            and 0 <= number < min(len(history), len(parsed))
            and isinstance(history[number], str)
            and str(parsed[number]).rstrip() == compiled.rstrip()
        ):
            return history[number]
        return compiled or None

    return error_report(error, tb, cell_name, cell_source)


def raw_inputs(shell: InteractiveShell) -> list[str] | None:
    """The cells as they were typed, by execution number. ``In`` holds them as IPython turned
    them into Python (``%%ofox`` becomes ``get_ipython().run_cell_magic(…)``), which is not
    what a model should read."""
    history = getattr(shell, "history_manager", None)
    raw = getattr(history, "input_hist_raw", None)
    if isinstance(raw, list):
        return raw
    inputs = shell.user_ns.get("In")
    return inputs if isinstance(inputs, list) else None


def explain_prompt(report: str, question: str) -> str:
    ask = question.strip() or "What went wrong, and how do I fix it?"
    return f"A cell of my Jupyter notebook raised this error. {ask}\n\n{report}"


def fix_prompt(report: str, question: str) -> str:
    extra = f" {question.strip()}" if question.strip() else ""
    return (
        "A cell of my Jupyter notebook raised this error. Reply with the corrected code of the "
        "cell that failed, whole, in one ```python block, then one sentence on what changed."
        f"{extra}\n\n{report}"
    )


def put_code_in_next_cell(shell: InteractiveShell | None, reply: str, out: str | None) -> str:
    """Put the code blocks of ``reply`` in a new cell below (``-o NAME`` holds the code); one
    line says what happened, or that there was no code."""
    blocks = code_blocks(reply)
    if not blocks:
        print("The reply has no code block: no cell was added.")
        return ""
    code = code_for_cell(blocks)
    if shell is None:
        return code
    if out:
        shell.user_ns[out] = code
    shell.set_next_input(code, replace=False)
    lines = code.count("\n") + 1
    what = "1 code block" if len(blocks) == 1 else f"{len(blocks)} code blocks"
    where = "at the next prompt" if _terminal(shell) else "in a new cell below (not run)"
    print(f"{what} ({lines} line{'s' if lines != 1 else ''}) put {where}.")
    return code


def _terminal(shell: InteractiveShell) -> bool:
    return type(shell).__name__ == "TerminalInteractiveShell"


def recent_cells(shell: InteractiveShell, count: int) -> str:
    """``--context N``: the last ``count`` cells run before this one, each with its source and,
    when it had one, its result as text (``Out``; printed output and images are not kept by
    IPython, so they are not sent), each within its budget."""
    if not 1 <= count <= MAX_CONTEXT_CELLS:
        raise OfoxError(f"--context takes 1 to {MAX_CONTEXT_CELLS} cells, not {count}")
    inputs = raw_inputs(shell)
    outputs = shell.user_ns.get("Out")
    if not isinstance(inputs, list) or len(inputs) < 2:
        return ""
    current = len(inputs) - 1  # this cell
    numbers = range(max(1, current - count), current)
    parts = []
    for number in numbers:
        source = inputs[number] if isinstance(inputs[number], str) else ""
        shown = bounded(source.strip("\n"), CELL_BUDGET)
        parts.append(f"In[{number}]:\n```python\n{shown}\n```")
        if isinstance(outputs, dict) and number in outputs:
            try:
                text = describe(outputs[number])
            except Exception as err:  # noqa: BLE001 - the user's object
                text = f"(its result could not be shown: {type(err).__name__})"
            parts.append(f"Out[{number}]:\n```\n{text}\n```")
    if not parts:
        return ""
    what = "cell" if len(numbers) == 1 else f"{len(numbers)} cells"
    return f"The notebook's last {what} before this question:\n\n" + "\n\n".join(parts)
