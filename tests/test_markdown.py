"""Dollar signs: currency shown literally, math still typeset, our own text never math."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.displaypub import CapturingDisplayPublisher

from ofox_jupyter._markdown import FenceState, block_starts, dollars, protect_currency


@pytest.mark.parametrize(
    "text, shown",
    [
        ("Is $5 more than $10?", "Is \\\\$5 more than \\\\$10?"),
        ("US$3 and $10.50", "US\\\\$3 and \\\\$10.50"),
        ("it costs 5$", "it costs 5\\\\$"),
        ("price $5, or $x$ math", "price \\\\$5, or $x$ math"),
        ("Euler: $e^{i\\pi}+1=0$", "Euler: $e^{i\\pi}+1=0$"),
        ("display $$x^2$$ math", "display $$x^2$$ math"),
        ("$2x$ is math", "$2x$ is math"),
        ("\\(x\\) and \\[y\\]", "\\(x\\) and \\[y\\]"),
        ("already \\$5", "already \\\\$5"),
        ("code `$5` stays", "code `$5` stays"),
        ("```python\nprice = '$5'\n```\nthen $5", "```python\nprice = '$5'\n```\nthen \\\\$5"),
        ("```\nstill streaming $5", "```\nstill streaming $5"),
        ("$x\n\nnot $y", "\\\\$x\n\nnot \\\\$y"),
        ("no dollars at all", "no dollars at all"),
    ],
)
def test_currency_is_escaped_and_math_is_kept(text, shown):
    assert protect_currency(text) == shown


def test_our_own_text_uses_an_entity():
    assert dollars("would cost $0.0042") == "would cost &#36;0.0042"


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="$\\`x5 \n", max_size=40))
def test_protecting_only_escapes_dollars(text):
    once = protect_currency(text)
    i = j = 0  # the only change: a dollar (or an escaped one) written as \\$
    while i < len(text):
        if once[j : j + 3] == "\\\\$" and text[i : i + 2] == "\\$":
            i, j = i + 2, j + 3
        elif once[j : j + 3] == "\\\\$" and text[i] == "$":
            i, j = i + 1, j + 3
        elif text[i] == once[j]:
            i, j = i + 1, j + 1
        else:
            raise AssertionError((text, once))
    assert j == len(once)


def test_vscode_gets_the_markdown_escape():
    from ofox_jupyter import _markdown

    _markdown.use_escape_for(vscode=True)
    try:
        assert protect_currency("Is $5 more?") == "Is \\$5 more?"
    finally:
        _markdown.use_escape_for(vscode=False)


def markdown_of(ip, line: str) -> str:
    magics = ip.magics_manager.registry["OfoxMagics"]
    magics.display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        ip.run_line_magic("ofox", line)
    finally:
        ip.display_pub = pub
    return "\n".join(o["data"].get("text/markdown", "") for o in capture.outputs)


def test_models_and_usage_tables_have_no_bare_dollar(ip):
    ip.run_cell_magic("ofox", "", "one")
    ip.run_cell_magic("ofox", "-m openai/gpt-4o", "two")
    for line in ("models", "usage"):
        table = markdown_of(ip, line)
        assert "$" not in table, line
    assert "USD / 1M in" in markdown_of(ip, "models")


def test_a_reply_with_currency_is_escaped_in_the_cell(ip, emu):
    magics = ip.magics_manager.registry["OfoxMagics"]
    magics.display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        ip.run_cell_magic("ofox", "", "Is $5 more than $10? And $x^2$?")
    finally:
        ip.display_pub = pub
    final = capture.outputs[-1]["data"]["text/markdown"]
    assert "\\\\$5 more than \\\\$10" in final and "$x^2$" in final
    footer = final.rsplit("<sub>", 1)[1]
    assert "$" not in footer and "&#36;" in footer


# -- whether streamed text is inside fenced code (paces live updates, see _display)


def fence_open(*pieces: str) -> bool:
    state = FenceState()
    for piece in pieces:
        state.feed(piece)
    return state.open


@pytest.mark.parametrize(
    "text, inside",
    [
        ("Some prose.\n\n", False),
        ("```python\n", True),
        ("```pyth", False),  # the opening line is not complete yet
        ("```python\nx = 1\n\ny = 2\n", True),  # a blank line in code ends nothing
        ("```python\nx = 1\n```\n", False),
        ("```\nx\n``\n", True),  # too short to close
        ("````\nx\n```\nstill\n", True),
        ("````\nx\n`````\n", False),  # at least as long closes
        ("~~~\nx\n```\n", True),  # only the same character closes
        ("```\nx\n```python\n", True),  # a closing fence has nothing after it
        ("text ```\n", False),
        ("```\n" + "x" * 10_000 + "\n```\n", False),
    ],
)
def test_fence_state(text, inside):
    assert fence_open(text) is inside
    assert fence_open(*text) is inside  # one character at a time


_LINES = ["```", "````", "~~~", "```py", "   ```", "prose", "", "x = 1", "``", "~~~~ info"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_LINES), max_size=25), st.data())
def test_fence_state_agrees_with_where_blocks_may_be_cut(lines, data):
    text = "".join(line + "\n" for line in lines)
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)))))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    inside = fence_open(*pieces)
    assert inside is fence_open(text)
    # Inside a fence, a line after a blank line is code: block_starts offers no cut there.
    probe = text + "\nEnd.\n"
    assert (len(probe) - len("End.\n") in block_starts(probe)) is not inside
