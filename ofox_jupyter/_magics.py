"""``%%ofox`` and ``%ofox``: parse the options, delegate to the session, render the result.

Settings are traitlets on :class:`OfoxMagics` (``%config OfoxMagics.model = "openai/gpt-4o"``,
or ``c.OfoxMagics.model`` in ``ipython_config.py``); the key comes from ``OFOX_API_KEY`` or
``%ofox login`` and is never written anywhere. Every expected failure is raised as IPython's
exact ``UsageError`` — shown as one line, never a traceback.
"""

from __future__ import annotations

import shlex
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Enum, Float, Int, Unicode, observe

from ._budget import cost_cap
from ._cell_options import DETAILS, ask_options, fail
from ._cell_run import ask, compare, store_notices
from ._compare import COMPARE_CHAT
from ._config import (
    DEFAULT_MODEL,
    Secret,
    Timeouts,
    resolve_settings,
)
from ._context import users_error
from ._display import LiveReply
from ._exceptions import OfoxError
from ._history import HistoryStore, StoreError, default_history_path
from ._line_commands import LINE_USAGE, SUBCOMMANDS, LineCommands
from ._map_run import map_arguments, run_map
from ._markdown import use_escape_for
from ._messages import utf8_safe
from ._recent import RecentImages
from ._reports import restored_notice
from ._request import ROUTING_CHOICES
from ._session import NotebookSession
from ._tape_commands import tape_from_environment

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ._client import AsyncClient, Client
    from ._identity import Identity
    from ._recording import Tape

__all__ = ["OfoxMagics"]


@magics_class
class OfoxMagics(Magics):
    """The OfoxAI magics. ``%%ofox`` sends the cell; ``%ofox SUBCOMMAND`` manages chats."""

    model = Unicode(DEFAULT_MODEL, help="Model id used when a cell gives no -m.").tag(config=True)
    base_url = Unicode(
        "", help="API base URL; empty means OFOX_BASE_URL or https://api.ofox.ai/v1."
    ).tag(config=True)
    max_retries = Int(2, help="Retries before the first byte (429, 5xx, network).").tag(config=True)
    first_byte_timeout = Float(120.0, help="Seconds to wait for a reply to begin.").tag(config=True)
    chunk_timeout = Float(60.0, help="Seconds a stream may stay silent once begun.").tag(
        config=True
    )
    display_mode = Enum(
        ("auto", "rich", "text"),
        "auto",
        help="rich: live Markdown in the cell; text: stream plain text to stdout; auto: rich "
        "in a Jupyter kernel, text in terminal IPython.",
    ).tag(config=True)
    format = Enum(("markdown", "text"), "markdown", help="How replies are shown.").tag(config=True)
    max_updates_per_second = Float(12.0, help="Bound on live display updates.").tag(config=True)
    max_context_tokens = Int(
        0, help="Cap on tokens of history sent; 0 uses the model's context length."
    ).tag(config=True)
    max_tool_rounds = Int(
        5, help="Most rounds of tool calls in one exchange before the model must answer."
    ).tag(config=True)
    max_cost = Float(
        0.0, help="Most this kernel session may spend, in USD; 0: OFOX_MAX_COST, or no cap."
    ).tag(config=True)
    batch_confirm_cost = Float(
        1.0, help="A %%ofox --map batch that could cost more (USD) asks first; 0: never asks."
    ).tag(config=True)
    history_path = Unicode(
        "", help="SQLite file of the chats; empty means OFOX_HISTORY_PATH or the Jupyter data dir."
    ).tag(config=True)
    history_key = Unicode(
        "",
        help="File this kernel's chats under this key instead of the notebook it runs (or, in "
        "terminal IPython, the working directory); kernels with the same key share the chats.",
    ).tag(config=True)

    def __init__(self, shell: InteractiveShell | None = None, **kwargs: Any) -> None:
        # Set before the traitlets machinery runs: loading config fires the observers below.
        self._login: Secret | None = None
        self._cell_id: str | None = None
        self._session: NotebookSession | None = None
        self._identity: Identity | None = None
        self.restored_notice: str | None = None
        self.store_notice: str | None = None
        #: The renderer of the last ``%%ofox`` cell, kept for inspection: its ``updates`` count
        #: and ``first_text_at``/``first_shown_at`` timings (bench/display_updates.py reads them).
        self.last_live: LiveReply | None = None
        self.recent = RecentImages()
        self.last_error: BaseException | None = None
        #: ``%ofox record`` / ``%ofox replay`` (or OFOX_REPLAY): how the clients reach the API.
        self.tape: Tape | None
        self.tape, self.tape_notice = tape_from_environment()
        super().__init__(shell=shell, **kwargs)

    # -- wiring

    @property
    def session(self) -> NotebookSession:
        if self._session is None:
            store, identity = self._open_history()
            self._identity = identity
            self._session = NotebookSession(
                notebook=identity.id,
                client_factory=self._make_client,
                async_client_factory=self._make_async_client,
                store=store,
                max_context_tokens=self.max_context_tokens,
            )
            self._session.budget.limit = cost_cap(self.max_cost)
            self.restored_notice = restored_notice(identity, self._session)
            if identity.note:
                self._session.notices.append(f"ofox: {identity.note}")
        return self._session

    def _open_history(self) -> tuple[HistoryStore, Identity]:
        """The store and this kernel's notebook id in it; when the store cannot be used, chats
        are kept in memory (one notice says so) rather than every cell failing."""
        from ._identity import detect_context, resolve

        ns = self.shell.user_ns if self.shell is not None else {}
        use_escape_for(vscode="__vsc_ipynb_file__" in ns)  # how money is kept from math
        context = detect_context(ns, str(self.history_key))
        path = Path(self.history_path) if self.history_path else default_history_path()
        try:
            store = HistoryStore(path)
            try:
                return store, resolve(store, context, claims=path.parent / "claims")
            except BaseException:
                store.close()
                raise
        except (OSError, sqlite3.Error, StoreError) as err:
            self.store_notice = (
                f"ofox: cannot keep history in {path} ({err}); chats are kept in memory "
                "only (set OFOX_HISTORY_PATH or %config OfoxMagics.history_path)"
            )
            return HistoryStore(None), resolve(None, context, claims=None)

    def _client_settings(self) -> dict[str, Any]:
        """What both clients are built from: the login key, then these traits."""
        return {
            "api_key": self._login.reveal() if self._login else None,
            "base_url": self.base_url or None,
            "timeout": Timeouts(
                first_byte=self.first_byte_timeout, between_chunks=self.chunk_timeout
            ),
            "max_retries": self.max_retries,
        }

    def _make_client(self) -> Client:
        from ._client import Client

        transport = self.tape.transport(asynchronous=False) if self.tape else None
        return Client(**self._client_settings(), transport=transport)

    def _make_async_client(self) -> AsyncClient:
        from ._client import AsyncClient

        transport = self.tape.transport(asynchronous=True) if self.tape else None
        return AsyncClient(**self._client_settings(), transport=transport)

    @observe("max_cost")
    def _max_cost_changed(self, change: Any) -> None:
        if self._session is not None:
            self._session.budget.limit = cost_cap(self.max_cost)

    @observe("base_url", "max_retries", "first_byte_timeout", "chunk_timeout")
    def _client_settings_changed(self, change: Any) -> None:
        if self._session is not None:
            self._session.reset_client()

    @observe("history_path", "history_key")
    def _history_path_changed(self, change: Any) -> None:
        # Reopen at the new place on next use (and restore what is there), not silently ignore.
        if self._session is not None:
            self._close_session()
            for notice in self.notices():
                print(utf8_safe(notice))

    def _close_session(self) -> None:
        session, self._session = self._session, None
        self.store_notice = self.restored_notice = None
        if session is not None:
            if not session.flush():
                print(
                    f"ofox: {session.unsaved} change{'s' * (session.unsaved != 1)} to the "
                    "chats could not be saved before closing the history store; they are lost"
                )
            session.reset_client()
            if session.store is not None:
                session.store.close()
        if self._identity is not None:
            self._identity.release()
            self._identity = None

    @observe("max_context_tokens")
    def _context_changed(self, change: Any) -> None:
        if self._session is not None:
            self._session.max_context_tokens = change["new"]

    def pre_run_cell(self, info: Any) -> None:
        """Remember the frontend's cell id (a re-run cell replaces its own turn), and the last
        error of the user's code (%ofox explain must not explain our own one-line errors)."""
        self._cell_id = getattr(info, "cell_id", None)
        self.last_error = users_error(getattr(sys, "last_value", None), self.last_error)

    def offline(self) -> bool:
        key = self._login.reveal() if self._login else None
        try:
            return resolve_settings(key, self.base_url or None).offline
        except OfoxError:
            return False

    def notices(self) -> list[str]:
        """One line each: restored history, and offline mode."""
        lines = []
        session = self.session  # loads the history
        lines += session.notices
        session.notices.clear()
        if self.store_notice:
            lines.append(self.store_notice)
        if self.restored_notice:
            lines.append(self.restored_notice)
        if self.tape_notice:
            lines.append(self.tape_notice)
        if self.offline():
            lines.append(
                "ofox: offline — no OFOX_API_KEY, so replies come from the built-in emulator "
                "(%ofox login or set OFOX_API_KEY for real models)"
            )
        return lines

    def _mode(self) -> str:
        if self.display_mode != "auto":
            return str(self.display_mode)
        return "rich" if getattr(self.shell, "kernel", None) is not None else "text"

    # -- the cell magic

    @no_var_expand
    @magic_arguments()
    @argument("-m", "--model", help="model id, e.g. openai/gpt-4o (default: OfoxMagics.model)")
    @argument("-s", "--system", help="system prompt of this chat (kept for its later turns)")
    @argument("-t", "--temperature", type=float, help="sampling temperature, 0–2")
    @argument("--max-tokens", type=int, help="longest reply, in tokens (≥ 1)")
    @argument("--top-p", type=float, help="nucleus sampling, (0, 1]")
    @argument("--frequency-penalty", type=float, help="−2 to 2")
    @argument("--presence-penalty", type=float, help="−2 to 2")
    @argument("--stop", action="append", help="stop the reply at this text (repeat for more)")
    @argument("--seed", type=int, help="ask for repeatable sampling (where the model supports it)")
    @argument("--chat", default="main", help="which conversation of this notebook")
    @argument("--new", action="store_true", help="start that conversation afresh")
    @argument("--no-history", action="store_true", help="a one-off: history not sent or kept")
    @argument("-o", "--out", help="store the reply text in this variable")
    @argument(
        "-i",
        "--image",
        action="append",
        default=[],
        help="attach an image (repeatable): a variable holding a PIL image, a matplotlib figure, "
        "bytes, a path or a URL; or 'last', the image this kernel displayed most recently",
    )
    @argument("--detail", choices=DETAILS, help="vision detail of the attached images")
    @argument("--json", action="store_true", help="JSON mode: the parsed reply goes to -o")
    @argument("--schema", help="structured output: a variable holding a JSON-schema dict")
    @argument("--tools", help="comma-separated functions of the notebook the model may call")
    @argument("--tool-choice", help="auto, none, required, or the name of one of the --tools")
    @argument("--format", choices=("markdown", "text"), help="how the reply is shown")
    @argument("--routing", choices=ROUTING_CHOICES, help="OfoxAI provider routing")
    @argument("--fallback", help="comma-separated models to fail over to")
    @argument("--no-stream", action="store_true", help="ask for a non-streamed reply")
    @argument("--vars", action="store_true", help="replace {name} by variables of the notebook")
    @argument(
        "--context",
        type=int,
        metavar="N",
        help="send the last N cells run (source, and results as text) before the prompt",
    )
    @argument(
        "--code",
        action="store_true",
        help="put the reply's code in a new cell below (not run); -o then holds the code",
    )
    @argument(
        "--compare",
        help="ask several models or temperatures side by side (comma-separated: numbers are "
        "temperatures); recorded in chat 'compare' unless --chat names another",
    )
    @map_arguments
    @cell_magic("ofox")  # type: ignore[arg-type]  # IPython annotates this decorator loosely
    def ofox_cell(self, line: str, cell: str) -> None:
        """Send the cell to an OfoxAI model and stream the answer into the output.

        The prompt is taken literally (braces included) unless --vars is given. The reply object
        is always in ``_ofox``; ``-o NAME`` also stores the reply text in NAME.
        """
        # What is typed may hold lone surrogates (half an emoji): they could be neither sent,
        # shown nor stored, so they become U+FFFD before anything else sees them.
        line, cell = utf8_safe(line), utf8_safe(cell)
        try:
            # shlex rather than IPython's arg_split, which keeps the quotes of -s "Be brief."
            args = self.ofox_cell.parser.parse_args(shlex.split(line))
        except ValueError as err:
            raise fail(f"%%ofox options: {err}") from None
        if args.map is not None:
            run_map(self, args, cell)
            return
        options, prompt, images = ask_options(self, args, cell)
        if args.compare is not None:
            chat = options.chat if options.chat != "main" else COMPARE_CHAT
            compare(self, prompt, args.compare.split(","), chat, options, args.out)
            return
        exchange = ask(self, prompt, options, images, args.format, None if args.code else args.out)
        if args.code:
            from ._assist import put_code_in_next_cell

            put_code_in_next_cell(self.shell, exchange.text, args.out)

    # -- the line magic

    @no_var_expand
    @line_magic("ofox")  # type: ignore[arg-type]
    def ofox_line(self, line: str) -> None:
        """%ofox models [FILTER] [--all] | history [--chat NAME] | reset [--chat NAME | --all]
        | usage | config | login | logout | export PATH [--chat NAME] | chat [--chat NAME]
        [-m MODEL] | compare [-m MODEL,MODEL…] [-t TEMP,TEMP…] | explain [QUESTION] | fix
        [QUESTION] | code [-o NAME] | tools [add F,G | remove F] [--chat NAME] | record [PATH |
        stop] | replay PATH [--fast] [--fallback-emulator] | replay stop | batch [clear]"""
        try:
            words = shlex.split(utf8_safe(line))
        except ValueError as err:
            raise fail(f"{err}; {LINE_USAGE}") from None
        if not words:
            raise fail(LINE_USAGE)
        command, rest = words[0], words[1:]
        handler: Callable[[list[str]], None] | None = getattr(
            LineCommands(self), f"_cmd_{command}", None
        )
        if command not in SUBCOMMANDS or handler is None:
            raise fail(f"unknown subcommand {command!r}; {LINE_USAGE}")
        try:
            handler(rest)
        except OfoxError as err:
            raise fail(err) from None
        finally:
            store_notices(self)


# magic_arguments names the usage after the method (``%ofox_cell``); the magic is ``%%ofox``
# (the help formatter adds one ``%`` to the program name).
OfoxMagics.ofox_cell.parser.prog = "%ofox"
OfoxMagics.ofox_cell.__doc__ = OfoxMagics.ofox_cell.parser.format_help()
