"""The widgets and the streaming magic in a real browser: JupyterLab driven by headless Chromium.

Everything else tests the kernel's side of the wire; this is the one place where the frontend's
side is checked as a person sees it: the reply of a ``%%ofox`` cell visibly growing, the chat
widget's Send, its Stop clicked while a reply streams (which only works if the kernel stays
responsive: the click is a comm message that must be handled mid-stream), Enter and Shift+Enter
typed into its box, its width (no horizontal scrollbar), and the comparison widget streaming its
columns at once.

The test starts its own JupyterLab (``tests/browser_helpers.py``) on a copy of
``notebooks/widgets.ipynb``, offline (the kernel's built-in emulator, paced by
``OFOX_EMULATOR_DELAY`` so that streaming takes seconds) and opens the notebook in Debian's
Chromium through playwright's sync API. Each step saves a screenshot under
``test-output/browser/`` (git-ignored; the paths are printed as they are written).

Without Chromium (or playwright, or JupyterLab) the test skips on a developer's machine and fails
in CI (``CI=true``), where a skip would quietly drop the only browser check.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from browser_helpers import (
    CHROMIUM_ARGS,
    IN_CI,
    JupyterLab,
    NotebookPage,
    Screenshots,
    chromium_fixture,  # noqa: F401 - a fixture
    fresh_output,
    screenshot_on_failure,
    screenshots_fixture,  # noqa: F401 - a fixture
    shots_fixture,  # noqa: F401 - a fixture
)

if not IN_CI:  # in CI a missing package fails the import below instead
    for _module, _what in (("playwright.sync_api", "playwright"), ("jupyterlab", "jupyterlab")):
        pytest.importorskip(_module, reason=f"{_what} is not installed: pip install -e '.[test]'")

from playwright.sync_api import (  # noqa: E402
    BrowserContext,
    ConsoleMessage,
    Error,
    Locator,
    expect,
    sync_playwright,
)

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "widgets.ipynb"
OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "browser"

#: Seconds between streamed chunks of the kernel's emulator: 120 words take about 4 s, so a 100 ms
#: poll sees the reply at many lengths, and a 400-word reply is still streaming when Stop is hit.
EMULATOR_DELAY = "0.03"
#: Generous, for a slow CI machine; each wait ends as soon as its condition holds.
TIMEOUT = 45.0
POLL = 0.1  # seconds between two looks at a growing output

#: The emulator's filler words (``[emulator-words: N]``), counted to see how far a reply got.
FILLER = re.compile(
    r"\b(alpha|bravo|charlie|delta|echo|foxtrot|golf|hotel|india|juliett|kilo|lima|mike|november"
    r"|oscar|papa|quebec|romeo|sierra|tango|uniform|victor|whiskey|xray|yankee|zulu)\b"
)
STOPPED_MARK = "■ stopped — partial reply kept"
#: What ends a reply while it is still arriving (``ofox_jupyter._display.CURSOR``, without the
#: space that the page's rendering may drop).
CURSOR = "▍"


def filler_words(text: str) -> int:
    return len(FILLER.findall(text))


# -- fixtures


@pytest.fixture(scope="module")
def output_dir() -> Path:
    """``test-output/browser/``, emptied first so that every screenshot there is from this run."""
    return fresh_output(OUTPUT)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, output_dir: Path) -> Iterator[JupyterLab]:
    """JupyterLab serving a folder that holds a copy of the widgets notebook."""
    home = tmp_path_factory.mktemp("lab")
    root = home / "notebooks"
    root.mkdir()
    shutil.copy(NOTEBOOK, root / NOTEBOOK.name)
    server = JupyterLab(
        root, home, output_dir / "jupyterlab.log", {"OFOX_EMULATOR_DELAY": EMULATOR_DELAY}
    )
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser(
    chromium: str, tmp_path_factory: pytest.TempPathFactory, output_dir: Path
) -> Iterator[BrowserContext]:
    """Headless Debian Chromium with a fresh profile, driven by playwright."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            context.set_default_timeout(TIMEOUT * 1000)
            yield context
        finally:
            context.close()


@pytest.fixture(scope="module")
def notebook(
    chromium: str,
    lab: JupyterLab,
    browser: BrowserContext,
    output_dir: Path,
    screenshots: Screenshots,
) -> Iterator[NotebookPage]:
    """The widgets notebook open in JupyterLab, outputs cleared, the extension loaded."""
    page = browser.pages[0] if browser.pages else browser.new_page()
    console = (output_dir / "console.log").open("w", encoding="utf-8")

    # The page's own messages and errors, kept next to the screenshots for whoever debugs a
    # failure.
    def log_message(message: ConsoleMessage) -> None:
        console.write(f"[{message.type}] {message.text}\n")

    def log_error(error: Error) -> None:
        console.write(f"[pageerror] {error}\n")

    page.on("console", log_message)
    page.on("pageerror", log_error)
    try:
        with screenshot_on_failure(screenshots, page, "setup"):
            page.goto(lab.url(f"lab/tree/{NOTEBOOK.name}"))
            nb = NotebookPage(page, TIMEOUT)
            nb.wait_until_ready()
            # The committed notebook holds the outputs of an earlier run; clearing them makes
            # every output on the page one of this run, and the execution counts start from 1.
            nb.clear_all_outputs()
            load = nb.code_cell("%load_ext ofox_jupyter")
            nb.run_and_wait(load)
            expect(load.locator(".jp-Cell-outputArea")).to_contain_text("ofox: offline")
        yield nb
    finally:
        console.close()


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` every POLL seconds until it holds, or fail saying ``what`` was awaited."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(POLL)


# -- the steps


def test_reply_grows_in_the_page(notebook: NotebookPage, shots: Screenshots) -> None:
    """A long ``%%ofox`` reply is seen at several lengths while it streams, then in full."""
    page = notebook.page
    with screenshot_on_failure(shots, page, "reply"):
        cell = notebook.code_cell("how a Jupyter widget talks to its kernel")
        count = notebook.run(cell)
        started = time.monotonic()
        growing: list[tuple[float, str]] = []  # (seconds since Shift+Enter, output text)
        midway = False
        while True:
            prompt, text = notebook.state(cell)
            if prompt == f"[{count}]:":
                final = text
                break
            at = time.monotonic() - started
            assert at < TIMEOUT, f"the cell still runs after {TIMEOUT:.0f} s: {text[-200:]!r}"
            # The reply while it streams ends with the cursor; the status line before it and the
            # final reply (published a moment before the cell's run is over) do not.
            if "Offline emulator" in text and CURSOR in text:
                growing.append((at, text))
                if not midway and filler_words(text) >= 30:
                    shots.save(page, "reply-streaming", cell)
                    midway = True
            time.sleep(POLL)
        shots.save(page, "reply-final", cell)

    lengths = [len(text) for _, text in growing]
    assert len(set(lengths)) >= 3, f"the reply was seen at only these lengths: {lengths}"
    seen_for = growing[-1][0] - growing[0][0]
    assert seen_for >= 0.5, f"the reply grew for only {seen_for:.2f} s"
    words = [filler_words(text) for _, text in growing]
    assert words == sorted(words), f"the reply shrank while streaming: {words}"

    assert "You said:" in final and "how a Jupyter widget talks to its kernel" in final
    assert filler_words(final) == 120, final
    assert "offline emulator" in final and "tokens" in final, "the footer is missing"
    assert CURSOR not in final, "the streaming cursor was left behind"


#: Records, in the page, every change of a cell's outputs: when (``performance.now()``, ms), how
#: much text they hold, how many outputs there are, and whether JupyterLab hid some of them.
WATCH_OUTPUTS = """area => {
    const seen = [];
    const look = () => seen.push([
        performance.now(),
        area.textContent.length,
        area.querySelectorAll(':scope .jp-OutputArea-child').length,
        area.querySelector('.jp-TrimmedOutputs') !== null,
    ]);
    new MutationObserver(look).observe(area, {subtree: true, childList: true, characterData: true});
    window.__ofoxSeen = seen;
}"""


def test_a_long_reply_never_stalls_in_the_page(notebook: NotebookPage, shots: Screenshots) -> None:
    """A 40k-character reply grows visibly at least every half second, never shows more outputs
    than JupyterLab keeps (50), and ends as one output holding it all."""
    page = notebook.page
    with screenshot_on_failure(shots, page, "long-reply"):
        # A new code cell below the first %%ofox cell (the notebook ends in a Markdown cell).
        above = notebook.code_cell("how a Jupyter widget talks to its kernel")
        above.locator(".jp-InputArea-editor .cm-content").click()
        page.keyboard.press("Escape")  # command mode
        page.keyboard.press("b")  # a code cell below
        page.locator(".jp-Notebook .jp-Cell.jp-mod-active .cm-content").click()
        page.keyboard.type(
            "%%ofox --chat long\nA long answer. [emulator-prose: 6000] [emulator-delay: 0.003]"
        )
        cell = notebook.code_cell("A long answer.")
        area = cell.locator(".jp-Cell-outputArea")
        area.evaluate(WATCH_OUTPUTS)
        count = notebook.run(cell)
        wait_until(lambda: CURSOR in notebook.state(cell)[1], "the reply to start")
        time.sleep(4)
        shots.save(page, "long-reply-streaming", cell)
        notebook.wait_finished(cell, count, timeout=180)
        shots.save(page, "long-reply-final", cell)
        seen = page.evaluate("window.__ofoxSeen")
        final_outputs = area.locator(".jp-OutputArea-child").count()
        text = notebook.state(cell)[1]

    (OUTPUT / "long-reply-seen.json").write_text(json.dumps(seen))
    # While it streams: from the first text to the final render (the text then jumps to the
    # whole reply, in one output).
    whole = seen[-1][1]
    end = next(i for i, s in enumerate(seen) if s[1] >= 0.9 * whole)
    streaming = [s for s in seen[:end] if s[1] > 0]
    assert len(streaming) > 50, f"only {len(streaming)} changes seen while streaming"
    times = [s[0] / 1000 for s in streaming]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert times[-1] - times[0] > 5, "the reply streamed too fast to tell"
    # The kernel sends an update at least every 0.45 s; the page renders Markdown on its own
    # schedule, so a change is seen up to a frame or two later.
    assert max(gaps) <= 0.55, f"the reply stalled for {max(gaps):.2f} s in the page"
    assert max(s[2] for s in seen) <= 41 and not any(s[3] for s in seen), "outputs were hidden"
    assert final_outputs == 1, "the reply, once"
    assert CURSOR not in text and "tokens" in text and "It costs $5" in text


def open_chat(notebook: NotebookPage) -> Locator:
    """Run the ``%ofox chat`` cell and return its live widget."""
    cell = notebook.code_cell("%ofox chat")
    notebook.run_and_wait(cell)
    chat = cell.locator(".ofox-chat")
    expect(chat).to_be_visible()
    expect(chat.locator("button.ofox-send")).to_be_enabled()
    expect(chat.locator("button.ofox-stop")).to_be_disabled()  # nothing to stop yet
    return chat


def messages(chat: Locator) -> Locator:
    """The chat log's messages, one output each; the log starts with the chat's history."""
    return chat.locator(".ofox-chat-log .jp-OutputArea-output")


def input_box(chat: Locator) -> Locator:
    """The chat's input box (a textarea: Enter sends, Shift+Enter starts a new line)."""
    return chat.locator(".ofox-chat-input textarea")


def send(chat: Locator, message: str) -> int:
    """Type ``message`` into the chat's input and click Send; returns the reply's log index."""
    index = messages(chat).count() + 1  # after the user's message
    box = input_box(chat)
    box.click()
    box.fill(message)
    chat.locator("button.ofox-send").click()
    return index


def show_latest(chat: Locator) -> None:
    """Scroll the chat log to its end, as a person would to read the newest message."""
    chat.locator(".ofox-chat-log").evaluate("log => { log.scrollTop = log.scrollHeight; }")


def test_chat_widget_sends_and_shows_the_reply(notebook: NotebookPage, shots: Screenshots) -> None:
    page = notebook.page
    with screenshot_on_failure(shots, page, "chat"):
        chat = open_chat(notebook)
        index = send(chat, "Hello from a real browser!")
        footer = chat.locator(".ofox-chat-footer")
        expect(messages(chat)).to_have_count(index + 1)
        expect(messages(chat).nth(index - 1)).to_contain_text("Hello from a real browser!")
        reply = messages(chat).nth(index)
        # The emulator's reply restates the message, after its "Offline emulator" heading.
        expect(reply).to_contain_text(
            re.compile(r"Offline emulator[\s\S]*You said:[\s\S]*Hello from a real browser!")
        )
        expect(footer).to_contain_text("tokens")  # the usage footer, once the reply is done
        expect(footer).to_contain_text("offline emulator")
        expect(footer).not_to_contain_text("streaming")
        expect(chat.locator("button.ofox-stop")).to_be_disabled()
        expect(chat.locator("button.ofox-send")).to_be_enabled()
        show_latest(chat)
        shots.save(page, "chat-reply", chat)
    assert CURSOR not in reply.inner_text(), "the streaming cursor was left behind"


def test_chat_widget_stop_keeps_the_partial_reply(
    notebook: NotebookPage, shots: Screenshots
) -> None:
    page = notebook.page
    with screenshot_on_failure(shots, page, "stop"):
        chat = open_chat(notebook)
        footer = chat.locator(".ofox-chat-footer")
        stop = chat.locator("button.ofox-stop")

        index = send(chat, "Tell me everything, slowly. [emulator-words: 400]")
        reply = messages(chat).nth(index)
        expect(stop).to_be_enabled()
        expect(footer).to_contain_text("streaming")
        # Let a good part of the reply arrive (400 words take about 12 s), then stop it.
        wait_until(lambda: filler_words(reply.inner_text()) >= 40, "40 words of the reply")
        show_latest(chat)
        shots.save(page, "chat-streaming", chat)
        before = filler_words(reply.inner_text())
        stop.click()

        expect(reply).to_contain_text(STOPPED_MARK)
        expect(footer).not_to_contain_text("streaming")  # and says "stopped" nowhere twice
        expect(chat.get_by_text(STOPPED_MARK)).to_have_count(1)
        expect(stop).to_be_disabled()
        expect(chat.locator("button.ofox-send")).to_be_enabled()
        kept = reply.inner_text()
        # A second look, a second later (some 30 chunks' worth): the reply no longer grows.
        time.sleep(1.0)
        later = reply.inner_text()
        show_latest(chat)
        shots.save(page, "chat-stopped", chat)

    assert later == kept, "the reply kept growing after Stop"
    assert messages(chat).count() == index + 1, "a message was added after the stopped reply"
    words = filler_words(kept)
    assert before <= words < 400, f"{words} words kept ({before} seen before Stop)"
    assert "You said:" in kept and "Tell me everything, slowly." in kept, kept
    assert kept.rstrip().endswith(STOPPED_MARK), kept[-200:]
    assert CURSOR not in kept, "the streaming cursor was left behind"


def test_chat_widget_enter_sends_and_shift_enter_starts_a_new_line(
    notebook: NotebookPage, shots: Screenshots
) -> None:
    """Typed as a person types: Shift+Enter is a newline in the box (and neither sends nor runs
    the cell), Enter sends the message and empties the box, and the reply arrives."""
    page = notebook.page
    with screenshot_on_failure(shots, page, "enter"):
        chat = open_chat(notebook)
        cell = notebook.code_cell("%ofox chat")
        prompt = notebook.state(cell)[0]
        box = input_box(chat)
        expect(box).to_have_attribute("placeholder", re.compile("Enter to send"))
        before = messages(chat).count()
        box.click()
        page.keyboard.type("First line,")
        page.keyboard.press("Shift+Enter")
        page.keyboard.type("second line.")
        expect(box).to_have_value("First line,\nsecond line.")
        shots.save(page, "chat-shift-enter", chat)
        time.sleep(1.0)  # anything sent would be in the log by now
        assert messages(chat).count() == before, "Shift+Enter sent the message"
        assert notebook.state(cell)[0] == prompt, "Shift+Enter in the box ran the cell"
        expect(chat.locator(".ofox-chat-footer")).not_to_contain_text("streaming")

        page.keyboard.press("Enter")
        expect(box).to_have_value("")
        index = before + 1
        expect(messages(chat)).to_have_count(index + 1)
        expect(messages(chat).nth(index - 1)).to_contain_text("First line,")
        expect(messages(chat).nth(index - 1)).to_contain_text("second line.")
        reply = messages(chat).nth(index)
        expect(reply).to_contain_text(re.compile(r"You said:[\s\S]*First line,[\s\S]*second"))
        expect(chat.locator(".ofox-chat-footer")).to_contain_text("tokens")
        expect(chat.locator("button.ofox-send")).to_be_enabled()
        assert notebook.state(cell)[0] == prompt, "Enter in the box ran the cell"
        show_latest(chat)
        shots.save(page, "chat-enter-sent", chat)


#: Widths in the page of the chat panel and of what it holds (read in one go, so they agree).
MEASURE_PANEL = """panel => {
    const outer = panel.getBoundingClientRect();
    const box = panel.querySelector('.ofox-chat-input textarea').getBoundingClientRect();
    const area = panel.closest('.jp-OutputArea-output');
    return {
        scrollWidth: panel.scrollWidth, clientWidth: panel.clientWidth,
        areaScroll: area.scrollWidth, areaClient: area.clientWidth,
        left: box.left - outer.left, right: outer.right - box.right, width: outer.width,
    };
}"""


def test_chat_widget_fits_its_width(notebook: NotebookPage, shots: Screenshots) -> None:
    """At JupyterLab's default width (the browser's 1280 px), and in a narrower window, nothing
    in the panel is wider than the panel (no horizontal scrollbar), and the input box spans
    it."""
    page = notebook.page
    viewport = page.viewport_size
    assert viewport is not None
    seen: dict[str, dict[str, float]] = {}
    with screenshot_on_failure(shots, page, "width"):
        chat = open_chat(notebook)
        send(chat, "A message to fill the log.")
        expect(chat.locator(".ofox-chat-footer")).to_contain_text("tokens")
        seen["default"] = chat.evaluate(MEASURE_PANEL)
        shots.save(page, "chat-width", chat)
        try:
            page.set_viewport_size({"width": 800, "height": viewport["height"]})
            wait_until(
                lambda: chat.evaluate(MEASURE_PANEL)["width"] < seen["default"]["width"] - 300,
                "the panel to follow the narrower window",
            )
            seen["narrow"] = chat.evaluate(MEASURE_PANEL)
            shots.save(page, "chat-width-narrow", chat)
        finally:
            page.set_viewport_size(viewport)
    for sizes in seen.values():
        assert sizes["scrollWidth"] <= sizes["clientWidth"], seen
        assert sizes["areaScroll"] <= sizes["areaClient"], seen
        assert 0 <= sizes["left"] <= 8 and 0 <= sizes["right"] <= 8, seen  # the box spans it


def test_compare_widget_streams_the_columns_at_once(
    notebook: NotebookPage, shots: Screenshots
) -> None:
    page = notebook.page
    with screenshot_on_failure(shots, page, "compare"):
        cell = notebook.code_cell("%ofox compare")
        notebook.run_and_wait(cell)
        compare = cell.locator(".ofox-compare")
        columns = compare.locator(".ofox-compare-column")
        expect(columns).to_have_count(2)
        compare.locator(".ofox-compare-prompt textarea").fill(
            "Which of you is faster? [emulator-words: 60]"
        )
        compare.locator("button.ofox-compare-run").click()

        # Both columns are seen mid-stream (their cursors showing) in the same look.
        outputs = compare.locator(".ofox-compare-output")

        def both_streaming() -> bool:
            texts = outputs.all_inner_texts()
            return len(texts) == 2 and all(CURSOR in t and filler_words(t) > 0 for t in texts)

        wait_until(both_streaming, "both columns streaming at the same time")
        shots.save(page, "compare-streaming", compare)
        footers = compare.locator(".ofox-compare-footer")
        for n in range(2):
            expect(footers.nth(n)).to_contain_text("tokens")
            expect(footers.nth(n)).to_contain_text("offline emulator")
        shots.save(page, "compare-done", compare)

    for n, model in enumerate(("openai/gpt-4o", "anthropic/claude-sonnet-4.5")):
        text = outputs.nth(n).inner_text()
        assert model in columns.nth(n).inner_text() and model in text, text
        assert "Which of you is faster?" in text and filler_words(text) == 60, text
        assert CURSOR not in text, "the streaming cursor was left behind"


def test_panels_stay_readable_after_a_reopen_without_their_kernel(
    notebook: NotebookPage, lab: JupyterLab, shots: Screenshots
) -> None:
    """Save the notebook, shut its kernel down, open it again: where the chat and comparison
    panels were, their conversation and columns show (the panels' plain copies), not ipywidgets'
    "model not found" error. While the panels are alive, the copies stay hidden."""
    page = notebook.page
    with screenshot_on_failure(shots, page, "reopen"):
        chat_cell = notebook.code_cell("%ofox chat")
        compare_cell = notebook.code_cell("%ofox compare")
        for cell in (chat_cell, compare_cell):
            expect(cell.locator(".ofox-transcript")).to_have_count(1)
            expect(cell.locator(".ofox-transcript")).to_be_hidden()
        page.locator(".jp-Notebook").first.click()
        page.keyboard.press("Escape")
        page.keyboard.press("Control+s")
        wait_until(
            lambda: (
                "Hello from a real browser!"
                in json.dumps(lab.api(f"contents/{NOTEBOOK.name}").json())
            ),
            "the saved notebook to hold the chat's plain copy",
        )
        for session in lab.api("sessions").json():
            httpx.delete(
                f"{lab.base_url}/api/sessions/{session['id']}", headers=lab.headers, trust_env=False
            )
        page.reload()
        reopened = NotebookPage(page, TIMEOUT)
        reopened.wait_until_ready()
        chat_cell = reopened.code_cell("%ofox chat")
        compare_cell = reopened.code_cell("%ofox compare")
        copy = chat_cell.locator(".ofox-transcript")
        expect(copy).to_be_visible()
        expect(copy).to_contain_text("Hello from a real browser!")
        expect(compare_cell.locator(".ofox-transcript")).to_contain_text("Which of you is faster?")
        shots.save(page, "reopened-chat", chat_cell)
        shots.save(page, "reopened-compare", compare_cell)
        for cell in (chat_cell, compare_cell):
            # ipywidgets still writes its error into the page; the copy's style hides it.
            expect(cell.get_by_text("Error displaying widget")).to_be_hidden()
            expect(cell.locator(".ofox-transcript")).to_be_visible()
