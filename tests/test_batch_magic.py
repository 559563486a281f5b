"""``%%ofox --map NAME`` and ``%ofox batch``, in IPython with the extension loaded, against the
emulator over real HTTP: results to ``-o`` (or ``_ofox_batch``), dry runs, the cost question,
the session's budget, and every mistake as one line."""

from __future__ import annotations

from typing import Any

import pytest
from batch_helpers import chats
from conftest import TEST_KEY
from IPython.core.error import UsageError

from ofox_jupyter import BatchResult
from ofox_jupyter.emulator import Emulator


def test_map_asks_once_per_item_and_stores_the_results(
    ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["cities"] = ["Paris", "Lagos", "Lima"]
    ip.run_cell_magic("ofox", "--map cities -m openai/gpt-4o -t 0.2 --yes", "Capital of {item}?")
    result = ip.user_ns["_ofox_batch"]
    assert isinstance(result, BatchResult) and result.done == 3
    assert [
        f"Capital of {c}?" in r.text for r, c in zip(result, ip.user_ns["cities"], strict=True)
    ] == [True] * 3
    sent = chats(emu)
    assert len(sent) == 3
    assert all(r.body is not None and r.body["temperature"] == 0.2 for r in sent)
    assert all(r.body is not None and r.body["model"] == "openai/gpt-4o" for r in sent)
    out = capsys.readouterr().out
    assert "3 items · 3 answered" in out
    # -o NAME, and a re-run served from the cache
    ip.run_cell_magic(
        "ofox", "--map cities -m openai/gpt-4o -t 0.2 -o capitals", "Capital of {item}?"
    )
    assert ip.user_ns["capitals"].from_cache == 3
    assert len(chats(emu)) == 3


def test_map_with_a_schema_parses_every_reply(ip: Any, emu: Emulator) -> None:
    ip.user_ns["rows"] = [{"name": "a"}, {"name": "b"}]
    ip.user_ns["shape"] = {
        "type": "object",
        "properties": {"ok": {"type": "boolean"}},
        "required": ["ok"],
    }
    ip.run_cell_magic("ofox", "--map rows --schema shape -o checked", "Check {item.name}")
    checked = ip.user_ns["checked"]
    assert [r.value for r in checked] == [{"ok": True}, {"ok": True}]
    body = chats(emu)[0].body
    assert body is not None and body["response_format"]["type"] == "json_schema"


def test_dry_run_sends_nothing(ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]) -> None:
    ip.user_ns["words"] = ["x", "y"]
    ip.run_cell_magic("ofox", "--map words --dry-run", "Define {item}")
    assert chats(emu) == []
    assert "2 requests to send" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("--map nothing_here", "no variable of that name"),
        ("--map words --image last", "does not take --image"),
        ("--map words --vars", "does not take --vars"),
        ("--map words --rpm -5", "rpm must be a positive number"),
        ("--map text", "one str, not a collection"),
    ],
)
def test_mistakes_are_one_line_and_send_nothing(
    ip: Any, emu: Emulator, line: str, says: str
) -> None:
    ip.user_ns["words"] = ["x"]
    ip.user_ns["text"] = "not a list"
    with pytest.raises(UsageError, match=says):
        ip.run_cell_magic("ofox", line, "Define {item}")
    assert chats(emu) == []


def test_above_the_confirm_cost_with_no_one_to_ask_it_is_refused(ip: Any, emu: Emulator) -> None:
    ip.user_ns["words"] = ["x", "y"]
    ip.run_line_magic("config", "OfoxMagics.batch_confirm_cost = 1e-9")
    # pytest's captured stdin cannot be read: no one to ask, as under nbclient
    with pytest.raises(UsageError, match="could cost up to .* no one to ask"):
        ip.run_cell_magic("ofox", "--map words", "Define {item}")
    assert chats(emu) == []
    ip.run_cell_magic("ofox", "--map words --yes", "Define {item}")
    assert len(chats(emu)) == 2


def test_the_sessions_budget_holds_the_batchs_worst_case(ip: Any, emu: Emulator) -> None:
    ip.user_ns["words"] = ["x", "y", "z"]
    ip.run_line_magic("config", "OfoxMagics.max_cost = 0.000001")
    with pytest.raises(UsageError, match="this batch could cost up to"):
        ip.run_cell_magic("ofox", "--map words --yes", "Define {item}")
    assert chats(emu) == []
    ip.run_line_magic("config", "OfoxMagics.max_cost = 1.0")
    ip.run_cell_magic("ofox", "--map words --yes --max-tokens 50", "Define {item}")
    budget = ip.magics_manager.registry["OfoxMagics"].session.budget
    result = ip.user_ns["_ofox_batch"]
    assert budget.reserved == 0
    assert budget.spent == pytest.approx(result.cost)


def test_batch_line_command_shows_and_clears_the_cache(
    ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["words"] = ["x", "y"]
    ip.run_cell_magic("ofox", "--map words --yes", "Define {item}")
    capsys.readouterr()
    ip.run_line_magic("ofox", "batch")
    assert "2 cached batch replies" in capsys.readouterr().out
    ip.run_line_magic("ofox", "batch clear")
    assert "cleared 2 cached batch replies" in capsys.readouterr().out
    with pytest.raises(UsageError, match="usage: %ofox batch"):
        ip.run_line_magic("ofox", "batch everything")
    ip.run_cell_magic("ofox", "--map words --yes", "Define {item}")
    assert len(chats(emu)) == 4  # cleared: asked again


def test_the_key_is_nowhere_in_what_a_batch_shows(
    ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["words"] = ["x", f"{TEST_KEY} [emulator-fault: 400]"]
    ip.run_cell_magic("ofox", "--map words --yes", "Define {item}")
    result = ip.user_ns["_ofox_batch"]
    out = capsys.readouterr()
    assert result[1].error is not None
    shown = out.out + out.err + repr(result) + result._repr_markdown_() + str(result.errors)
    assert TEST_KEY not in shown
    assert all(TEST_KEY not in str(r.body) for r in chats(emu))


@pytest.mark.parametrize("flag", ["--compare a,b", "--context 2", "--code", "--tools f"])
def test_options_a_batch_cannot_honour_are_refused(ip: Any, emu: Emulator, flag: str) -> None:
    ip.user_ns["words"] = ["x"]
    with pytest.raises(UsageError, match=f"--map does not take {flag.split()[0]}"):
        ip.run_cell_magic("ofox", f"--map words {flag}", "Define {item}")
    assert chats(emu) == []


def test_detail_goes_to_every_image(ip: Any, emu: Emulator) -> None:
    from PIL import Image

    ip.user_ns["pictures"] = [Image.new("RGB", (30, 20), "red")]
    ip.run_cell_magic(
        "ofox", "--map pictures --detail low -m openai/gpt-4o --yes", "What is {item}?"
    )
    body = chats(emu)[0].body
    assert body is not None
    parts = body["messages"][-1]["content"]
    assert [p["image_url"]["detail"] for p in parts if p["type"] == "image_url"] == ["low"]


def test_a_batch_counts_in_the_notebooks_usage(
    ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["words"] = ["x", "y", "z"]
    ip.run_cell_magic("ofox", "--map words --yes -m openai/gpt-4o", "Define {item}")
    ip.run_cell_magic("ofox", "--map words --yes -m openai/gpt-4o", "Define {item}")  # cached
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if "openai/gpt-4o" in line)
    tokens = ip.user_ns["_ofox_batch"].tokens
    assert " 3 " in f" {row} "  # three requests: the cached re-run sent nothing
    result = ip.user_ns["_ofox_batch"]
    prompt = sum(r.usage.prompt_tokens for r in result if r.usage)
    assert f"{prompt:,}" in row and tokens > prompt


def test_a_batch_is_recorded_and_replayed_like_any_cell(
    ip: Any, emu: Emulator, tmp_path: Any
) -> None:
    recording = tmp_path / "lesson.ofox-recording.jsonl"
    ip.user_ns["words"] = ["x", "y"]
    ip.run_line_magic("ofox", f"record {recording}")
    ip.run_cell_magic("ofox", "--map words --yes --no-cache -o first", "Define {item}")
    ip.run_line_magic("ofox", "record stop")
    assert len(chats(emu)) == 2
    assert recording.read_text().count("chat/completions") >= 2  # both requests were recorded
    ip.run_line_magic("ofox", f"replay {recording} --fast")
    try:
        ip.run_cell_magic("ofox", "--map words --yes --no-cache -o again", "Define {item}")
    finally:
        ip.run_line_magic("ofox", "replay stop")
    assert len(chats(emu)) == 2  # nothing more reached the emulator
    assert [r.text for r in ip.user_ns["again"]] == [r.text for r in ip.user_ns["first"]]


def test_the_progress_bar_follows_the_display_mode(
    ip: Any, emu: Emulator, capfd: pytest.CaptureFixture[str]
) -> None:
    """Text mode (terminal IPython, or display_mode = "text" in a kernel): tqdm's text line on
    stderr; rich mode: tqdm's widget, nothing on stderr — as a reply follows the mode."""
    ip.user_ns["words"] = ["x", "y"]
    ip.run_cell_magic("ofox", "--map words --yes --no-cache", "Define {item}")
    assert "ofox batch" in capfd.readouterr().err
    ip.run_line_magic("config", 'OfoxMagics.display_mode = "rich"')
    ip.run_cell_magic("ofox", "--map words --yes --no-cache", "Define {item}")
    assert "ofox batch" not in capfd.readouterr().err


def test_a_repeated_item_is_neither_counted_nor_charged_twice(
    ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    ip.user_ns["words"] = ["x", "x", "x"]
    ip.run_line_magic("config", "OfoxMagics.max_cost = 1.0")
    ip.run_cell_magic("ofox", "--map words --yes -m openai/gpt-4o", "Define {item}")
    result = ip.user_ns["_ofox_batch"]
    assert len(chats(emu)) == 1 and result.done == 3
    budget = ip.magics_manager.registry["OfoxMagics"].session.budget
    assert budget.spent == pytest.approx(result[0].cost)  # one request paid, not three
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    row = next(line for line in capsys.readouterr().out.splitlines() if "openai/gpt-4o" in line)
    prompt = result[0].usage.prompt_tokens
    assert f" {prompt:,} " in f" {row} " and f" {3 * prompt:,} " not in f" {row} "
