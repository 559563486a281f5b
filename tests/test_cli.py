"""``ofox-jupyter demo``: the quickstart notebook run end to end in a real kernel, echoed live.

The end-to-end test runs the command as a subprocess on the offline emulator (the root
conftest.py removes any key) and reads its stdout as it arrives, to see the replies come in
pieces; the echo's message handling is also checked on its own with hand-made iopub messages.
"""

from __future__ import annotations

import io
import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from importlib.metadata import entry_points
from pathlib import Path

import nbformat
import pytest

from ofox_jupyter._cli import CURSOR, TerminalEcho, quickstart_notebook
from ofox_jupyter.emulator._server import DELAY_ENV, shared_delay

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "notebooks" / "quickstart.ipynb"
TIMING = re.compile(r"\b\d+\.\d+ s\b")  # as in tests/nbval_sanitize.cfg


def demo_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ofox_jupyter._cli", "demo", *args]


def ofox_cells(notebook: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    """The ``%%ofox`` cells that send something (not the deliberate mistake)."""
    return [
        cell
        for cell in notebook.cells
        if cell.cell_type == "code"
        and cell.source.startswith("%%ofox")
        and "raises-exception" not in cell.metadata.get("tags", [])
    ]


def final_text(cell: nbformat.NotebookNode) -> str:
    text = cell.outputs[-1]["data"]["text/plain"]
    return "".join(text) if isinstance(text, list) else str(text)


# -- end to end


def test_demo_runs_the_quickstart_streaming_replies_to_the_terminal(tmp_path: Path) -> None:
    output = tmp_path / "executed.ipynb"
    stderr_path = tmp_path / "stderr.txt"
    with (
        stderr_path.open("wb") as stderr,
        subprocess.Popen(
            demo_command("--output", str(output)),
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=tmp_path,
        ) as process,
    ):
        assert process.stdout is not None
        reads: list[bytes] = []  # stdout exactly as the reads returned it
        deadline = time.monotonic() + 100
        while chunk := os.read(process.stdout.fileno(), 65536):
            reads.append(chunk)
            assert time.monotonic() < deadline, "the demo takes too long"
        status = process.wait(timeout=30)
    errors = stderr_path.read_text(encoding="utf-8")
    assert status == 0, errors
    assert "Traceback" not in errors
    raw = b"".join(reads)
    stdout = raw.decode("utf-8")

    # The executed notebook: each %%ofox cell holds its final reply, once (the live outputs were
    # cleared), and it says what the committed notebook says, timings aside.
    executed = nbformat.read(output, as_version=4)
    committed = nbformat.read(QUICKSTART, as_version=4)
    cells = ofox_cells(executed)
    assert len(cells) == len(ofox_cells(committed)) >= 7
    for cell, reference in zip(cells, ofox_cells(committed), strict=True):
        assert [o["output_type"] for o in cell.outputs] == ["display_data"]
        assert "ofox" in cell.outputs[0]["metadata"]
        text = final_text(cell)
        assert text.startswith("*Offline emulator · `openai/gpt-4o-mini` · turn ")
        assert text.rstrip().endswith("offline emulator")
        assert TIMING.sub("T s", text) == TIMING.sub("T s", final_text(reference))
        assert text in stdout  # the whole reply and footer reached the terminal
    mistake = [c for c in executed.cells if "raises-exception" in c.metadata.get("tags", [])]
    assert mistake[0].outputs[0]["text"] == "UsageError: temperature must be in [0, 2], not 5\n"
    assert "UsageError: temperature must be in [0, 2], not 5\n" in stdout

    # The terminal: cell sources, then the replies — the first one written in several pieces,
    # so its start had been shown before its footer arrived.
    assert "In [2]: %%ofox\n        What is a Jupyter kernel, in one sentence?\n" in stdout
    start = raw.index(b"> What is a Jupyter kernel, in one sentence?")
    end = raw.index("— openai/gpt-4o-mini · ".encode(), start)  # its footer
    bounds = list(itertools.accumulate(len(chunk) for chunk in reads))
    assert any(start < bound <= end for bound in bounds), "the reply arrived in one piece"
    assert stdout.rstrip().endswith(f"wrote the executed notebook to {output}")


def test_demo_reports_a_missing_notebook_in_one_line(tmp_path: Path) -> None:
    script = shutil.which("ofox-jupyter", path=str(Path(sys.executable).parent))
    assert script is not None, "the ofox-jupyter console script is not installed"
    missing = tmp_path / "nope.ipynb"
    result = subprocess.run(
        [script, "demo", "--notebook", str(missing), "--output", str(tmp_path / "out.ipynb")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"ofox-jupyter demo: notebook not found: {missing}\n"
    assert not (tmp_path / "out.ipynb").exists()


def test_demo_reports_a_file_that_is_not_a_notebook(tmp_path: Path) -> None:
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json", encoding="utf-8")
    result = subprocess.run(
        demo_command("--notebook", str(bad)), capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stderr.startswith(f"ofox-jupyter demo: {bad} is not a valid notebook: ")
    assert result.stderr.count("\n") == 1


def test_demo_reports_a_bad_emulator_delay_before_starting_a_kernel(tmp_path: Path) -> None:
    env = dict(os.environ, **{DELAY_ENV: "fast"})
    result = subprocess.run(
        demo_command("--output", str(tmp_path / "out.ipynb")),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "ofox-jupyter demo: OFOX_EMULATOR_DELAY must be a number of seconds >= 0, not 'fast'\n"
    )


# -- packaging


def test_console_script_is_declared() -> None:
    (script,) = entry_points(group="console_scripts", name="ofox-jupyter")
    assert script.value == "ofox_jupyter._cli:main"


def test_quickstart_is_found_from_the_checkout() -> None:
    text, where = quickstart_notebook()
    assert text == QUICKSTART.read_text(encoding="utf-8")
    # An editable install reads notebooks/ itself; a wheel's copy is only named.
    assert where in (str(QUICKSTART), "quickstart.ipynb")


# -- the echo, message by message


def display(
    data: dict[str, str], display_id: str | None = None, metadata: dict | None = None
) -> dict[str, object]:
    content: dict[str, object] = {"data": data, "metadata": metadata or {}}
    if display_id:
        content["transient"] = {"display_id": display_id}
    return {"msg_type": "display_data", "content": content}


def update(text: str, display_id: str = "live", at: int | None = None) -> dict[str, object]:
    """A live output's update; ``at``: where its reply text starts (LiveReply's LIVE_KEY)."""
    content = {
        "data": {"text/markdown": text} if text else {},
        "metadata": {} if at is None else {"ofox_live": {"at": at}},
        "transient": {"display_id": display_id},
    }
    return {"msg_type": "update_display_data", "content": content}


class Writes:
    """A terminal that remembers each write separately."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_echo_prints_only_what_each_update_adds() -> None:
    out = Writes()
    echo = TerminalEcho(out)  # type: ignore[arg-type]
    echo.message(display({}, "thumbs"))  # a live output, published empty
    thumbs = update("[sent 1 image]", "thumbs")
    thumbs["content"]["data"] = {"text/html": "<img>", "text/plain": "[sent 1 image]"}  # type: ignore[index]
    thumbs["content"]["metadata"] = {"ofox_live": {"images": True}}  # type: ignore[index]
    echo.message(thumbs)  # the thumbnails, printed before the reply, as in the cell
    echo.message(display({}, "live"))
    echo.message(update("… *waiting for openai/gpt-4o-mini* · 0.0 s"))  # the status line
    echo.message(update("Hello" + CURSOR, at=0))
    echo.message(update("Hello, wor" + CURSOR, at=0))
    # A finished block is frozen in its output; the rest goes on in a new one.
    echo.message(update("Hello, world.\n\n", at=0))
    echo.message(display({}, "live-2"))
    echo.message(update("Bye" + CURSOR, "live-2", at=15))
    # The cell starts again under a note (too many outputs): the note is not reply text, and
    # what was printed is not printed twice.
    echo.message(display({}, "note"))
    echo.message(update("*… 15 characters above*", "note"))
    echo.message(display({}, "live-3"))
    echo.message(update("Bye" + CURSOR, "live-3", at=15))
    echo.message(update("Bye for now" + CURSOR, "live-3", at=15))
    # The live outputs are cleared; the thumbnails and the final reply are published.
    echo.message(display({"text/plain": "[sent 1 image]"}))
    final = "Hello, world.\n\nBye for now!\n\n— footer"
    echo.message(display({"text/markdown": "…", "text/plain": final}, metadata={"ofox": {}}))
    assert out.writes == [
        "[sent 1 image]\n",
        "Hello",
        ", wor",
        "ld.\n\n",
        "Bye",
        " for now",
        "!\n\n— footer\n",
    ]


def test_echo_shows_streams_results_errors_and_skips_blanks() -> None:
    out = io.StringIO()
    echo = TerminalEcho(out)
    echo.message({"msg_type": "stream", "content": {"name": "stdout", "text": "printed\n"}})
    echo.message(display({"text/plain": ""}))
    echo.message({"msg_type": "execute_result", "content": {"data": {"text/plain": "42"}}})
    echo.message({"msg_type": "error", "content": {"ename": "ValueError", "evalue": "bad"}})
    echo.message({"msg_type": "status", "content": {"execution_state": "idle"}})
    assert out.getvalue() == "printed\n42\nValueError: bad\n"


def test_echo_prints_a_reply_that_never_streamed_in_full() -> None:
    out = io.StringIO()
    echo = TerminalEcho(out)
    echo.message(display({"text/plain": ""}, "live"))
    echo.message(update(""))  # --no-stream: no growing text, just the final reply
    echo.message(display({"text/plain": "Whole reply\n\n— footer"}))
    assert out.getvalue() == "Whole reply\n\n— footer\n"


# -- OFOX_EMULATOR_DELAY


@pytest.mark.parametrize(("value", "delay"), [(None, 0.0), ("", 0.0), ("0.02", 0.02), (" 1 ", 1.0)])
def test_shared_delay_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, delay: float
) -> None:
    if value is None:
        monkeypatch.delenv(DELAY_ENV, raising=False)
    else:
        monkeypatch.setenv(DELAY_ENV, value)
    assert shared_delay() == delay


@pytest.mark.parametrize("value", ["fast", "-0.1", "nan", "inf"])
def test_shared_delay_rejects_nonsense(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(DELAY_ENV, value)
    with pytest.raises(ValueError, match=f"OFOX_EMULATOR_DELAY must be .* not '{value}'"):
        shared_delay()
