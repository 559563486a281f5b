"""``%%ofox`` in a real ipykernel, watched from the frontend's side of the wire.

The other magic tests drive an in-process ``InteractiveShell``; these start a real kernel with
jupyter_client and read every iopub message of an execution, as JupyterLab would. That is the only
place where some things can fail: the status ticker runs on its own thread (its updates must carry
the cell's parent header to reach the cell), cell ids come from the execute request's metadata,
and history has to survive a real kernel restart.

Each kernel runs offline (no ``OFOX_API_KEY``/``OFOX_BASE_URL``: the built-in emulator, in the
kernel's own process) with its history in a temporary SQLite file. Times are taken from the
messages' header dates, i.e. when the kernel published them, not when this process read them.
"""

from __future__ import annotations

import json
import os
import queue
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jupyter_client.blocking.client import BlockingKernelClient
from jupyter_client.manager import KernelManager, start_new_kernel

BLANK: dict[str, str] = {}  # what a live output is published with and retired to
LIVE_KEY = "ofox_live"  # metadata of a live output holding reply text
STATUS = re.compile(r"^… \*waiting for (?P<model>[^*]+)\* · (?P<seconds>\d+\.\d) s$")
MAGICS = "get_ipython().magics_manager.registry['OfoxMagics']"
TIMEOUT = 60.0  # seconds for any one execution; a hung kernel fails the test, not the run


@dataclass
class Display:
    """One ``display_data`` or ``update_display_data`` message, reduced to what the tests need."""

    msg_type: str
    data: dict[str, str]
    metadata: dict[str, Any]
    display_id: str | None
    at: float  # when the kernel published it (header date, seconds since the epoch)

    @property
    def markdown(self) -> str:
        return self.data.get("text/markdown", "")

    @property
    def status_seconds(self) -> float | None:
        """The elapsed seconds of a status line (``… *waiting for model* · 1.0 s``); None for
        other output."""
        match = STATUS.match(self.markdown)
        return float(match["seconds"]) if match else None

    @property
    def is_status(self) -> bool:
        return self.status_seconds is not None

    @property
    def payload_bytes(self) -> int:
        return sum(len(value.encode()) for value in self.data.values())


@dataclass
class Execution:
    """Everything the kernel said about one execute request."""

    messages: list[dict[str, Any]]
    reply: dict[str, Any]
    foreign: list[dict[str, Any]] = field(default_factory=list)  # iopub of other parents

    def ok(self) -> Execution:
        content = self.reply["content"]
        assert content["status"] == "ok", f"{content.get('ename')}: {content.get('evalue')}"
        return self

    @property
    def stdout(self) -> str:
        return "".join(
            m["content"]["text"]
            for m in self.messages
            if m["msg_type"] == "stream" and m["content"]["name"] == "stdout"
        )

    @property
    def displays(self) -> list[Display]:
        return [
            Display(
                m["msg_type"],
                m["content"]["data"],
                m["content"].get("metadata", {}),
                m["content"].get("transient", {}).get("display_id"),
                m["header"]["date"].timestamp(),
            )
            for m in self.messages
            if m["msg_type"] in ("display_data", "update_display_data")
        ]

    def saved_outputs(self) -> list[dict[str, Any]]:
        """The outputs a frontend keeps once the cell is done (what JupyterLab and nbclient
        save): display updates applied by display id, ``clear_output(wait=True)`` applied when
        the next output arrives."""
        return self._frontend()[0]

    def most_outputs(self) -> int:
        """The most outputs the cell had at any moment (JupyterLab hides those past 50)."""
        return self._frontend()[1]

    def _frontend(self) -> tuple[list[dict[str, Any]], int]:
        most = 0
        outputs: list[dict[str, Any]] = []
        ids: list[str | None] = []
        clear_next = False
        for m in self.messages:
            kind, content = m["msg_type"], m["content"]
            if kind == "clear_output":
                if content.get("wait"):
                    clear_next = True
                else:
                    outputs, ids = [], []
                continue
            if kind not in ("display_data", "stream", "error", "execute_result"):
                if kind == "update_display_data":
                    target = content.get("transient", {}).get("display_id")
                    for i, display_id in enumerate(ids):
                        if display_id == target:
                            outputs[i] = {
                                "type": outputs[i]["type"],
                                "data": content["data"],
                                "metadata": content["metadata"],
                            }
                continue
            if clear_next:
                outputs, ids, clear_next = [], [], False
            outputs.append(
                {"type": kind, "data": content.get("data"), "metadata": content.get("metadata", {})}
            )
            ids.append(content.get("transient", {}).get("display_id"))
            most = max(most, len(outputs))
        return outputs, most


class Kernel:
    """A real ipykernel and a blocking client, sending execute requests like a frontend."""

    def __init__(self, env: dict[str, str]) -> None:
        self.km: KernelManager
        self.kc: BlockingKernelClient
        self.km, self.kc = start_new_kernel(kernel_name="python3", env=env, startup_timeout=TIMEOUT)

    def execute(self, code: str, cell_id: str | None = None) -> Execution:
        """Run ``code``; a ``cell_id`` goes in ``metadata.cellId``, as JupyterLab sends it."""
        content = {
            "code": code,
            "silent": False,
            "store_history": True,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": True,
        }
        metadata = {"cellId": cell_id} if cell_id is not None else {}
        request = self.kc.session.msg("execute_request", content, metadata=metadata)
        self.kc.shell_channel.send(request)
        msg_id = request["header"]["msg_id"]
        mine: list[dict[str, Any]] = []
        foreign: list[dict[str, Any]] = []
        while True:  # until the kernel goes idle for this request: all its output has been sent
            try:
                message = self.kc.get_iopub_msg(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no idle status within {TIMEOUT} s for {code!r}") from None
            if message["parent_header"].get("msg_id") != msg_id:
                foreign.append(message)
                continue
            mine.append(message)
            if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                break
        while True:
            reply = self.kc.get_shell_msg(timeout=TIMEOUT)
            if reply["parent_header"].get("msg_id") == msg_id:
                return Execution(mine, reply, foreign)

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` in the kernel."""
        run = self.execute(f"import json as _json; print(_json.dumps({expression}))").ok()
        return json.loads(run.stdout)

    def restart(self) -> None:
        self.km.restart_kernel(now=False)
        self.kc.wait_for_ready(timeout=TIMEOUT)

    def shutdown(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=False)


def kernel_env(tmp: Path, notebook: str | None = None) -> dict[str, str]:
    """This process's environment, offline, with a private history and (maybe) a notebook path."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("OFOX_") and name != "JPY_SESSION_NAME"
    }
    env["OFOX_HISTORY_PATH"] = str(tmp / "history.sqlite3")
    if notebook is not None:
        env["JPY_SESSION_NAME"] = notebook
    return env


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Kernel]:
    """One offline kernel with the extension loaded, shared by the tests of this module."""
    kernel = Kernel(kernel_env(tmp_path_factory.mktemp("kernel")))
    try:
        loaded = kernel.execute("%load_ext ofox_jupyter").ok()
        assert "ofox: offline" in loaded.stdout
        yield kernel
    finally:
        kernel.shutdown()


def live_and_final(run: Execution) -> tuple[list[Display], Display]:
    """The live outputs' messages (each published empty, then updated) and the final display."""
    displays = run.displays
    live = [d for d in displays if d.display_id]
    others = [d for d in displays if not d.display_id]
    assert live and live[0].msg_type == "display_data" and live[0].data == BLANK
    assert all(d.data == BLANK for d in live if d.msg_type == "display_data")
    assert len(others) == 1 and others[0].msg_type == "display_data", "one final display_data"
    assert max(d.at for d in live) <= others[0].at
    # What the frontend keeps: the reply, once; the live outputs were cleared.
    assert run.saved_outputs() == [
        {"type": "display_data", "data": others[0].data, "metadata": others[0].metadata}
    ]
    return live, others[0]


def test_streaming_never_stalls_in_a_real_kernel(kernel: Kernel) -> None:
    run = kernel.execute(
        "%%ofox --chat throttle\nStream a long one. [emulator-prose: 3000] [emulator-delay: 0.0005]"
    ).ok()
    reply = kernel.evaluate("_ofox.text")
    turn_id = kernel.evaluate("_ofox.turn.id")
    live, final = live_and_final(run)

    texts = [d for d in live if LIVE_KEY in d.metadata]
    assert texts, "the reply never showed while streaming"
    # Finished blocks are frozen in outputs of their own; past 40, the cell starts again under
    # a line saying how much is above (JupyterLab would hide the outputs past 50).
    assert len({d.display_id for d in texts}) > 40
    assert run.most_outputs() <= 40
    assert any("characters above" in d.markdown for d in live)
    streaming = texts[-1].at - texts[0].at
    assert streaming >= 1.0, f"streamed in {streaming:.2f} s: too fast to test the throttle"
    # A frozen block and the new output after it are one update of the page (sent together).
    moments = [t for i, t in enumerate(d.at for d in texts) if i == 0 or t - texts[i - 1].at > 0.01]
    rate = (len(moments) - 1) / streaming
    assert rate <= 15, f"{len(moments)} updates in {streaming:.2f} s = {rate:.1f}/s"
    gaps = [b - a for a, b in zip(moments, moments[1:], strict=False)]
    assert max(gaps) <= 0.5, f"the reply stalled for {max(gaps):.2f} s"

    # The live outputs, read in order at their "at" offsets, spell the reply as it grew.
    shown = ""
    for d in texts:
        at = d.metadata[LIVE_KEY]["at"]
        assert at <= len(shown), "a live output skipped text"
        shown = shown[:at] + d.markdown.removesuffix(" ▍")
    assert shown == final.markdown[: len(shown)] and len(shown) > 0.9 * len(reply)

    sent = sum(d.payload_bytes for d in run.displays)
    ratio = sent / len(reply.encode())
    assert ratio <= 3, f"{sent:,} display bytes for a {len(reply.encode()):,}-byte reply"

    # The reply, its money escaped (JupyterLab would typeset "$5 … $x" as math), then the footer.
    assert len(reply.split()) > 2000 and "It costs $5 where $x^2$ grows." in reply
    assert final.markdown.startswith(reply.replace("$5", "\\\\$5") + "\n\n<sub>")
    # A long reply's plain copy is shortened: the reply is sent once, not twice.
    plain = final.data["text/plain"]
    assert plain.startswith(reply[:100] + "… (") and len(plain) < 400
    provenance = final.metadata["ofox"]
    assert provenance["chat"] == "throttle" and provenance["turn_id"] == turn_id
    assert provenance["status"] == "complete" and provenance["offline"] is True
    assert provenance["usage"]["completion_tokens"] > 2000
    assert not [m for m in run.foreign if m["msg_type"].endswith("display_data")]


def test_cell_ids_from_the_frontend(kernel: Kernel) -> None:
    def ask(text: str, cell_id: str | None) -> None:
        kernel.execute(f"%%ofox --chat cells\n{text}", cell_id=cell_id).ok()

    def turns() -> list[list[str | None]]:
        return kernel.evaluate(  # type: ignore[no-any-return]
            f"[[t.cell_id, t.user.text] for t in {MAGICS}.session.chats['cells'].turns]"
        )

    ask("first question", "cell-a")
    ask("second question", "cell-b")
    assert turns() == [["cell-a", "first question"], ["cell-b", "second question"]]

    ask("first question, edited", "cell-a")  # re-running a cell replaces its turn in place
    assert turns() == [["cell-a", "first question, edited"], ["cell-b", "second question"]]
    # ... and the re-run sent only the turns before it (none): the emulator counts the turns.
    assert "· turn 1*" in kernel.evaluate("_ofox.text")

    ask("third question", "cell-c")  # a different cell appends
    ask("no cell id", None)  # so does a request without one (nbclient, nbval)
    ask("no cell id", None)
    assert [cell for cell, _ in turns()] == ["cell-a", "cell-b", "cell-c", None, None]

    history = kernel.execute("%ofox history --chat cells").ok().displays[0].data["text/plain"]
    questions = re.findall(r"^\d+\. You: (.*)$", history, re.M)
    assert questions == [
        "first question, edited",
        "second question",
        "third question",
        "no cell id",
        "no cell id",
    ]


def test_status_line_ticks_before_the_first_token(kernel: Kernel) -> None:
    run = kernel.execute("%%ofox --chat slow\nTake your time. [emulator-fault: slow:1.2]").ok()
    live, final = live_and_final(run)
    texts = [i for i, d in enumerate(live) if LIVE_KEY in d.metadata]
    before = live[1 : texts[0]]
    statuses = [s for d in before if (s := d.status_seconds) is not None]
    assert len(statuses) == len(before), "only status lines before the reply"
    # The first status is shown by the magic itself at 0.0 s; later ones come from the ticker
    # thread (every 0.5 s), and they only reach this cell if they carry its parent header.
    assert statuses[0] == 0.0
    ticks = statuses[1:]
    assert ticks, "the ticker's status updates never reached the cell"
    assert ticks[0] >= 0.4 and ticks == sorted(ticks)
    assert live[texts[0]].markdown.startswith("*Offline")  # then the reply took over
    assert "Take your time." in final.markdown
    assert not [m for m in run.foreign if m["msg_type"].endswith("display_data")]


def test_history_survives_a_kernel_restart(tmp_path: Path) -> None:
    kernel = Kernel(kernel_env(tmp_path, notebook=str(tmp_path / "nb.ipynb")))
    try:
        kernel.execute("%load_ext ofox_jupyter").ok()
        kernel.execute("%%ofox\nWhat survives a restart?", cell_id="cell-1").ok()
        before = kernel.evaluate("__import__('os').getpid()")

        kernel.restart()
        assert kernel.evaluate("__import__('os').getpid()") != before  # a new process
        loaded = kernel.execute("%load_ext ofox_jupyter").ok()
        assert "ofox: restored 1 turn of chat main for nb.ipynb" in loaded.stdout
        history = kernel.execute("%ofox history").ok().displays[0].data["text/plain"]
        assert "What survives a restart?" in history

        # The restored turn keeps its cell id: re-running that cell still replaces it.
        kernel.execute("%%ofox\nWhat survives a restart, really?", cell_id="cell-1").ok()
        assert kernel.evaluate(f"[t.user.text for t in {MAGICS}.session.chats['main'].turns]") == [
            "What survives a restart, really?"
        ]
    finally:
        kernel.shutdown()


def test_image_last_picks_up_an_inline_plot(kernel: Kernel) -> None:
    """The inline backend closes a figure once shown; ``--image last`` still sends the plot."""
    plotted = kernel.execute(
        "%matplotlib inline\n"
        "import matplotlib.pyplot as plt\n"
        "plt.plot([0, 1, 2, 3], [0, 1, 4, 9])\n"
        "plt.title('squares');"
    ).ok()
    assert any("image/png" in d.data for d in plotted.displays), "the plot was displayed"
    run = kernel.execute("%%ofox -i last\nWhat does this plot show?").ok()
    saved = run.saved_outputs()
    assert len(saved) == 2, "the thumbnails, then the reply"
    thumbnails = [d for d in run.displays if not d.display_id][0]
    assert thumbnails.data["text/plain"].startswith("[sent 1 image: last (")
    assert '<img src="data:image/jpeg;base64,' in thumbnails.data["text/html"]
    final = run.displays[-1]
    described = re.findall(r"^Image 1: (.*)$", final.markdown, re.M)
    assert described and "looks like a chart" in described[0], final.markdown


def saved_notebook(path: Path, cells: list[tuple[str, str, Execution]]) -> None:
    """Write ``path`` as a frontend saves it: each cell with its id, source and the
    ``display_data`` outputs the kernel really published (their metadata included)."""
    notebook = {
        "cells": [
            {
                "cell_type": "code",
                "id": cell_id,
                "metadata": {},
                "execution_count": None,
                "source": source,
                "outputs": [
                    {"output_type": "display_data", "data": d.data, "metadata": d.metadata}
                    for d in run.displays
                    if d.msg_type == "display_data"
                ],
            }
            for cell_id, source, run in cells
        ],
        "metadata": {},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    path.write_text(json.dumps(notebook), encoding="utf-8")


def test_a_renamed_notebook_finds_its_chats_in_a_new_kernel(tmp_path: Path) -> None:
    """Untitled.ipynb is saved as analysis.ipynb and reopened (a new kernel, a new kernel id):
    the chats are found through the outputs the first kernel published; the next
    Untitled.ipynb starts empty."""
    untitled = tmp_path / "Untitled.ipynb"
    first = Kernel(kernel_env(tmp_path, notebook=str(untitled)))
    try:
        first.execute("%load_ext ofox_jupyter").ok()
        source = "%%ofox\nA question about apples"
        run = first.execute(source, cell_id="cell-apples").ok()
    finally:
        first.shutdown()
    saved_notebook(tmp_path / "analysis.ipynb", [("cell-apples", source, run)])

    second = Kernel(kernel_env(tmp_path, notebook=str(tmp_path / "analysis.ipynb")))
    try:
        loaded = second.execute("%load_ext ofox_jupyter").ok()
        assert "restored 1 turn of chat main for analysis.ipynb" in loaded.stdout
        history = second.execute("%ofox history").ok().displays[0].data["text/plain"]
        assert "A question about apples" in history
    finally:
        second.shutdown()

    untitled.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4}))
    third = Kernel(kernel_env(tmp_path, notebook=str(untitled)))
    try:
        loaded = third.execute("%load_ext ofox_jupyter").ok()
        assert "restored" not in loaded.stdout
        history = third.execute("%ofox history").ok().displays[0].data["text/plain"]
        assert "is empty" in history and "apples" not in history
    finally:
        third.shutdown()


def test_code_and_fixes_go_into_a_new_cell_below(kernel: Kernel) -> None:
    # The kernel's set_next_input payload: JupyterLab, Notebook 7 and VS Code insert a cell
    # below with that source (not run); the browser test sees JupyterLab do it.
    run = kernel.execute(
        "%%ofox --code -o snippet --chat code-out\nWrite:\n\n```python\nprint('hi')\n```"
    ).ok()
    assert {"source": "set_next_input", "text": "print('hi')", "replace": False} in run.reply[
        "content"
    ]["payload"]
    assert "1 code block (1 line) put in a new cell below (not run)." in run.stdout
    assert kernel.evaluate("snippet") == "print('hi')"

    failed = kernel.execute("values = []\ntotal = sum(values) / len(values)")
    assert failed.reply["content"]["status"] == "error"
    run = kernel.execute("%ofox fix --chat code-out").ok()
    (payload,) = run.reply["content"]["payload"]
    assert payload["text"] == "values = []\ntotal = sum(values) / len(values)"
    prompt = kernel.evaluate("_ofox.turn.user.text")
    assert "**ZeroDivisionError**: division by zero" in prompt
    assert "ipykernel" not in prompt and "interactiveshell" not in prompt  # the kernel's frames


LESSON = [
    "%%ofox --chat lesson\nWhat is a data frame?",
    "%%ofox --chat lesson -t 1.2\nAnd at a higher temperature?",
    "%%ofox --chat lesson --max-tokens 8\nShort, please.",
]


def lesson_replies(env: dict[str, str], first: str | None = None) -> list[str]:
    """Run the lesson's cells in a new kernel; the text of each final reply."""
    kernel = Kernel(env)
    try:
        kernel.execute("%load_ext ofox_jupyter").ok()
        if first:
            kernel.execute(first).ok()
        replies = []
        for cell in LESSON:
            run = kernel.execute(cell).ok()
            (final,) = [d for d in run.displays if d.msg_type == "display_data" and d.data]
            replies.append(final.markdown.split("\n\n<sub>")[0])
            replies.append(final.markdown.split("<sub>")[1])  # the footer too
        return replies
    finally:
        kernel.shutdown()


def test_a_recorded_lesson_replays_identically_in_fresh_kernels(tmp_path: Path) -> None:
    tape = tmp_path / "lesson.ofox-recording.jsonl"
    recorded = lesson_replies(kernel_env(tmp_path / "a"), f"%ofox record {tape}")
    # Fresh kernels, fresh history, no emulator to fall back on: the recording alone answers.
    env = kernel_env(tmp_path / "b") | {"OFOX_REPLAY": str(tape)}
    replayed = lesson_replies(env)
    again = lesson_replies(kernel_env(tmp_path / "c") | {"OFOX_REPLAY": str(tape)})
    strip = re.compile(r"\d+\.\d\d s")  # timings
    assert [strip.sub("T", r) for r in replayed] == [strip.sub("T", r) for r in again]
    assert replayed[0::2] == recorded[0::2]  # the same replies, word for word
    assert all(f"replayed from {tape.name}" in footer for footer in replayed[1::2])
    assert len(replayed[4]) < len(replayed[0])  # --max-tokens 8 cut the third reply short
