"""A notebook's chats follow it through its first save, in a real browser: JupyterLab in Chromium.

A person's first steps with a new notebook: File → New → Notebook (``Untitled.ipynb``), two
``%%ofox`` questions, Ctrl+S, and JupyterLab's "Rename file" dialog on that first save, where the
notebook becomes ``analysis.ipynb``. Then:

* after Kernel → Restart Kernel…, ``%load_ext ofox_jupyter`` says it restored the notebook's 2
  turns and ``%ofox history`` shows both questions: the chats moved with the notebook (the restarted
  kernel is told the new path, the old kernel knew only ``Untitled.ipynb``);
* a second File → New → Notebook, which is ``Untitled.ipynb`` again, starts with an empty chat: it
  is a different notebook at the old path and must not inherit the first one's chats;
* File → Close and Shut Down Notebook… on ``analysis.ipynb`` (the server keeps no session or
  kernel for it), then a double-click in the file browser opens it in a new kernel, with a new
  kernel id: ``%load_ext ofox_jupyter`` restores its 2 turns all the same (found through the saved
  outputs) and ``%ofox history`` shows both questions;
* the file browser's Duplicate makes ``analysis-Copy1.ipynb``, whose ``%load_ext`` says it is a
  copy of another notebook that starts with its 2 turns; a question asked and saved in the copy
  is in the copy's ``%ofox history`` and not in the original's (its kernel still running).

The server (``tests/browser_helpers.py``) is private to this module: its own root folder, Jupyter
and IPython directories and ofox history database, no OfoxAI key (the kernels run on the built-in
emulator, which restates the prompt in its reply). The steps up to the saved ``analysis.ipynb`` are
a module fixture; each later check is its own test and opens the notebook it needs by its tab, so
a failure in one does not hide the other. Each step saves a screenshot under
``test-output/browser/history/``; the page's console and the server's log are kept there too.

Without Chromium (or playwright, or JupyterLab) the tests skip on a developer's machine and fail
in CI (``CI=true``).
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
    Page,
    expect,
    sync_playwright,
)

OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "browser" / "history"

#: Generous, for a slow CI machine; each wait ends as soon as its condition holds.
TIMEOUT = 45.0
#: The same, in milliseconds, for playwright's waits (its ``expect`` waits 5 s by default).
WAIT = TIMEOUT * 1000

LOAD = "%load_ext ofox_jupyter"
HISTORY = "%ofox history"
FIRST = "First question about apples"
SECOND = "Second question about pears"
RENAMED = "analysis.ipynb"
#: The name File Browser → Duplicate gives a copy of ``analysis.ipynb``.
DUPLICATE = "analysis-Copy1.ipynb"
#: A question asked only in the duplicate.
CHERRIES = "Only in the copy about cherries"
#: What ``%load_ext`` says in a copy of a notebook (it starts with the original's 2 turns).
IS_A_COPY = "is a copy of another notebook"
COPIED_TURNS = "2 turns"
#: What ``%load_ext`` says when it found the notebook's chats (2 questions, 2 turns).
RESTORED = "restored 2 turns"
#: ``%ofox history`` of a chat without turns ("Chat 'main' is empty.", or rendered Markdown).
EMPTY = re.compile(r"\bis empty\b")
#: What a cell's output shows when its code failed.
FAILED = re.compile(r"Traceback|\b\w+Error\b")


# -- fixtures


@pytest.fixture(scope="module")
def output_dir() -> Path:
    """``test-output/browser/history/``, emptied first: every screenshot there is from this run."""
    return fresh_output(OUTPUT)


@pytest.fixture(scope="module")
def lab(
    chromium: str, tmp_path_factory: pytest.TempPathFactory, output_dir: Path
) -> Iterator[JupyterLab]:
    """JupyterLab serving an empty folder, with a history database of its own."""
    home = tmp_path_factory.mktemp("lab-history")
    root = home / "notebooks"
    root.mkdir()
    server = JupyterLab(root, home, output_dir / "jupyterlab.log", {})
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(
    chromium: str,
    lab: JupyterLab,
    tmp_path_factory: pytest.TempPathFactory,
    output_dir: Path,
) -> Iterator[Page]:
    """JupyterLab open in headless Debian Chromium (a fresh profile), its console logged."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright, (output_dir / "console.log").open("w") as console:
        context: BrowserContext = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            context.set_default_timeout(TIMEOUT * 1000)
            page = context.pages[0] if context.pages else context.new_page()

            def log_message(message: ConsoleMessage) -> None:
                console.write(f"[{message.type}] {message.text}\n")

            def log_error(error: Error) -> None:
                console.write(f"[pageerror] {error}\n")

            page.on("console", log_message)
            page.on("pageerror", log_error)

            # jupyter_server answers a folder listing with 404 when a file in it goes away while
            # it is being listed (it stats each entry, then `get`s it): the file browser's listing
            # right after the first save can meet the rename of Untitled.ipynb (about 1 run in 5
            # here), and JupyterLab then shows a "Directory not found" error dialog over the page
            # (and lists the folder again). Nothing of ofox: close it whenever it is in the way
            # of a click or a check, and note it in the console log.
            lost = page.locator(".jp-Dialog", has_text="Directory not found")

            def close_directory_not_found() -> None:
                console.write("[test] closed JupyterLab's 'Directory not found' dialog\n")
                lost.locator(".jp-Dialog-footer button").first.click()

            page.add_locator_handler(lost, close_directory_not_found)
            page.goto(lab.url("lab"))
            # A fresh workspace opens the Launcher once the application has started.
            expect(page.locator(".jp-Launcher")).to_be_visible(timeout=TIMEOUT * 1000)
            yield page
        finally:
            context.close()


@dataclass
class Analysis:
    """The first notebook, after its first save renamed it."""

    notebook: NotebookPage
    #: The name File → New → Notebook gave it (``Untitled.ipynb``).
    untitled: str


@pytest.fixture(scope="module")
def analysis(page: Page, lab: JupyterLab, screenshots: Screenshots) -> Analysis:
    """Steps 1-3: a new notebook, two ``%%ofox`` questions, Ctrl+S renaming it to analysis.ipynb."""
    with screenshot_on_failure(screenshots, page, "analysis"):
        # 1. File → New → Notebook.
        notebook = NotebookPage.create(page, TIMEOUT)
        untitled = notebook.name()
        assert re.fullmatch(r"Untitled\d*\.ipynb", untitled), (
            f"File → New → Notebook opened {untitled!r}, not an Untitled notebook"
        )
        check_kernel(lab, untitled)
        screenshots.save(page, "new-notebook")

        # 2. Load the extension, ask two questions.
        run_new_cell(notebook, LOAD)
        first = run_new_cell(notebook, f"%%ofox\n{FIRST}")
        second = run_new_cell(notebook, f"%%ofox\n{SECOND}")
        screenshots.save(page, "two-questions")
        for cell, word in ((first, "apples"), (second, "pears")):
            text = output_text(cell)
            assert word in text, f"the %%ofox reply does not restate {word!r}: {text!r}"

        # 3. Ctrl+S: the first save of an Untitled notebook asks for a name.
        save_with_new_name(notebook, RENAMED, screenshots)
        screenshots.save(page, "saved-as-analysis")
    return Analysis(notebook, untitled)


# -- steps a person takes


def check_kernel(lab: JupyterLab, notebook: str) -> None:
    """The server runs ``notebook`` on a kernel of this environment's Python."""
    kernels = {s["path"]: s["kernel"]["name"] for s in lab.api("sessions").json()}
    assert notebook in kernels, f"the server has no session for {notebook}: {kernels}"
    spec = lab.api("kernelspecs").json()["kernelspecs"][kernels[notebook]]["spec"]
    # jupyter_client starts a spec's bare "python" (or "python3", "python3.X") with the server's
    # own interpreter, which is this one.
    major, minor = sys.version_info[:2]
    program = spec["argv"][0]
    ours = program in ("python", f"python{major}", f"python{major}.{minor}")
    assert ours or Path(program) == Path(sys.executable), (
        f"{notebook} runs on {spec['display_name']} ({program}), not on {sys.executable}"
    )


def output_text(cell: Locator) -> str:
    return cell.locator(".jp-Cell-outputArea").inner_text()


def run_new_cell(notebook: NotebookPage, source: str) -> Locator:
    """Type ``source`` into a new cell at the end, run it, wait until it finished without error."""
    cell = notebook.append_cell(source)
    notebook.run_and_wait(cell)
    check_no_error(cell, source)
    return cell


def check_no_error(cell: Locator, source: str) -> None:
    text = output_text(cell)
    assert not FAILED.search(text), f"the cell {source!r} failed:\n{text}"


def save_with_new_name(notebook: NotebookPage, name: str, screenshots: Screenshots) -> None:
    """Ctrl+S, and give the notebook ``name`` in the "Rename file" dialog of the first save.

    Should that dialog not come (it can be turned off), the save goes through under the old name
    and File → Rename Notebook… renames it instead.
    """
    page = notebook.page
    dialog = page.locator(".jp-Dialog")
    dirty = notebook.tab.evaluate("tab => tab.classList.contains('jp-mod-dirty')")
    assert dirty, "the notebook has unsaved changes, but its tab does not show them"
    notebook.cells.last.locator(".jp-InputArea-editor .cm-content").click()  # focus the notebook
    page.keyboard.press("Control+s")
    saved = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current:not(.jp-mod-dirty)")
    expect(dialog.or_(saved).first).to_be_visible(timeout=TIMEOUT * 1000)
    if dialog.count():
        expect(dialog).to_contain_text("Rename file")
        # The file name input (the dialog also has a "Do not ask for rename" checkbox).
        dialog.get_by_role("textbox").fill(name)
        screenshots.save(page, "rename-on-first-save")
        dialog.locator("button.jp-mod-accept", has_text="Rename and Save").click()
    else:
        notebook.menu("File", "Rename Notebook…")
        expect(dialog).to_contain_text("Rename File")
        dialog.get_by_role("textbox").fill(name)
        screenshots.save(page, "rename-notebook")
        dialog.locator("button.jp-mod-accept", has_text="Rename").click()
    expect(dialog).to_have_count(0)
    # Renamed, and the save answered by the server (the tab's unsaved-changes mark is gone).
    expect(notebook.tab.locator(".lm-TabBar-tabLabel")).to_have_text(name)
    expect(notebook.tab).not_to_have_class(re.compile(r"\bjp-mod-dirty\b"))


def open_tab(page: Page, name: str) -> None:
    """Click the main area's tab of ``name`` (one of the open notebooks) to show it."""
    label = page.locator(".lm-TabBar-tabLabel", has_text=re.compile(f"^{re.escape(name)}$"))
    tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has=label)
    tab.click()
    expect(tab).to_have_class(re.compile(r"\blm-mod-current\b"))


def saved_texts(model: dict[str, Any]) -> list[str]:
    """Every output of a saved notebook as text (its JSON), cell by cell."""
    return [json.dumps(cell.get("outputs", [])) for cell in model["content"]["cells"]]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    """Poll ``condition`` (a question to the server) until it holds; fail saying ``what`` not."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.2)


def session_kernel(lab: JupyterLab, notebook: str) -> dict[str, Any] | None:
    """The kernel (``id``, ``execution_state`` …) of the server's session for ``notebook``."""
    for session in lab.api("sessions").json():
        if session["path"] == notebook:
            return dict(session["kernel"])
    return None


def kernel_ids(lab: JupyterLab) -> list[str]:
    return [kernel["id"] for kernel in lab.api("kernels").json()]


def close_and_shut_down(notebook: NotebookPage, on_dialog: Callable[[], object]) -> None:
    """File → Close and Shut Down Notebook…, confirmed: the tab closes, the kernel is shut down.

    JupyterLab closes the notebook without asking about unsaved changes here (they are dropped),
    so the file stays as it was last saved. ``on_dialog`` is called while the dialog is shown.
    """
    page = notebook.page
    name = notebook.name()
    notebook.menu("File", "Close and Shut Down Notebook…")
    dialog = page.locator(".jp-Dialog")
    expect(dialog).to_contain_text("Shut down the notebook?", timeout=WAIT)
    expect(dialog).to_contain_text(name, timeout=WAIT)
    on_dialog()
    dialog.locator("button.jp-mod-accept").click()
    expect(dialog).to_have_count(0, timeout=WAIT)
    expect(tab_of(page, name)).to_have_count(0, timeout=WAIT)


def tab_of(page: Page, name: str) -> Locator:
    """The main area's tab of ``name`` (none if it is not open)."""
    label = page.locator(".lm-TabBar-tabLabel", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has=label)


def file_item(page: Page, name: str) -> Locator:
    """The file browser's entry for ``name``, the file browser shown first if it was not."""
    browser = page.locator(".jp-FileBrowser")
    if not browser.is_visible():  # the left sidebar's folder icon shows it
        page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab[data-id='filebrowser']").click()
        expect(browser).to_be_visible(timeout=WAIT)
    text = page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    return browser.locator(".jp-DirListing-item", has=text)


def open_from_file_browser(page: Page, lab: JupyterLab, name: str) -> NotebookPage:
    """Double-click ``name`` in the file browser, pick the kernel if asked; the open notebook,
    once its (new) kernel is idle, on the page and on the server."""
    file_item(page, name).dblclick()
    expect(tab_of(page, name)).to_have_class(re.compile(r"\blm-mod-current\b"), timeout=WAIT)
    notebook = NotebookPage(page, TIMEOUT)
    dialog = page.locator(".jp-Dialog")
    named = notebook.panel.locator(".jp-KernelName", has_text=NotebookPage.kernel_name)
    expect(dialog.or_(named).first).to_be_visible(timeout=WAIT)
    if dialog.count():  # a notebook without a kernelspec in its metadata asks for one
        expect(dialog).to_contain_text("Select Kernel", timeout=WAIT)
        dialog.locator("select").select_option(label=NotebookPage.kernel_name)
        dialog.locator("button.jp-mod-accept").click()
        expect(dialog).to_have_count(0, timeout=WAIT)
    notebook.wait_until_ready()
    wait_until(
        lambda: (session_kernel(lab, name) or {}).get("execution_state") == "idle",
        f"the server has an idle kernel for {name}",
    )
    return notebook


def duplicate_in_file_browser(page: Page, lab: JupyterLab, name: str, copy: str) -> None:
    """Right-click ``name`` in the file browser → Duplicate; the copy is named ``copy``."""
    file_item(page, name).click(button="right")
    duplicate = page.locator(".lm-Menu .lm-Menu-itemLabel", has_text=re.compile("^Duplicate$"))
    expect(duplicate).to_be_visible(timeout=WAIT)
    duplicate.click()
    expect(file_item(page, copy)).to_be_visible(timeout=WAIT)
    assert lab.api(f"contents/{copy}").status_code == 200, f"the server has no {copy}"


def run_cell(notebook: NotebookPage, source: str) -> Locator:
    """Run the cell holding ``source`` (found by its last line) or, if there is none, a new cell
    at the end; wait until it finished without error, whatever execution count it gets."""
    snippet = source.splitlines()[-1]
    editor = notebook.page.locator(".jp-InputArea-editor", has_text=snippet)
    existing = notebook.panel.locator(".jp-CodeCell", has=editor)
    cell = existing if existing.count() == 1 else notebook.append_cell(source)
    notebook.run_and_wait_any(cell)
    check_no_error(cell, source)
    return cell


def save(notebook: NotebookPage) -> None:
    """Ctrl+S in a notebook with unsaved changes; wait until the server has it (tab not dirty)."""
    expect(notebook.tab).to_have_class(re.compile(r"\bjp-mod-dirty\b"), timeout=WAIT)
    notebook.cells.last.locator(".jp-InputArea-editor .cm-content").click()  # focus the notebook
    notebook.page.keyboard.press("Control+s")
    expect(notebook.tab).not_to_have_class(re.compile(r"\bjp-mod-dirty\b"), timeout=WAIT)


# -- the checks


def test_first_save_renames_the_notebook_with_its_replies(
    analysis: Analysis, lab: JupyterLab
) -> None:
    """Step 3, on the server: analysis.ipynb holds both replies, and the Untitled file is gone."""
    response = lab.api(f"contents/{RENAMED}")
    assert response.status_code == 200, f"GET /api/contents/{RENAMED}: {response.status_code}"
    model = response.json()
    sources = [str(cell["source"]) for cell in model["content"]["cells"]]
    outputs = saved_texts(model)
    for question, word in ((FIRST, "apples"), (SECOND, "pears")):
        index = next((n for n, src in enumerate(sources) if question in src), None)
        assert index is not None, f"no cell of the saved {RENAMED} asks {question!r}: {sources}"
        assert word in outputs[index], (
            f"the saved reply to {question!r} does not mention {word!r}: {outputs[index]}"
        )
    gone = lab.api(f"contents/{analysis.untitled}")
    assert gone.status_code == 404, f"{analysis.untitled} is still there after the rename"
    sessions = [session["path"] for session in lab.api("sessions").json()]
    assert RENAMED in sessions, f"the server's sessions are {sessions}, none for {RENAMED}"


def test_restart_after_rename_restores_the_chats(
    analysis: Analysis, page: Page, shots: Screenshots
) -> None:
    """Step 4: the renamed notebook's chats are back after a kernel restart."""
    notebook = analysis.notebook
    with screenshot_on_failure(shots, page, "restart"):
        open_tab(page, RENAMED)
        notebook.restart_kernel(on_dialog=lambda: shots.save(page, "restart-dialog"))
        shots.save(page, "restarted")
        load = notebook.code_cell(LOAD)
        notebook.rerun_and_wait(load)  # its prompt said [1]: before, and will again
        check_no_error(load, LOAD)
        history = run_new_cell(notebook, HISTORY)
        shots.save(page, "restarted-history")
    loaded, shown = output_text(load), output_text(history)
    assert RESTORED in loaded, (
        f"after {analysis.untitled} was saved as {RENAMED} and its kernel restarted, "
        f"{LOAD!r} did not say {RESTORED!r}: the notebook's chats were not found under its new "
        f"name.\n{LOAD} printed:\n{loaded}\n{HISTORY} showed:\n{shown}"
    )
    for word in ("apples", "pears"):
        assert word in shown, (
            f"{HISTORY} after the restart does not show the question about {word}:\n{shown}"
        )


def test_new_untitled_notebook_starts_with_an_empty_chat(
    analysis: Analysis, page: Page, lab: JupyterLab, shots: Screenshots
) -> None:
    """Step 5: a new notebook at the first one's old path does not inherit its chats."""
    with screenshot_on_failure(shots, page, "second-untitled"):
        notebook = NotebookPage.create(page, TIMEOUT)
        name = notebook.name()
        assert name == analysis.untitled, (
            f"the second new notebook is {name!r}, not {analysis.untitled!r} (the first one's "
            "name before its rename), so this test would not check what it means to"
        )
        sessions = [session["path"] for session in lab.api("sessions").json()]
        assert name in sessions, f"the server's sessions are {sessions}, none for {name}"
        shots.save(page, "second-untitled")
        load = run_new_cell(notebook, LOAD)
        history = run_new_cell(notebook, HISTORY)
        shots.save(page, "second-untitled-history")
    loaded, shown = output_text(load), output_text(history)
    assert "restored" not in loaded.lower(), (
        f"a new {name} restored chats: those of the notebook that was {name} before it was "
        f"renamed to {RENAMED}.\n{LOAD} printed:\n{loaded}\n{HISTORY} showed:\n{shown}"
    )
    assert "apples" not in shown and "pears" not in shown, (
        f"{HISTORY} in a new {name} shows the chat of the notebook renamed to {RENAMED}:\n{shown}"
    )
    assert EMPTY.search(shown), (
        f"{HISTORY} in a new {name} does not say the chat is empty:\n{shown}"
    )


def test_reopened_in_a_new_kernel_finds_its_chats(
    analysis: Analysis, page: Page, lab: JupyterLab, shots: Screenshots
) -> None:
    """Step 6: closed with its kernel shut down and opened again, analysis.ipynb finds its chats
    in a new kernel (a new kernel id: they are found through its saved outputs)."""
    with screenshot_on_failure(shots, page, "reopen"):
        before = session_kernel(lab, RENAMED)
        assert before is not None, f"the server has no session for {RENAMED} to close"
        old_kernel = before["id"]
        open_tab(page, RENAMED)
        close_and_shut_down(analysis.notebook, lambda: shots.save(page, "close-and-shut-down"))
        wait_until(
            lambda: session_kernel(lab, RENAMED) is None and old_kernel not in kernel_ids(lab),
            f"the session of {RENAMED} and its kernel {old_kernel} are gone from the server",
        )
        shots.save(page, "closed-and-shut-down")

        notebook = open_from_file_browser(page, lab, RENAMED)
        after = session_kernel(lab, RENAMED)
        assert after is not None and after["id"] != old_kernel, (
            f"{RENAMED} opened again on kernel {after}, not on a new one (was {old_kernel})"
        )
        check_kernel(lab, RENAMED)
        shots.save(page, "reopened")
        load = notebook.code_cell(LOAD)
        notebook.run_and_wait_any(load)  # the saved output says [1]: already
        check_no_error(load, LOAD)
        history = run_cell(notebook, HISTORY)
        shots.save(page, "reopened-history")
        shots.save(page, "reopened-history-cell", history)
    loaded, shown = output_text(load), output_text(history)
    assert RESTORED in loaded, (
        f"{RENAMED}, closed with its kernel shut down and opened again in a new kernel, did not "
        f"say {RESTORED!r} at {LOAD!r}: its chats were not found through its saved outputs.\n"
        f"{LOAD} printed:\n{loaded}\n{HISTORY} showed:\n{shown}"
    )
    for word in ("apples", "pears"):
        assert word in shown, (
            f"{HISTORY} in {RENAMED} opened again does not show the question about {word}:\n{shown}"
        )


def test_a_duplicate_starts_with_the_chats_as_a_copy(
    analysis: Analysis, page: Page, lab: JupyterLab, shots: Screenshots
) -> None:
    """Step 7: File Browser → Duplicate; the copy starts with analysis.ipynb's chats, as a copy:
    a question asked in the copy is not in the original's chat."""
    with screenshot_on_failure(shots, page, "duplicate"):
        duplicate_in_file_browser(page, lab, RENAMED, DUPLICATE)
        shots.save(page, "duplicated")
        copy = open_from_file_browser(page, lab, DUPLICATE)
        check_kernel(lab, DUPLICATE)
        shots.save(page, "duplicate-opened")
        copy_load = copy.code_cell(LOAD)
        copy.run_and_wait_any(copy_load)  # the saved output says [1]: already
        check_no_error(copy_load, LOAD)
        shots.save(page, "duplicate-load", copy_load)
        copy_loaded = output_text(copy_load)
        assert IS_A_COPY in copy_loaded and COPIED_TURNS in copy_loaded, (
            f"{LOAD!r} in {DUPLICATE}, a duplicate of {RENAMED}, did not say {IS_A_COPY!r} and "
            f"{COPIED_TURNS!r}; it printed:\n{copy_loaded}"
        )
        cherries = run_cell(copy, f"%%ofox\n{CHERRIES}")
        reply = output_text(cherries)
        assert "cherries" in reply, f"the %%ofox reply does not restate 'cherries': {reply!r}"
        copy_history = run_cell(copy, HISTORY)
        shots.save(page, "duplicate-cherries")
        shots.save(page, "duplicate-history-cell", copy_history)
        copy_shown = output_text(copy_history)
        for word in ("apples", "pears", "cherries"):
            assert word in copy_shown, (
                f"{HISTORY} in {DUPLICATE} does not show the question about {word}:\n{copy_shown}"
            )
        save(copy)
        saved = saved_texts(lab.api(f"contents/{DUPLICATE}").json())
        assert any("cherries" in text for text in saved), (
            f"the saved {DUPLICATE} has no reply about cherries: {saved}"
        )
        shots.save(page, "duplicate-saved")

        # The original: still open from the previous test (its kernel running), or opened again.
        if tab_of(page, RENAMED).count():
            open_tab(page, RENAMED)
            original = NotebookPage(page, TIMEOUT)
            original.wait_until_ready()
        else:
            original = open_from_file_browser(page, lab, RENAMED)
            run_cell(original, LOAD)
        history = run_cell(original, HISTORY)
        shots.save(page, "original-history")
        shots.save(page, "original-history-cell", history)
    shown = output_text(history)
    assert "cherries" not in shown, (
        f"{HISTORY} in {RENAMED} shows the question asked only in its duplicate {DUPLICATE}: "
        f"the copy's new turn reached the original's chat.\n{LOAD} in the copy printed:\n"
        f"{copy_loaded}\n{HISTORY} in the original showed:\n{shown}"
    )
    for word in ("apples", "pears"):
        assert word in shown, (
            f"{HISTORY} in {RENAMED}, after its duplicate diverged, does not show the question "
            f"about {word}:\n{shown}"
        )


def test_code_from_a_reply_lands_in_a_new_cell_below(
    page: Page, lab: JupyterLab, shots: Screenshots
) -> None:
    """``%%ofox --code`` in a new notebook: the kernel's set_next_input payload becomes a new
    cell right below the one that ran, holding the reply's code, not run."""
    from playwright.sync_api import expect

    with screenshot_on_failure(shots, page, "code-cell"):
        notebook = NotebookPage.create(page, TIMEOUT)
        run_new_cell(notebook, LOAD)
        marker = "--code --chat browser-code"
        cell = run_new_cell(notebook, f"%%ofox {marker}\nWrite:\n```python\nprint(40 + 2)\n```")
        expect(cell.locator(".jp-Cell-outputArea")).to_contain_text("put in a new cell below")
        sources = notebook.cells.evaluate_all(
            "cells => cells.map(c => c.querySelector('.jp-InputArea-editor')?.innerText ?? '')"
        )
        ran = next(i for i, text in enumerate(sources) if marker in text)
        assert sources[ran + 1].strip() == "print(40 + 2)", sources[ran : ran + 3]
        below = notebook.cells.nth(ran + 1)
        expect(below.locator(".jp-InputPrompt")).to_have_text("[ ]:")  # not run
        shots.save(page, "code-cell")


def test_a_batch_shows_tqdms_bar_while_it_runs_then_its_table(
    page: Page, lab: JupyterLab, shots: Screenshots
) -> None:
    """``%%ofox --map``: tqdm's widget bar counts up in the cell while the batch runs (30 items
    at the emulator's announced 200 a minute: about 9 s), and gives way to the result's table."""
    from playwright.sync_api import expect

    with screenshot_on_failure(shots, page, "batch"):
        notebook = NotebookPage.create(page, TIMEOUT)
        run_new_cell(notebook, LOAD)
        run_new_cell(notebook, "words = [f'w{i} [emulator-fault: slow:0.4]' for i in range(30)]")
        cell = notebook.append_cell("%%ofox --map words --yes --no-cache\nDefine {item}")
        count = notebook.run(cell)
        output = cell.locator(".jp-Cell-outputArea")
        bar = output.locator(".widget-hprogress .progress-bar")  # ipywidgets 8's progress bar
        expect(bar).to_have_count(1)
        expect(output.locator(".widget-html-content").first).to_contain_text(
            # counting up; tqdm's widget writes every space as a figure space (U+2007)
            re.compile(r"ofox\Wbatch:\D*[1-9]\d*%")
        )
        shots.save(page, "batch-running", cell)
        notebook.wait_finished(cell, count)
        expect(output).to_contain_text("30 items · 30 answered · 0 failed")
        expect(output.locator("table")).to_have_count(1)
        expect(bar).to_have_count(0)  # the bar gave way to the table
        shots.save(page, "batch-done", cell)
