"""Comparisons run in a cell: ``%ofox compare "prompt" -m a,b`` and ``%%ofox --compare a,b``.

The result is a plain output (readable without the kernel, compared by nbval), each column is a
turn of the ``compare`` chat, and a re-run cell replaces its columns' turns.
"""

from __future__ import annotations

import json

import pytest
from helpers import RecordingPublisher as Recorder
from IPython.core.error import UsageError

from ofox_jupyter._compare import Column, columns_from, grid_markdown
from ofox_jupyter._exceptions import OfoxError


@pytest.fixture
def rich(ip):
    magics = ip.magics_manager.registry["OfoxMagics"]
    magics.display_mode = "rich"
    saved = ip.display_pub
    ip.display_pub = recorder = Recorder()
    try:
        yield recorder
    finally:
        ip.display_pub = saved
        magics.display_mode = "auto"


def session(ip):
    return ip.magics_manager.registry["OfoxMagics"].session


LINE = (
    '%ofox compare "Is $5 a lot? [emulator-words: 12]" -m openai/gpt-4o,anthropic/claude-sonnet-4.5'
)


def test_line_form_leaves_one_plain_output_and_records_each_column(ip, emu, rich):
    result = ip.run_cell(LINE, cell_id="cell-1")
    assert result.error_in_exec is None, result.error_in_exec
    # The live view was published empty, updated while the columns streamed, then cleared.
    assert rich.messages[0]["data"] == {} and not rich.messages[0]["update"]
    assert any(m.get("update") and "ofox-compare-grid" in str(m["data"]) for m in rich.messages)
    assert {"clear": True} in rich.messages
    [final] = rich.outputs
    markdown = final["data"]["text/markdown"]
    assert markdown.count('<div style="flex:1 1 240px') == 2
    assert "**openai/gpt-4o**" in markdown and "**anthropic/claude-sonnet-4.5**" in markdown
    assert "Is \\\\$5 a lot?" in markdown and "&#36;" in markdown  # money, never math
    assert "=== openai/gpt-4o ===" in final["data"]["text/plain"]
    meta = final["metadata"]["ofox"]
    assert meta["chat"] == "compare" and len(meta["turn_ids"]) == 2

    turns = session(ip).chats["compare"].turns
    assert [(t.model, t.cell_id) for t in turns] == [
        ("openai/gpt-4o", "cell-1#0"),
        ("anthropic/claude-sonnet-4.5", "cell-1#1"),
    ]
    assert [t.id for t in turns] == meta["turn_ids"]
    bodies = [r.body for r in emu.requests if r.path.endswith("/chat/completions")][-2:]
    assert [len(b["messages"]) for b in bodies] == [1, 1]  # each column asked afresh

    # Run again (Run All): the same cell's columns are replaced, not added.
    ip.run_cell(LINE, cell_id="cell-1")
    assert len(session(ip).chats["compare"].turns) == 2
    assert ip.user_ns["_ofox_compare"]["openai/gpt-4o"].startswith("*Offline emulator")


def test_cell_form_compares_temperatures(ip, emu, rich):
    ip.run_cell("%%ofox --compare 0,0.7,1.5 --max-tokens 50 -o poems\nWrite a poem.")
    bodies = [r.body for r in emu.requests if r.path.endswith("/chat/completions")][-3:]
    assert [b["temperature"] for b in bodies] == [0, 0.7, 1.5]
    assert all(b["max_tokens"] == 50 for b in bodies)  # the cell's other options apply to all
    assert list(ip.user_ns["poems"]) == [
        "openai/gpt-4o-mini · t=0",
        "openai/gpt-4o-mini · t=0.7",
        "openai/gpt-4o-mini · t=1.5",
    ]
    assert len(session(ip).chats["compare"].turns) == 3
    assert "main" not in session(ip).chats


def test_cell_form_with_a_chat_of_its_own(ip, emu, rich):
    ip.run_cell("%%ofox --compare openai/gpt-4o,google/gemini-2.5-flash,0 --chat lesson1\nHello")
    turns = session(ip).chats["lesson1"].turns
    assert [t.model for t in turns] == ["openai/gpt-4o", "google/gemini-2.5-flash"]
    bodies = [r.body for r in emu.requests if r.path.endswith("/chat/completions")][-2:]
    assert [b["temperature"] for b in bodies] == [0, 0]  # every model at every temperature
    with pytest.raises(UsageError, match="at least two columns"):
        ip.run_cell_magic("ofox", "--compare openai/gpt-4o,0", "one model at one temperature")


@pytest.mark.parametrize(
    "line, message",
    [
        ('compare "one column" -m openai/gpt-4o', "at least two columns"),
        ('compare "hot" -t 0,5', "temperature must be in"),
        ('compare "x" -t warm', "-t takes numbers"),
        ('compare "x" -m a,b --chat " "', "--chat needs a name"),
        ("compare --chat x", "usage: %ofox compare"),
    ],
)
def test_bad_comparisons_are_one_line(ip, line, message):
    with pytest.raises(UsageError, match=message):
        ip.run_line_magic("ofox", line)


def test_a_failing_column_is_shown_and_the_others_go_on(ip, emu, rich):
    ip.run_cell(
        '%ofox compare "Hi [emulator-fault: status:400]" -m openai/gpt-4o,openai/gpt-4o-mini'
    )
    [final] = rich.outputs
    assert final["data"]["text/markdown"].count("*(no reply)*") == 2


def test_columns_from():
    assert columns_from(["a", "b"], "d") == [Column("a"), Column("b")]
    assert columns_from(["0", " 1.5 "], "d") == [Column("d", 0.0), Column("d", 1.5)]
    assert columns_from(["a", "0", "1"], "d") == [Column("a", 0.0), Column("a", 1.0)]
    with pytest.raises(OfoxError):
        columns_from(["a", ""], "d")
    with pytest.raises(OfoxError):
        columns_from(["a", "0"], "d")


def test_a_column_cannot_break_out_of_the_grid():
    markdown = grid_markdown(
        ["a", "b"], ["</div></div><b>escaped</b>", "```python\nstill open"], ["", ""]
    )
    assert "</div></div><b>" not in markdown
    assert "still open\n```\n\n</div>" in markdown  # the open fence is closed in its column
    assert json.dumps(markdown).count("</div>") == 3  # two columns and the grid
