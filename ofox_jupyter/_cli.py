"""The ``ofox-jupyter`` command; ``ofox-jupyter demo`` runs the quickstart notebook in a kernel.

The demo executes the notebook with nbclient and echoes it to the terminal as it goes: each cell's
source, then its outputs. A ``%%ofox`` reply is printed piece by piece while the kernel streams it
(from the ``update_display_data`` messages of the live output), then completed with its footer
from the final ``display_data`` — so the terminal shows what a notebook frontend shows. The
executed notebook is written to ``--output`` (default ``quickstart.executed.ipynb``).

Without ``OFOX_API_KEY`` the kernel talks to the built-in emulator, slowed down with
``OFOX_EMULATOR_DELAY`` so that the streaming can be seen; with a key, to the real API. The kernel
gets a private history file and no ``JPY_SESSION_NAME``, so every run starts with empty chats and
leaves nothing in the user's own history.

Expected failures are one line on stderr with a non-zero exit status: 2 for a bad command line or
an unreadable notebook, 1 when running it fails, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import signal
import sys
import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from jupyter_core.utils import ensure_async, run_sync
from nbclient import NotebookClient

from ._display import CURSOR, LIVE_KEY
from ._version import __version__

if TYPE_CHECKING:
    from nbformat import NotebookNode

__all__ = ["DemoError", "EchoingClient", "TerminalEcho", "main", "quickstart_notebook", "run_demo"]

PROG = "ofox-jupyter"

#: Seconds between streamed chunks of the offline emulator in the demo (unless the user set it):
#: slow enough to watch the reply grow, quick enough that the whole tour takes seconds.
DEMO_DELAY = "0.05"

#: The kernel name that means "a Python kernel in this very environment" (see ``_kernel_manager``).
CURRENT_ENV_KERNEL = "ofox-current-env"

#: Seconds a cell may run before the demo gives up on it (a real model may think for a while).
CELL_TIMEOUT = 600


class DemoError(Exception):
    """A failure reported as one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- the notebook


def quickstart_notebook() -> tuple[str, str]:
    """The quickstart notebook's text and where it came from.

    A wheel ships it as package data (``ofox_jupyter/_demo/``, see ``pyproject.toml``); an editable
    install or a source checkout has it in ``notebooks/`` next to the package — the live file, so
    an edited notebook is demonstrated as it is.
    """
    shipped = resources.files("ofox_jupyter") / "_demo" / "quickstart.ipynb"
    if shipped.is_file():
        return shipped.read_text(encoding="utf-8"), "quickstart.ipynb"
    checkout = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8"), str(checkout)
    raise DemoError(
        "the quickstart notebook is not installed with ofox_jupyter; reinstall the package "
        "or pass --notebook PATH",
        status=2,
    )


def _read_notebook(path: Path | None) -> tuple[NotebookNode, str]:
    import nbformat

    if path is None:
        text, name = quickstart_notebook()
    else:
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise DemoError(f"notebook not found: {path}", status=2) from None
        except (OSError, UnicodeDecodeError) as err:
            raise DemoError(f"cannot read {path}: {err}", status=2) from None
    try:
        notebook = nbformat.reads(text, as_version=4)
        nbformat.validate(notebook)
    except Exception as err:  # noqa: BLE001 - JSON, schema and version errors all mean "not a notebook"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DemoError(f"{name} is not a valid notebook: {first}", status=2) from None
    return notebook, name


# -- echoing the run to the terminal


def _text(data: Mapping[str, Any], *kinds: str) -> str:
    """The first of ``kinds`` present in a MIME bundle, as one string ("" when none is)."""
    for kind in kinds:
        value = data.get(kind)
        if value:
            return "".join(value) if isinstance(value, list) else str(value)
    return ""


class TerminalEcho:
    """Prints a notebook run: cell sources, then outputs, with ``%%ofox`` replies as they grow.

    Feed it every iopub message of a cell (:meth:`message`) and call :meth:`cell` before each
    cell. The live output of a reply is followed through its updates: only the text added since
    the previous update is printed, so the terminal shows the reply arriving in pieces.
    """

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._code_cells = 0
        self._line_open = False  # the last write did not end a line
        # The reply text printed so far from the current live output; None when none is live.
        self._streamed: str | None = None
        self._notes: set[str] = set()  # thumbnails lines printed from live outputs

    def _write(self, text: str) -> None:
        if text:
            self._out.write(text)
            self._out.flush()  # a reply should appear as it arrives, not when a buffer fills
            self._line_open = not text.endswith("\n")

    def end_line(self) -> None:
        """Finish a line left open by a reply cut short, so what follows starts on its own."""
        if self._line_open:
            self._write("\n")

    def cell(self, cell: NotebookNode, cell_index: int, **_: Any) -> None:
        """An nbclient ``on_cell_start`` hook: a Markdown cell as it is, a code cell's source."""
        source = cell.source.strip("\n")
        self._streamed = None
        self._notes.clear()
        if not source:
            return
        if cell.cell_type == "markdown":
            self._write(f"\n{source}\n")
        elif cell.cell_type == "code":
            self._code_cells += 1
            prompt = f"In [{self._code_cells}]: "
            indent = "\n" + " " * len(prompt)
            # A blank line after the source sets the outputs apart from the code.
            self._write(f"\n{prompt}{indent.join(source.splitlines())}\n\n")

    def message(self, msg: Mapping[str, Any]) -> None:
        """One iopub message of the running cell."""
        kind = msg["msg_type"]
        content = msg["content"]
        if kind == "stream":
            self._write(content.get("text", ""))
        elif kind in ("display_data", "execute_result"):
            transient = content.get("transient") or {}
            if transient.get("display_id"):
                # A live output begins (empty, then updated while the reply streams).
                if self._streamed is None:
                    self._streamed = ""
                return
            metadata = content.get("metadata") or {}
            self._final(_text(content.get("data", {}), "text/plain"), reply="ofox" in metadata)
        elif kind == "update_display_data":
            live = (content.get("metadata") or {}).get(LIVE_KEY)
            if isinstance(live, dict) and isinstance(live.get("at"), int):
                self._grow(live["at"], _text(content.get("data", {}), "text/markdown"))
            elif isinstance(live, dict) and live.get("images"):
                # The thumbnails of the images sent, shown before the reply as in the cell;
                # their copy published after the reply is then not printed again.
                note = _text(content.get("data", {}), "text/plain")
                if note and note not in self._notes:
                    self._notes.add(note)
                    self._write(note + "\n")
            # Other updates are the status line or a live output emptied.
        elif kind == "error":
            self._write(f"{content.get('ename', 'Error')}: {content.get('evalue', '')}\n")

    def _grow(self, at: int, text: str) -> None:
        """A live output holding the reply's text from ``at`` on (LiveReply's LIVE_KEY)."""
        text = text.removesuffix(CURSOR)
        shown = self._streamed or ""
        if at <= len(shown) < at + len(text):
            added = text[len(shown) - at :]
        elif at > len(shown):  # text we never saw (cannot happen): keep going on a new line
            added = "\n" + text
        else:
            return  # nothing new (a finished block given its final text)
        self._write(added)
        self._streamed = shown + added

    def _final(self, text: str, *, reply: bool) -> None:
        if not text:
            return  # an empty output
        shown = self._streamed or ""
        if not reply:
            if text in self._notes:
                return  # printed when its live copy appeared
            # Something else the cell showed: on its own line.
            self.end_line()
            self._write(text if text.endswith("\n") else text + "\n")
            return
        footer = text.rfind("\n\n— ")
        if shown and text.startswith(shown):
            text = text[len(shown) :]  # the rest of the reply (throttled away) and the footer
        elif shown and footer > 0 and text[:footer].endswith(" more characters in the Markdown)"):
            text = text[footer:]  # a long reply's plain copy is shortened: it was seen live
        elif shown:
            text = "\n" + text
        self._write(text if text.endswith("\n") else text + "\n")
        self._streamed = None


class _Stopped(Exception):
    """Ctrl-C came between cells: run no further cell."""


class EchoingClient(NotebookClient):
    """An nbclient ``NotebookClient`` that shows every output message to a :class:`TerminalEcho`.

    Ctrl-C interrupts the running cell, as in Jupyter, and stops the run; a second Ctrl-C kills
    the kernel. Either way the kernel is cleaned up once, and ``interrupted`` says it happened.
    """

    def __init__(self, nb: NotebookNode, echo: TerminalEcho, **kwargs: Any) -> None:
        super().__init__(nb, on_cell_start=echo.cell, **kwargs)
        self._echo = echo
        self.interrupted = False

    def process_message(
        self, msg: dict[str, Any], cell: NotebookNode, cell_index: int
    ) -> NotebookNode | None:
        # nbclient saves only the last state of a display; the updates on the way are what a
        # terminal needs to show streaming, so every message is echoed before nbclient sees it.
        self._echo.message(msg)
        return super().process_message(msg, cell, cell_index)

    async def async_start_new_kernel(self, **kwargs: Any) -> None:
        # nbclient's own SIGINT handler (installed just before this) shuts the kernel down under
        # the running cell and then cleans up a second time, which fails inside nbclient with a
        # traceback. Replace it: interrupting the cell lets it end normally (a %%ofox reply keeps
        # its partial text) and the kernel shut down in order.
        try:
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, self._interrupt)
        except (NotImplementedError, RuntimeError):
            pass  # no loop signal handlers (Windows, or not the main thread): nbclient's stays
        await super().async_start_new_kernel(**kwargs)

    def _interrupt(self) -> None:
        # The first Ctrl-C interrupts the cell; another one means "stop waiting for it".
        kill = self.interrupted
        self.interrupted = True
        asyncio.get_running_loop().create_task(self._signal_kernel(kill))

    async def _signal_kernel(self, kill: bool) -> None:
        km = self.km
        if km is None or not await ensure_async(km.is_alive()):
            return  # not started yet (the run stops before its first cell) or already gone
        if kill:
            # nbclient notices the dead kernel within a second and ends the run.
            await ensure_async(km.signal_kernel(signal.SIGKILL))
        else:
            await ensure_async(km.interrupt_kernel())

    async def _async_cleanup_kernel(self) -> None:
        # nbclient cleans up after a kernel that failed to start, yet leaves its atexit hook in
        # place, which then fails on the missing kernel manager; once is enough.
        if self.km is not None:
            await super()._async_cleanup_kernel()

    _cleanup_kernel = run_sync(_async_cleanup_kernel)  # the atexit hook, bound to the above

    async def async_execute_cell(
        self,
        cell: NotebookNode,
        cell_index: int,
        execution_count: int | None = None,
        store_history: bool = True,
    ) -> NotebookNode:
        if self.interrupted:
            raise _Stopped
        return await super().async_execute_cell(cell, cell_index, execution_count, store_history)


# -- the kernel


def _kernel_manager(kernel: str | None) -> Any:
    """A kernel manager for the named kernel, or for a Python kernel in this environment.

    By default the kernel is this interpreter (as ``nbval --nbval-current-env`` does): a
    ``python3`` kernelspec installed elsewhere may point at a Python without ofox_jupyter.
    """
    import ipykernel.kernelspec
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    class CurrentEnvSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            if kernel_name == CURRENT_ENV_KERNEL:
                return KernelSpec(
                    resource_dir=ipykernel.kernelspec.RESOURCES,
                    **ipykernel.kernelspec.get_kernel_dict(),
                )
            return super().get_kernel_spec(kernel_name)

    return AsyncKernelManager(
        kernel_name=kernel or CURRENT_ENV_KERNEL, kernel_spec_manager=CurrentEnvSpecs()
    )


def _kernel_env(history: Path) -> tuple[dict[str, str], str]:
    """The kernel's environment, and a phrase saying where its replies will come from."""
    from ._config import resolve_settings
    from ._exceptions import OfoxError

    env = dict(os.environ)
    env.pop("JPY_SESSION_NAME", None)  # a per-kernel chat key: the demo starts with empty chats
    env["OFOX_HISTORY_PATH"] = str(history)
    try:
        settings = resolve_settings()
    except OfoxError as err:
        raise DemoError(err.one_line()) from None
    if not settings.offline:
        return env, f"the API at {settings.base_url}"
    from .emulator._server import DELAY_ENV, shared_delay, shared_latency, shared_rpm

    try:
        # A bad OFOX_EMULATOR_DELAY, _RPM or _LATENCY is reported here, not by the first cell.
        shared_delay(), shared_latency(), shared_rpm()
    except ValueError as err:
        raise DemoError(str(err), status=2) from None
    env.setdefault(DELAY_ENV, DEMO_DELAY)
    return env, "the offline emulator (no OFOX_API_KEY; set one for real models)"


def _last_line(path: Path) -> str:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1].strip() if lines else ""


def _failure(err: BaseException, interrupted: bool, kernel: str | None, log: Path) -> DemoError:
    """The one-line report of a failed run."""
    from jupyter_client.kernelspec import NoSuchKernel
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    if interrupted:
        return DemoError("interrupted", status=130)
    if isinstance(err, NoSuchKernel):
        message = f"no kernel named {kernel!r} (`jupyter kernelspec list` shows them)"
        return DemoError(message, status=2)
    if isinstance(err, CellTimeoutError):
        return DemoError(f"a cell ran longer than {CELL_TIMEOUT} s; stopped")
    if isinstance(err, CellExecutionError):
        return DemoError(f"a cell failed: {err.ename}: {err.evalue}")
    # DeadKernelError, a kernel that does not start (RuntimeError), and anything else: the
    # kernel's last words say more than nbclient's message.
    lines = str(err).strip().splitlines()
    detail = _last_line(log) or (lines[-1] if lines else type(err).__name__)
    return DemoError(f"the kernel failed: {detail}")


def run_demo(notebook_path: Path | None, output: Path, kernel: str | None, out: TextIO) -> None:
    """Execute the notebook, echoing it to ``out``, and write the executed copy to ``output``."""
    import nbformat

    notebook, name = _read_notebook(notebook_path)
    if not output.parent.is_dir():
        raise DemoError(f"cannot write {output}: no directory {output.parent}", status=2)
    with tempfile.TemporaryDirectory(prefix="ofox-demo-") as scratch:
        env, where = _kernel_env(Path(scratch) / "history.sqlite3")
        log = Path(scratch) / "kernel.log"
        out.write(f"{PROG} demo: running {name} on {where}\n")
        out.flush()
        echo = TerminalEcho(out)
        # record_timing off: the executed notebook then differs from the committed one only
        # where outputs do, and the "raises-exception" tag lets the deliberate mistake through.
        client = EchoingClient(
            notebook,
            echo,
            km=_kernel_manager(kernel),
            timeout=CELL_TIMEOUT,
            record_timing=False,
            resources={"metadata": {"path": str(Path.cwd())}},
        )
        # The kernel's own stderr (ipykernel warnings) would interleave with the transcript; it
        # goes to a log whose last line explains a kernel that fails to start or dies.
        with log.open("w", encoding="utf-8") as kernel_stderr:
            try:
                client.execute(cleanup_kc=True, env=env, stderr=kernel_stderr)
            # CancelledError too: it is what escapes when nbclient's cleanup cancels a start.
            except (Exception, asyncio.CancelledError) as err:  # noqa: BLE001 - all become one line
                echo.end_line()
                raise _failure(err, client.interrupted, kernel, log) from None
    try:
        nbformat.write(notebook, str(output))
    except OSError as err:
        raise DemoError(f"cannot write {output}: {err.strerror or err}") from None
    out.write(f"\n{PROG} demo: wrote the executed notebook to {output}\n")
    out.flush()


# -- the command line


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="OfoxAI chat in Jupyter.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo = commands.add_parser(
        "demo",
        help="run the quickstart notebook in a kernel, streaming the replies here",
        description="Run the quickstart notebook end to end in a Jupyter kernel, printing each "
        "cell and streaming the replies; on the offline emulator unless OFOX_API_KEY is set.",
    )
    demo.add_argument(
        "--notebook", type=Path, help="the notebook to run (default: the bundled quickstart)"
    )
    demo.add_argument(
        "--output",
        type=Path,
        default=Path("quickstart.executed.ipynb"),
        help="where to write the executed notebook (default: %(default)s)",
    )
    demo.add_argument("--kernel", help="kernel name (default: a Python kernel in this environment)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    out = sys.stdout
    if isinstance(out, io.TextIOWrapper):
        # A reply may hold characters a legacy console encoding lacks; show "?" rather than fail.
        out.reconfigure(errors="replace")
    try:
        run_demo(args.notebook, args.output.expanduser().resolve(), args.kernel, out)
    except DemoError as err:
        out.flush()
        print(f"{PROG} demo: {err}", file=sys.stderr)
        return err.status
    except KeyboardInterrupt:
        out.flush()
        print(f"\n{PROG} demo: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
