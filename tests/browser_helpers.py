"""Helpers for ``tests/test_browser.py``: a private JupyterLab server and a notebook page object.

``JupyterLab`` starts ``python -m jupyterlab`` as a subprocess of its own process group, with every
directory it writes to (Jupyter config, data and runtime, IPython, JupyterLab settings and
workspaces, the ofox history) under one temporary folder, no OfoxAI key (the kernels run on the
built-in emulator), and nothing that reaches for the network (no news, no update check, a
read-only extension manager). ``NotebookPage`` drives one open notebook the way a person does:
click into a cell, press Shift+Enter, read what the page shows.

Playwright is imported by the caller, not here, so that this module imports without it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

__all__ = [
    "CHROMIUM_ARGS",
    "IN_CI",
    "JupyterLab",
    "NotebookPage",
    "Screenshots",
    "chromium_fixture",
    "find_chromium",
    "fresh_output",
    "screenshot_on_failure",
    "screenshots_fixture",
    "shots_fixture",
    "skip_or_fail",
]

#: CI must not pass by skipping the browser test: there, whatever would skip it fails it instead.
IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

#: Headless Chromium as this machine needs it (style.md, "Known traps"): root needs --no-sandbox,
#: there is no GPU, and with no network but the package registries every background connection
#: (safe browsing, component updates, sync) would only be refused, again and again.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

#: JupyterLab user settings for the test (JUPYTERLAB_SETTINGS_DIR): every cell stays in the DOM
#: (the default windowing may leave cells far off-screen unrendered, and their text unreadable),
#: and no news or update-check toast pops up over the notebook.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}

#: Seconds to wait for the server to answer, and for it to stop when asked.
SERVER_START_TIMEOUT = 60.0
SERVER_STOP_TIMEOUT = 15.0


def skip_or_fail(reason: str) -> None:
    """Skip the test on a developer's machine; fail it in CI, where a skip would hide a gap."""
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def find_chromium() -> str:
    """Debian's ``chromium`` (playwright's own browser download does not work here)."""
    path = shutil.which("chromium")
    if path is None:
        skip_or_fail(
            "Debian's chromium is not installed (apt-get install chromium; .ci/run does it)"
        )
    assert path is not None
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the server refuses to pick another)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class JupyterLab:
    """A JupyterLab server on 127.0.0.1 serving ``root``, isolated under ``home``.

    **Parameters:**

    * **root** - the folder the server serves (the notebooks to open).
    * **home** - a fresh folder for everything the server and its kernels write.
    * **log** - where the server's stdout and stderr go (kept for a failing run).
    * **env** - extra environment variables for the server and so for its kernels.
    """

    def __init__(self, root: Path, home: Path, log: Path, env: dict[str, str]) -> None:
        self.root = root
        self.home = home
        self.log = log
        self.port = free_port()
        self.token = secrets.token_hex(16)
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self._extra_env = env

    def environment(self) -> dict[str, str]:
        """This process's environment, offline (no key, no base URL) and with private dirs."""
        env = {
            name: value
            for name, value in os.environ.items()
            # An OfoxAI key or base URL would send the kernels to a real server, and a session
            # name would key the history to the developer's notebook.
            if not name.startswith("OFOX_") and name != "JPY_SESSION_NAME"
        }
        dirs = {
            "JUPYTER_CONFIG_DIR": "jupyter-config",
            "JUPYTER_DATA_DIR": "jupyter-data",
            "JUPYTER_RUNTIME_DIR": "jupyter-runtime",
            "IPYTHONDIR": "ipython",
            "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
            "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        }
        for name, sub in dirs.items():
            path = self.home / sub
            path.mkdir(parents=True, exist_ok=True)
            env[name] = str(path)
        env["OFOX_HISTORY_PATH"] = str(self.home / "history.sqlite3")
        env.update(self._extra_env)
        return env

    def _write_settings(self, settings_dir: Path) -> None:
        for plugin, values in LAB_SETTINGS.items():
            package, name = plugin.rsplit("/", 1)
            path = settings_dir / package / f"{name}.jupyterlab-settings"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(values), encoding="utf-8")

    def start(self) -> None:
        env = self.environment()
        self._write_settings(Path(env["JUPYTERLAB_SETTINGS_DIR"]))
        command = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={self.port}",
            "--ServerApp.port_retries=0",  # fail on a taken port rather than move elsewhere
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root}",
            "--ServerApp.allow_root=True",  # CI runs as root
            "--ServerApp.terminals_enabled=False",
            # Nothing that would call out: news, update checks, PyPI's extension listing.
            "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.extension_manager=readonly",
        ]
        with self.log.open("wb") as out:
            # A session of its own, so that stop() can end the server and anything it spawned.
            self.process = subprocess.Popen(
                command,
                env=env,
                cwd=self.root,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_until_answering()

    def _wait_until_answering(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise AssertionError(
                        f"JupyterLab exited with {self.process.returncode}:\n{_tail(self.log)}"
                    )
                try:
                    response = client.get(f"{self.base_url}/api/status", headers=self.headers)
                    if response.status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # not listening yet
                time.sleep(0.2)
        raise AssertionError(
            f"JupyterLab did not answer within {SERVER_START_TIMEOUT:.0f} s:\n{_tail(self.log)}"
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def api(self, path: str) -> httpx.Response:
        """``GET /api/<path>`` of the server, with the token (e.g. ``api("contents/x.ipynb")``)."""
        return httpx.get(
            f"{self.base_url}/api/{path.lstrip('/')}",
            headers=self.headers,
            timeout=10.0,
            trust_env=False,
        )

    def url(self, path: str) -> str:
        """The address of ``path`` (e.g. ``lab/tree/x.ipynb``), with the token to log in."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}"

    def stop(self) -> None:
        """Shut the server down (kernels included); signal its process group if it lingers."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:  # the polite way: the server shuts its kernels down before exiting
            httpx.post(
                f"{self.base_url}/api/shutdown",
                headers=self.headers,
                timeout=5.0,
                trust_env=False,
            )
            process.wait(timeout=SERVER_STOP_TIMEOUT)
            return
        except (httpx.HTTPError, subprocess.TimeoutExpired):
            pass
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=5.0)
                return
            except subprocess.TimeoutExpired:
                continue


class Screenshots:
    """Saves numbered screenshots under ``folder`` and says where each one went."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        #: Says where a screenshot went; a test replaces it to print past pytest's capture.
        self.announce: Callable[[str], None] = print
        self._count = 0

    def save(self, page: Page, name: str, target: Locator | None = None) -> Path:
        """A screenshot of ``target`` (or of the whole page) as ``NN-name.png``."""
        self._count += 1
        path = self.folder / f"{self._count:02d}-{name}.png"
        if target is None:
            page.screenshot(path=str(path))
        else:
            # Its top at the top of the notebook's scroll area: "if needed" scrolling only makes
            # part of it visible, and a cell cut off at the top hides its prompt ([*] or [n]).
            target.evaluate("element => element.scrollIntoView({block: 'start'})")
            target.screenshot(path=str(path))
        self.announce(f"screenshot: {path}")
        return path


class NotebookPage:
    """One notebook open in JupyterLab, driven through the page as a person would.

    Cells are found by a piece of their source. Cells are run with Shift+Enter; a run is over when
    the cell's prompt shows its execution count. After ``clear_all_outputs()`` the counts are
    predictable (the kernel numbers executions 1, 2, 3 … and every run here is one execution), so
    a run is known to be finished exactly, not guessed from a pause in the output.
    """

    #: The kernel of the notebook (its kernelspec's display name, as the toolbar shows it).
    kernel_name = "Python 3 (ipykernel)"

    def __init__(self, page: Page, timeout: float) -> None:
        self.page = page
        self.timeout_ms = timeout * 1000
        self.executions = 0  # execute requests sent to this kernel so far

    @property
    def panel(self) -> Locator:
        return self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")

    def wait_until_ready(self) -> None:
        """The notebook's cells are shown and its kernel is connected and idle."""
        from playwright.sync_api import expect

        expect(self.panel.locator(".jp-Notebook .jp-Cell").first).to_be_visible(
            timeout=self.timeout_ms
        )
        # The toolbar's execution indicator says "idle" already while the page is still
        # initializing ("No Kernel"), so it only counts once the kernel is named as well.
        expect(self.panel.locator(".jp-KernelName")).to_have_text(
            self.kernel_name, timeout=self.timeout_ms
        )
        expect(self.panel.locator(".jp-Notebook-ExecutionIndicator")).to_have_attribute(
            "data-status", "idle", timeout=self.timeout_ms
        )

    def menu(self, menu: str, item: str) -> None:
        """Choose ``item`` from the menu bar's ``menu`` (as a mouse user would)."""
        self.page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{item}$")).click()

    def clear_all_outputs(self) -> None:
        """Edit → Clear Outputs of All Cells: the stored outputs and execution counts go."""
        from playwright.sync_api import expect

        self.menu("Edit", "Clear Outputs of All Cells")
        expect(self.panel.locator(".jp-Cell-outputArea .jp-OutputArea-output")).to_have_count(
            0, timeout=self.timeout_ms
        )

    def code_cell(self, snippet: str) -> Locator:
        """The one code cell whose source contains ``snippet``."""
        from playwright.sync_api import expect

        source = self.page.locator(".jp-InputArea-editor", has_text=snippet)
        cell = self.panel.locator(".jp-CodeCell", has=source)
        expect(cell).to_have_count(1, timeout=self.timeout_ms)
        return cell

    def run(self, cell: Locator) -> int:
        """Click into ``cell`` and press Shift+Enter; returns the execution count it will get."""
        cell.locator(".jp-InputArea-editor .cm-content").click()
        self.page.keyboard.press("Shift+Enter")
        self.executions += 1
        return self.executions

    def wait_finished(self, cell: Locator, count: int, timeout: float | None = None) -> None:
        """Wait until ``cell`` shows ``[count]:``, i.e. its run ``count`` has finished."""
        from playwright.sync_api import expect

        expect(cell.locator(".jp-InputPrompt")).to_have_text(
            f"[{count}]:", timeout=self.timeout_ms if timeout is None else timeout * 1000
        )

    def run_and_wait(self, cell: Locator) -> None:
        self.wait_finished(cell, self.run(cell))

    @staticmethod
    def state(cell: Locator) -> tuple[str, str]:
        """The cell's prompt and the text of its outputs, read in one go (so they agree)."""
        prompt, text = cell.evaluate(
            """cell => [
                cell.querySelector('.jp-InputPrompt')?.innerText.trim() ?? '',
                cell.querySelector('.jp-Cell-outputArea')?.innerText ?? '',
            ]"""
        )
        return str(prompt), str(text)

    # -- whole-notebook actions as a person does them: new notebook, new cell, restart

    @classmethod
    def create(cls, page: Page, timeout: float) -> NotebookPage:
        """File → New → Notebook, pick this environment's kernel in the dialog; the new notebook.

        JupyterLab opens the notebook (``Untitled.ipynb``, ``Untitled1.ipynb`` … in the folder
        the file browser shows) at once and asks for its kernel in a "Select Kernel" dialog.
        """
        from playwright.sync_api import expect

        timeout_ms = timeout * 1000
        page.locator(".lm-MenuBar-itemLabel", has_text=re.compile("^File$")).click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^New$")).click()  # the submenu
        page.locator(".lm-Menu-itemLabel", has_text=re.compile("^Notebook$")).click()
        dialog = page.locator(".jp-Dialog")
        expect(dialog).to_contain_text("Select Kernel", timeout=timeout_ms)
        dialog.locator("select").select_option(label=cls.kernel_name)
        dialog.locator("button.jp-mod-accept").click()
        expect(dialog).to_have_count(0, timeout=timeout_ms)
        notebook = cls(page, timeout)
        notebook.wait_until_ready()
        return notebook

    @property
    def tab(self) -> Locator:
        """The notebook's tab in the main area (the current one: this panel is the visible one)."""
        return self.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")

    def name(self) -> str:
        """The notebook's file name, as its tab shows it."""
        return self.tab.locator(".lm-TabBar-tabLabel").inner_text().strip()

    @property
    def cells(self) -> Locator:
        return self.panel.locator(".jp-Notebook .jp-Cell")

    def append_cell(self, source: str, snippet: str | None = None) -> Locator:
        """Type ``source`` into a new code cell at the end; returns the cell (found by ``snippet``,
        by default the source's last line, which must be in no other cell).

        The last cell is used if it is empty (Shift+Enter on the last cell leaves a fresh one
        below); otherwise a cell is added below it with ``b`` in command mode.
        """
        from playwright.sync_api import expect

        last = self.cells.last
        if last.locator(".jp-InputArea-editor .cm-content").inner_text().strip():
            count = self.cells.count()
            last.locator(".jp-InputArea-editor .cm-content").click()
            self.page.keyboard.press("Escape")  # command mode
            self.page.keyboard.press("b")  # insert a cell below
            expect(self.cells).to_have_count(count + 1, timeout=self.timeout_ms)
            last = self.cells.last
        last.locator(".jp-InputArea-editor .cm-content").click()
        self.page.keyboard.type(source)
        return self.code_cell(snippet if snippet is not None else source.splitlines()[-1])

    def run_and_wait_any(self, cell: Locator) -> int:
        """Run ``cell`` and wait until this run is over, whatever execution count it gets; returns
        that count, and later runs are counted on from it.

        For a notebook whose kernel ran cells this object did not send (one opened again, or
        driven by an earlier test): the prompt's texts are recorded from before Shift+Enter on,
        and the run is over once the prompt has shown ``[*]:`` (running) and then a count.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        prompt = cell.locator(".jp-InputPrompt").element_handle(timeout=self.timeout_ms)
        prompt.evaluate(
            """prompt => {
                prompt.__ofoxPrompts = [];
                prompt.__ofoxObserver?.disconnect();
                prompt.__ofoxObserver = new MutationObserver(
                    () => prompt.__ofoxPrompts.push(prompt.innerText.trim()));
                prompt.__ofoxObserver.observe(
                    prompt, {childList: true, characterData: true, subtree: true});
            }"""
        )
        cell.locator(".jp-InputArea-editor .cm-content").click()
        self.page.keyboard.press("Shift+Enter")
        try:
            self.page.wait_for_function(
                """prompt => prompt.__ofoxPrompts.includes('[*]:')
                    && /^\\[\\d+\\]:$/.test(prompt.innerText.trim())""",
                arg=prompt,
                timeout=self.timeout_ms,
            )
        except PlaywrightTimeoutError as err:  # say what the prompt went through
            seen = prompt.evaluate("prompt => prompt.__ofoxPrompts")
            raise AssertionError(
                f"the cell's run did not finish within {self.timeout_ms / 1000:.0f} s; "
                f"its prompt showed {seen} since Shift+Enter"
            ) from err
        finally:
            prompt.evaluate("prompt => prompt.__ofoxObserver?.disconnect()")
        text = prompt.evaluate("prompt => prompt.innerText.trim()")
        match = re.fullmatch(r"\[(\d+)\]:", str(text))
        assert match is not None, f"the cell's prompt shows {text!r}, not an execution count"
        self.executions = int(match.group(1))
        return self.executions

    def rerun_and_wait(self, cell: Locator) -> None:
        """Run ``cell`` and wait until this run is over, even if its prompt already shows the
        count that this run will get (as after a kernel restart, which numbers runs from 1 again).

        The prompt's texts are recorded from before Shift+Enter on, so that the run is known to be
        over once the prompt has shown ``[*]:`` (running) and then the expected count.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

        prompt = cell.locator(".jp-InputPrompt").element_handle(timeout=self.timeout_ms)
        prompt.evaluate(
            """prompt => {
                prompt.__ofoxPrompts = [];
                prompt.__ofoxObserver?.disconnect();
                prompt.__ofoxObserver = new MutationObserver(
                    () => prompt.__ofoxPrompts.push(prompt.innerText.trim()));
                prompt.__ofoxObserver.observe(
                    prompt, {childList: true, characterData: true, subtree: true});
            }"""
        )
        count = self.run(cell)
        try:
            self.page.wait_for_function(
                """([prompt, done]) => prompt.__ofoxPrompts.includes('[*]:')
                    && prompt.innerText.trim() === done""",
                arg=[prompt, f"[{count}]:"],
                timeout=self.timeout_ms,
            )
        except PlaywrightTimeoutError as err:  # say what the prompt went through
            seen = prompt.evaluate("prompt => prompt.__ofoxPrompts")
            raise AssertionError(
                f"the cell's run {count} did not finish within {self.timeout_ms / 1000:.0f} s; "
                f"its prompt showed {seen} since Shift+Enter"
            ) from err
        finally:
            prompt.evaluate("prompt => prompt.__ofoxObserver?.disconnect()")

    def restart_kernel(self, on_dialog: Callable[[], object] | None = None) -> None:
        """Kernel → Restart Kernel…, accept the dialog, wait until the new kernel is idle.

        ``on_dialog`` is called while the dialog is shown (to take a screenshot of it). The
        toolbar's execution indicator says "idle" before the restart as well, so its statuses are
        recorded from before the click on: the restart is over once it has shown a restart state
        (``restarting``, ``starting`` …) and is idle again. Runs are numbered from 1 again.
        """
        from playwright.sync_api import TimeoutError as PlaywrightTimeoutError
        from playwright.sync_api import expect

        panel = self.panel.element_handle(timeout=self.timeout_ms)
        panel.evaluate(
            """panel => {
                panel.__ofoxStatuses = [];
                panel.__ofoxObserver?.disconnect();
                panel.__ofoxObserver = new MutationObserver(records => {
                    for (const record of records) {
                        if (record.target.classList.contains('jp-Notebook-ExecutionIndicator')) {
                            panel.__ofoxStatuses.push(record.target.getAttribute('data-status'));
                        }
                    }
                });
                panel.__ofoxObserver.observe(
                    panel, {attributes: true, attributeFilter: ['data-status'], subtree: true});
            }"""
        )
        self.menu("Kernel", "Restart Kernel…")
        dialog = self.page.locator(".jp-Dialog")
        expect(dialog).to_contain_text("Restart Kernel?", timeout=self.timeout_ms)
        if on_dialog is not None:
            on_dialog()
        dialog.locator("button.jp-mod-accept", has_text="Restart").click()
        expect(dialog).to_have_count(0, timeout=self.timeout_ms)
        try:
            self.page.wait_for_function(
                """panel => panel.__ofoxStatuses.some(s => s !== 'idle' && s !== 'busy')
                    && panel.querySelector('.jp-Notebook-ExecutionIndicator')
                        ?.getAttribute('data-status') === 'idle'""",
                arg=panel,
                timeout=self.timeout_ms,
            )
        except PlaywrightTimeoutError as err:  # say what the indicator went through
            seen = panel.evaluate("panel => panel.__ofoxStatuses")
            raise AssertionError(
                f"the kernel was not idle again {self.timeout_ms / 1000:.0f} s after Restart; "
                f"the execution indicator showed {seen}"
            ) from err
        finally:
            panel.evaluate("panel => panel.__ofoxObserver?.disconnect()")
        expect(self.panel.locator(".jp-KernelName")).to_have_text(
            self.kernel_name, timeout=self.timeout_ms
        )
        self.executions = 0


# -- the fixtures and helpers every browser test module shares. A module imports the fixtures by
# -- their ``*_fixture`` names (pytest registers them under the ``name=`` given here), so that its
# -- tests' parameters do not shadow an imported name.


@pytest.fixture(scope="module", name="chromium")
def chromium_fixture() -> str:
    return find_chromium()


def fresh_output(folder: Path) -> Path:
    """``folder`` emptied first, so that every screenshot in it is from this run."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="module", name="screenshots")
def screenshots_fixture(output_dir: Path) -> Screenshots:
    return Screenshots(output_dir)  # one numbering across the module's tests


@pytest.fixture(name="shots")
def shots_fixture(screenshots: Screenshots, capsys: pytest.CaptureFixture[str]) -> Screenshots:
    """The module's screenshots, their paths printed past pytest's output capture."""

    def announce(line: str) -> None:
        with capsys.disabled():
            print(f"\n{line}", end="")

    screenshots.announce = announce
    return screenshots


@contextmanager
def screenshot_on_failure(shots: Screenshots, page: Page, name: str) -> Iterator[None]:
    """On any failure inside, save what the page showed, then let the failure through."""
    try:
        yield
    except BaseException:
        try:
            shots.save(page, f"{name}-FAILED")
        except Exception:  # noqa: BLE001 - the original failure matters more than this one
            pass
        raise
