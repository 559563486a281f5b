"""Dollar signs in Markdown: currency stays money, math stays math.

JupyterLab, Notebook 7 and VS Code typeset ``$…$`` and ``$$…$$`` in Markdown as math. A reply
like "Is $5 more than $10?" would then show "5 more than " as an italic formula, and a table whose
header says "$ / 1M in | $ / 1M out" collapses into a paragraph. So before text from a model (or a
user) is shown as Markdown, every ``$`` that does not open or close math is escaped, outside code.

How depends on the renderer. JupyterLab and Notebook 7 turn Markdown into HTML (``\\$`` becomes
``$`` there) and then let MathJax typeset the whole output, which pairs up any two dollars it
finds; MathJax itself reads ``\\$`` in the page as a plain dollar. So for them a dollar is written
``\\\\$`` (Markdown's escaped backslash, then the dollar), which reaches MathJax as ``\\$`` — seen
in a real JupyterLab by ``tests/test_browser_render.py``. VS Code renders math in the Markdown
step itself, where ``\\$`` is the escape: :data:`ESCAPED_DOLLAR` is set to that when the kernel
runs under VS Code (``__vsc_ipynb_file__``).

What counts as math follows pandoc's rule for ``$…$``: the opening ``$`` is followed by a
non-space, the closing one is preceded by a non-space and not followed by a digit. On top of it, a
``$`` followed by a digit is money (``$5``, ``$10.50``, ``US$3``) unless its closing ``$`` comes
before any space (``$2x$``). ``$$…$$``, ``\\(…\\)`` and ``\\[…\\]`` are left alone, and so is
everything inside code spans and fenced code blocks, where a backslash would show.

Our own text (tables, footers, notices) never relies on this: it writes ``&#36;`` (see
:func:`dollars`).
"""

from __future__ import annotations

import re

__all__ = [
    "ESCAPED_DOLLAR",
    "FenceState",
    "block_starts",
    "dollars",
    "protect_currency",
    "quoted",
    "use_escape_for",
]

#: How a dollar that is money is written in Markdown we show (see the module docstring).
ESCAPED_DOLLAR = "\\\\$"


def use_escape_for(vscode: bool) -> None:
    """Pick the escape for the frontend this kernel serves."""
    global ESCAPED_DOLLAR
    ESCAPED_DOLLAR = "\\$" if vscode else "\\\\$"


# A fenced code block (to its closing fence, or to the end while it is still streaming), or an
# inline code span (a run of backticks, up to the same run).
_CODE = re.compile(
    r"^[ \t]{0,3}(?P<fence>`{3,}|~{3,})[^\n]*\n.*?(?:^[ \t]{0,3}(?P=fence)[`~]*[ \t]*$|\Z)"
    r"|(?P<ticks>`+).+?(?P=ticks)",
    re.MULTILINE | re.DOTALL,
)


def dollars(text: str) -> str:
    """Our own text for Markdown or HTML: each ``$`` as ``&#36;``, which no math renderer
    pairs up."""
    return text.replace("$", "&#36;")


def quoted(text: str) -> str:
    """``text`` (a user's words) as a Markdown block quote, its money escaped; ``>`` when empty."""
    return "\n".join(f"> {line}" for line in protect_currency(text).splitlines()) or ">"


def protect_currency(markdown: str) -> str:
    """``markdown`` with every ``$`` that is not math escaped (outside code)."""
    if "$" not in markdown:
        return markdown
    pieces: list[str] = []
    position = 0
    for code in _CODE.finditer(markdown):
        pieces.append(_escape_dollars(markdown[position : code.start()]))
        pieces.append(code.group(0))
        position = code.end()
    pieces.append(_escape_dollars(markdown[position:]))
    return "".join(pieces)


def _escape_dollars(text: str) -> str:
    if "$" not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        char = text[i]
        if char == "\\" and i + 1 < n:
            # An escape (\(, \[, \\, …) stays as written; a dollar the writer escaped is money.
            out.append(ESCAPED_DOLLAR if text[i + 1] == "$" else text[i : i + 2])
            i += 2
            continue
        if char != "$":
            out.append(char)
            i += 1
            continue
        if text.startswith("$$", i):
            close = text.find("$$", i + 2)
            if close == -1:
                out.append("$$")  # display math still arriving: leave it
                i += 2
                continue
            out.append(text[i : close + 2])
            i = close + 2
            continue
        end = _closing_dollar(text, i)
        if end is None:
            out.append(ESCAPED_DOLLAR)
            i += 1
        else:
            out.append(text[i : end + 1])
            i = end + 1
    return "".join(out)


def _closing_dollar(text: str, start: int) -> int | None:
    """Where the math that ``$`` at ``start`` opens ends, or ``None`` when it opens none."""
    after = start + 1
    if after >= len(text) or text[after].isspace() or text[after] == "$":
        return None
    money = text[after].isdigit()
    j = after
    while True:
        j = text.find("$", j)
        if j == -1:
            return None
        between = text[after:j]
        if "\n\n" in between or (money and any(c.isspace() for c in between)):
            return None  # math does not cross paragraphs; money is not math
        if text[j - 1] == "\\":
            j += 1
            continue
        if not text[j - 1].isspace() and not (j + 1 < len(text) and text[j + 1].isdigit()):
            return j
        j += 1


_FENCE_OPEN = re.compile(r"[ \t]{0,3}(`{3,}|~{3,})")
_LIST_ITEM = re.compile(r"[ \t]{0,3}(?:[-*+]|\d{1,9}[.)])(?:[ \t]|$)")
#: The first characters of a line after a blank line that may still belong to the block above
#: (an indented continuation or code, HTML, a link definition, a footnote): no cut there.
_MAY_CONTINUE = frozenset(" \t<[:")


def _closes(line: str, fence: str) -> bool:
    """Whether ``line`` closes a code block opened by ``fence`` (CommonMark: the same character,
    at least as many, nothing after but spaces)."""
    stripped = line.strip()
    return stripped.startswith(fence) and not stripped.strip(fence[0])


class FenceState:
    """Whether Markdown arriving piece by piece is inside a fenced code block, judged line by
    line (at ``\\n``) by :func:`block_starts`' rules; O(1) per character, however long the text
    grows. It only paces live updates, so an exotic line break read differently costs nothing."""

    #: Characters of a line kept to judge it: enough for any fence line a model writes (a
    #: longer line is prose or code, and is judged by its start).
    _KEEP = 256

    def __init__(self) -> None:
        self._line = ""  # the start of the line being written
        self._fence: str | None = None

    @property
    def open(self) -> bool:
        """The text so far ends inside a fenced code block (its opening line complete)."""
        return self._fence is not None

    def feed(self, text: str) -> None:
        while text:
            end = text.find("\n")
            if end < 0:
                if len(self._line) < self._KEEP:
                    self._line += text[: self._KEEP]
                return
            line, text = (self._line + text[:end])[: self._KEEP], text[end + 1 :]
            self._line = ""
            if self._fence is not None:
                if _closes(line, self._fence):
                    self._fence = None
            elif opened := _FENCE_OPEN.match(line):
                self._fence = opened.group(1)


def block_starts(text: str) -> list[int]:
    """Where ``text`` (Markdown as a model writes it) may be cut so that its two halves, rendered
    as two separate outputs, look like the whole rendered once.

    A cut starts a line that follows a blank line, outside fenced code and ``$$`` display math,
    and cannot continue the block above: it is not indented, not HTML or a definition, and not a
    list item right after a list (the two would be one list). A line is only judged once a
    character after its list marker has arrived, so a cut never depends on text still to come.
    Currency escaping (:func:`protect_currency`) never looks across such a cut, so it gives the
    same result on the halves as on the whole."""
    cuts: list[int] = []
    fence: str | None = None
    display_math = False
    open_html = 0
    previous_blank = False
    in_list = False  # the block above is a list (its items, and what is indented under them)
    position = 0
    for line in text.splitlines(keepends=True):
        start, position = position, position + len(line)
        stripped = line.strip()
        if fence is not None:
            if _closes(line, fence):
                fence = None
            previous_blank = False
            continue
        complete = line.endswith("\n") or len(line) >= 12  # enough to tell a list marker
        item = bool(_LIST_ITEM.match(line))
        if previous_blank and stripped:
            if (
                not display_math
                and open_html <= 0
                and complete
                and line[0] not in _MAY_CONTINUE
                and not (item and in_list)
            ):
                cuts.append(start)
            if line[0] not in " \t":
                in_list = item
        elif not previous_blank and item and line[0] not in " \t":
            in_list = True
        opened = _FENCE_OPEN.match(line)
        if opened:
            fence = opened.group(1)
        else:
            display_math ^= line.count("$$") % 2 == 1
            lowered = line.lower()
            open_html += lowered.count("<details") - lowered.count("</details")
        previous_blank = not stripped
    return cuts
