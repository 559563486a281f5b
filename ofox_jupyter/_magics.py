"""``%%ofox`` and ``%ofox``: parse the options, delegate to the session, render the result.

Settings are traitlets on :class:`OfoxMagics` (``%config OfoxMagics.model = "openai/gpt-4o"``,
or ``c.OfoxMagics.model`` in ``ipython_config.py``); the key comes from ``OFOX_API_KEY`` or
``%ofox login`` and is never written anywhere. Every expected failure is raised as IPython's
exact ``UsageError`` — shown as one line, never a traceback.
"""

from __future__ import annotations

import getpass
import os
import shlex
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class, no_var_expand
from IPython.core.magic_arguments import argument, magic_arguments
from traitlets import Enum, Float, Int, Unicode, observe

from ._compare import COMPARE_CHAT
from ._config import (
    DEFAULT_MODEL,
    OFFLINE,
    Secret,
    Timeouts,
    check_api_key,
    resolve_settings,
)
from ._display import LiveReply
from ._exceptions import ImageError, OfoxError, ToolError
from ._history import HistoryStore, StoreError, default_history_path
from ._markdown import dollars, use_escape_for
from ._messages import utf8_safe
from ._recent import RecentImages
from ._render import format_cost, text_table
from ._request import ROUTING_CHOICES, check_ranges, provider_options
from ._session import AskOptions, Exchange, Interrupted, NotebookSession
from ._template import interpolate

DETAILS = ("auto", "low", "high")  # as in _images, which is not imported until an image is sent
OFFLINE_SUFFIX = " (offline)"  # usage rows of emulator replies (see NotebookSession._finish)

if TYPE_CHECKING:
    from IPython.core.interactiveshell import InteractiveShell

    from ._client import AsyncClient, Client
    from ._identity import Identity
    from ._images import PreparedImage
    from ._tools import ToolRegistry

__all__ = ["OfoxMagics", "load_ipython_extension", "unload_ipython_extension"]

SUBCOMMANDS = (
    "models",
    "history",
    "reset",
    "usage",
    "config",
    "login",
    "logout",
    "export",
    "chat",
    "compare",
    "explain",
    "fix",
    "code",
    "tools",
)
LINE_USAGE = "usage: %ofox " + "|".join(SUBCOMMANDS) + " [options]  (%ofox? for help)"


def _fail(error: OfoxError | str) -> UsageError:
    """IPython shows exactly ``UsageError`` (not a subclass) as one line without a traceback;
    a message that quotes something multi-line (a value, a server's text) is flattened."""
    text = error.one_line() if isinstance(error, OfoxError) else error
    return UsageError(" ".join(text.split()) if "\n" in text or "\r" in text else text)


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
            self.restored_notice = _restored_notice(identity, self._session)
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

        return Client(**self._client_settings())

    def _make_async_client(self) -> AsyncClient:
        from ._client import AsyncClient

        return AsyncClient(**self._client_settings())

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
        """Remember the frontend's cell id, so a re-run cell replaces its own turn."""
        self._cell_id = getattr(info, "cell_id", None)

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
            raise _fail(f"%%ofox options: {err}") from None
        options, prompt, images = self._ask_options(args, cell)
        if args.compare is not None:
            chat = options.chat if options.chat != "main" else COMPARE_CHAT
            self._compare(prompt, args.compare.split(","), chat, options, args.out)
            return
        exchange = self._ask(prompt, options, images, args.format, None if args.code else args.out)
        if args.code:
            from ._assist import put_code_in_next_cell

            put_code_in_next_cell(self.shell, exchange.text, args.out)

    def _ask(
        self,
        prompt: str,
        options: AskOptions,
        images: list[PreparedImage],
        fmt: str | None,
        out: str | None,
    ) -> Exchange:
        """Send one turn, stream it into the cell, and publish it (``_ofox``, ``-o``); any
        failure is one line, with what arrived kept."""
        live = LiveReply(
            options.model,
            mode=self._mode(),
            fmt=fmt or str(self.format),
            max_rate=self.max_updates_per_second,
        )
        self.last_live = live
        live.start(images)
        try:
            exchange = self.session.ask(prompt, options, live)
        except Interrupted as stop:
            if stop.exchange is not None and (stop.exchange.turn or stop.exchange.reply.text):
                # The footer already says "interrupted: partial reply kept"; the error line
                # (which stops a Run All here) says what to do about it.
                live.finish(stop.exchange)
                self._publish(stop.exchange, out)
                self._store_notices()
                raise _fail("interrupted — run the cell again for the whole reply") from None
            if stop.exchange is not None:  # stopped in a tool, before any text: shown, not kept
                live.finish(stop.exchange)
                self._publish(stop.exchange, None)
            else:
                live.abandon()
            self._store_notices()
            raise _fail(stop) from None
        except OfoxError as err:
            live.abandon()
            raise _fail(err) from None
        except KeyboardInterrupt:
            live.abandon()
            raise _fail("interrupted before the reply began — nothing was recorded") from None
        except BaseException:
            live.abandon()  # a bug of ours must not leave the status line ticking
            raise
        live.finish(exchange)
        self._publish(exchange, out)
        self._store_notices()
        if exchange.error is not None:
            raise _fail(exchange.error)
        return exchange

    def _ask_options(self, args: Any, cell: str) -> tuple[AskOptions, str, list[PreparedImage]]:
        """Check every option before anything is sent; a bad one is a one-line UsageError."""
        prompt = cell.strip("\n")
        if not prompt.strip():
            raise _fail("the cell is empty: write your prompt below %%ofox")
        if args.out is not None and not args.out.isidentifier():
            raise _fail(f"-o needs a variable name, not {args.out!r}")
        if not args.chat or not args.chat.strip():
            raise _fail("--chat needs a name")
        ns = self.shell.user_ns if self.shell is not None else {}
        try:
            if args.vars:
                prompt = utf8_safe(interpolate(prompt, ns, {"Err": self._last_error}))
            if args.context is not None and self.shell is not None:
                from ._assist import recent_cells

                context = recent_cells(self.shell, args.context)
                if context:
                    prompt = utf8_safe(f"{context}\n\nMy question:\n\n{prompt}")
            fallback = [m for m in (args.fallback or "").split(",") if m.strip()]
            params: dict[str, Any] = {
                "temperature": args.temperature,
                "max_tokens": args.max_tokens,
                "top_p": args.top_p,
                "frequency_penalty": args.frequency_penalty,
                "presence_penalty": args.presence_penalty,
                "provider": provider_options(args.routing, fallback),
                "stop": args.stop,
                "seed": args.seed,
            }
            params = {k: v for k, v in params.items() if v is not None}
            check_ranges(params)  # the same checks the client applies, before anything is sent
            images = [self._image(name, args.detail) for name in args.image]
            if images:
                self.session.check_vision(args.model or str(self.model))
            tools, tool_choice = self._tools(args.tools, args.tool_choice, ns, args.chat.strip())
            response_format = self._response_format(args.json, args.schema, ns)
        except OfoxError as err:
            raise _fail(err) from None
        if response_format is not None:
            params["response_format"] = response_format
            if "json" not in prompt.lower():
                # OpenAI-family models refuse JSON mode unless the messages mention JSON.
                prompt += "\n\n(Reply in JSON.)"
        options = AskOptions(
            model=args.model or str(self.model),
            chat=args.chat.strip(),
            system=args.system,
            new=args.new,
            history=not args.no_history,
            stream=not args.no_stream,
            cell_id=self._cell_id,
            images=tuple(image.part for image in images),
            params=params,
            tools=tools,
            tool_choice=tool_choice,
            max_tool_rounds=self.max_tool_rounds,
            expect_json=response_format is not None,
        )
        return options, prompt, images

    @staticmethod
    def _tools(
        names: str | None, choice: str | None, ns: dict[str, Any], chat: str
    ) -> tuple[ToolRegistry | None, str | None]:
        """The chat's standing tools (``%ofox tools add``, ``@tool``) and ``--tools a,b``; only
        these can be called. ``--tool-choice`` checked."""
        from ._tools import Tool, ToolRegistry, standing_tools

        functions = standing_tools(chat)
        for name in (n.strip() for n in (names or "").split(",") if n.strip()):
            spec = Tool.from_function(_function(ns, name, "--tools"))
            functions[spec.name] = spec.function  # named in the cell: that definition wins
        if choice is not None and not functions:
            raise ToolError("--tool-choice needs --tools (or tools added with %ofox tools add)")
        if not functions:
            return None, None
        registry = ToolRegistry(functions.values())
        if choice is not None and choice not in ("auto", "none", "required", *registry.tools):
            raise ToolError(
                f"--tool-choice {choice!r} is not auto, none, required or one of the --tools"
            )
        return registry, choice

    @staticmethod
    def _response_format(
        json_mode: bool, schema_name: str | None, ns: dict[str, Any]
    ) -> dict[str, Any] | None:
        if json_mode and schema_name:
            raise OfoxError("use --json or --schema, not both")
        if json_mode:
            return {"type": "json_object"}
        if schema_name is None:
            return None
        schema = ns.get(schema_name)
        if not isinstance(schema, dict):
            what = "nothing" if schema_name not in ns else f"a {type(schema).__name__}"
            raise OfoxError(
                f"--schema {schema_name}: expected a JSON-schema dict, found {what}",
                hint='e.g. schema = {"type": "object", "properties": {...}}',
            )
        return {
            "type": "json_schema",
            # Strict mode is only valid for schemas that follow its rules (OpenAI answers 400
            # otherwise); any other schema is still sent, as a non-strict guide.
            "json_schema": {"name": schema_name, "schema": schema, "strict": _strict_ok(schema)},
        }

    def _image(self, name: str, detail: str | None) -> PreparedImage:
        """``--image NAME``: a variable, ``last``, or (as a convenience) a literal URL or path."""
        from ._images import prepare_image  # Pillow is imported only when an image is sent

        ns = self.shell.user_ns if self.shell is not None else {}
        if name == "last" and "last" not in ns:
            data = self.recent.last()
            if data is None:
                raise ImageError(
                    "--image last: no image has been displayed in this kernel yet",
                    hint="plot or display an image first, or name a variable",
                )
            return prepare_image(data, detail, name="last")
        if name in ns:
            return prepare_image(ns[name], detail, name=name)
        if name.startswith("data:"):
            return prepare_image(name, detail, name="the data: URL")
        if name.startswith(("http://", "https://")) or _looks_like_path(name):
            return prepare_image(name, detail, name=os.path.basename(name) or name)
        raise ImageError(
            f"--image: no variable named {name!r}",
            hint="assign the image to a variable first, or use --image last",
        )

    def _store_notices(self) -> None:
        """What the history store had to say during the cell (a failure, a re-created file),
        one line each, after the reply."""
        session = self._session
        if session is not None and session.notices:
            for notice in session.notices:
                print(utf8_safe(notice))
            session.notices.clear()

    def _publish(self, exchange: Exchange, out: str | None) -> None:
        if self.shell is None:
            return
        self.shell.user_ns["_ofox"] = exchange
        if out:
            parsed = exchange.value is not None
            self.shell.user_ns[out] = exchange.value if parsed else exchange.text

    # -- the line magic

    @no_var_expand
    @line_magic("ofox")  # type: ignore[arg-type]
    def ofox_line(self, line: str) -> None:
        """%ofox models [FILTER] [--all] | history [--chat NAME] | reset [--chat NAME | --all]
        | usage | config | login | logout | export PATH [--chat NAME] | chat [--chat NAME]
        [-m MODEL] | compare [-m MODEL,MODEL…] [-t TEMP,TEMP…] | explain [QUESTION] | fix
        [QUESTION] | code [-o NAME] | tools [add F,G | remove F] [--chat NAME]"""
        try:
            words = shlex.split(utf8_safe(line))
        except ValueError as err:
            raise _fail(f"{err}; {LINE_USAGE}") from None
        if not words:
            raise _fail(LINE_USAGE)
        command, rest = words[0], words[1:]
        handler: Callable[[list[str]], None] | None = getattr(self, f"_cmd_{command}", None)
        if command not in SUBCOMMANDS or handler is None:
            raise _fail(f"unknown subcommand {command!r}; {LINE_USAGE}")
        try:
            handler(rest)
        except OfoxError as err:
            raise _fail(err) from None
        finally:
            self._store_notices()

    def _options(
        self, words: list[str], allowed: dict[str, bool], command: str
    ) -> tuple[dict[str, str | bool], list[str]]:
        """Tiny option parser: ``allowed`` maps ``--flag`` to whether it takes a value."""
        found: dict[str, str | bool] = {}
        positional: list[str] = []
        index = 0
        while index < len(words):
            word = words[index]
            if word.startswith("-") and len(word) > 1 and not word[1].isdigit():
                if word not in allowed:
                    raise _fail(f"%ofox {command}: unknown option {word}")
                if allowed[word]:
                    if index + 1 >= len(words):
                        raise _fail(f"%ofox {command}: {word} needs a value")
                    found[word] = words[index + 1]
                    index += 1
                else:
                    found[word] = True
            else:
                positional.append(word)
            index += 1
        return found, positional

    def _show(self, markdown: str, plain: str) -> None:
        if self._mode() == "rich":
            from IPython.display import display

            display({"text/markdown": markdown, "text/plain": plain}, raw=True)
        else:
            print(plain)

    def _cmd_models(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--all": False}, "models")
        if len(rest) > 1:
            raise _fail("%ofox models takes at most one filter word")
        needle = rest[0].lower() if rest else ""
        models = [
            m
            for m in self.session.catalog(refresh=True).values()
            if (flags.get("--all") or m.is_chat)
            and (needle in m.id.lower() or needle in m.name.lower())
        ]
        if not models:
            self._show("*No models match.*", "No models match.")
            return
        header = "| model | badges | context | USD / 1M in | USD / 1M out |\n|---|---|---|---|---|"
        rows: list[str] = []
        plain: list[tuple[str, ...]] = []
        for m in sorted(models, key=lambda m: m.id):
            badges = " ".join(
                b
                for b, ok in (("vision", m.vision), ("tools", m.tools), ("json", m.json_mode))
                if ok
            )
            if m.deprecated:
                badges += " retired"
            price_in = "—" if m.prompt_price is None else f"{m.prompt_price * 1e6:g}"
            price_out = "—" if m.completion_price is None else f"{m.completion_price * 1e6:g}"
            context = f"{m.context_length:,}" if m.context_length else "—"
            rows.append(f"| `{m.id}` | {badges} | {context} | {price_in} | {price_out} |")
            plain.append((m.id, badges, context, price_in, price_out))
        skipped = self.session.catalog_skipped
        note = (
            f"{skipped} malformed catalog entr{'ies' if skipped != 1 else 'y'} left out"
            if skipped
            else ""
        )
        table = text_table(
            ("model", "badges", "context", "USD/1M in", "USD/1M out"), plain, right=(2, 3, 4)
        )
        self._show(
            header + "\n" + "\n".join(rows) + (f"\n\n*{note}*" if note else ""),
            table + (f"\n{note}" if note else ""),
        )

    def _cmd_history(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--chat": True}, "history")
        if rest:
            raise _fail("%ofox history takes no words; use --chat NAME")
        name = str(flags.get("--chat", "main"))
        conversation = self.session.chats.get(name)
        if conversation is None or not len(conversation):
            self._show(f"*Chat `{name}` is empty.*", f"Chat {name!r} is empty.")
            return
        from ._session import render_history

        self._show(*render_history(conversation))

    def _cmd_reset(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--chat": True, "--all": False}, "reset")
        if rest or ("--all" in flags and "--chat" in flags):
            raise _fail("usage: %ofox reset [--chat NAME | --all]")
        chat = None if flags.get("--all") else str(flags.get("--chat", "main"))
        removed = self.session.reset(chat)
        what = "every chat" if chat is None else f"chat {chat!r}"
        print(f"ofox: cleared {what} ({removed} turn{'s' * (removed != 1)}), here and on disk")

    def _cmd_usage(self, words: list[str]) -> None:
        if words:
            raise _fail("%ofox usage takes no options")
        rows = self.session.usage_rows()
        if not rows:
            self._show("*No requests yet in this notebook.*", "No requests yet in this notebook.")
            return
        # The cached and reasoning columns only once some request had such tokens.
        details = any(row[5] or row[6] for row in rows)
        headers = ["model", "requests", "tokens in", "tokens out"]
        headers += ["cached", "reasoning"] if details else []
        headers.append("cost")
        lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        plain: list[tuple[str, ...]] = []
        total_in = total_out = total_requests = total_cached = total_reasoning = 0
        charged: float | None = None
        listed = 0.0  # what the offline requests would have cost
        for model, prompt, completion, cost, requests, cached, reasoning in rows:
            offline = model.endswith(OFFLINE_SUFFIX)
            if cost is None:
                shown = "—"
            elif offline:
                shown, listed = f"({format_cost(cost)})", listed + cost
            else:
                shown, charged = format_cost(cost), (charged or 0.0) + cost
            counts = [str(requests), f"{prompt:,}", f"{completion:,}"]
            counts += [f"{cached:,}", f"{reasoning:,}"] if details else []
            lines.append(f"| `{model}` | {' | '.join(counts)} | {dollars(shown)} |")
            plain.append((model, *counts, shown))
            total_in += prompt
            total_out += completion
            total_requests += requests
            total_cached += cached
            total_reasoning += reasoning
        shown = "—" if charged is None else format_cost(charged)
        counts = [str(total_requests), f"{total_in:,}", f"{total_out:,}"]
        counts += [f"{total_cached:,}", f"{total_reasoning:,}"] if details else []
        lines.append(f"| **total** | {' | '.join(counts)} | **{dollars(shown)}** |")
        plain.append(("total", *counts, shown))
        table = text_table(headers, plain, right=tuple(range(1, len(headers))))
        if listed:
            note = f"(offline requests are not charged; at list prices: {format_cost(listed)})"
            lines.append(f"\n*{dollars(note)}*")
            table += "\n" + note
        self._show("\n".join(lines), table)

    def _cmd_config(self, words: list[str]) -> None:
        if words:
            raise _fail("%ofox config takes no options; change settings with %config OfoxMagics.X")
        if self._login is not None:
            key = "set by %ofox login (kernel memory only)"
        elif os.environ.get("OFOX_API_KEY"):
            key = "set by OFOX_API_KEY"
        else:
            key = "not set"
        base = self.base_url or os.environ.get("OFOX_BASE_URL") or ""
        where = "offline emulator" if self.offline() or base == OFFLINE else base or "default"
        session = self.session
        facts = [
            ("model", str(self.model)),
            ("API", where),
            ("key", key),
            ("notebook", self._identity_fact()),
            ("history", str(session.store.path or "in memory only") if session.store else "off"),
            ("display", f"{self.display_mode} ({self._mode()}), {self.format}"),
            ("retries", str(self.max_retries)),
            (
                "timeouts",
                f"first byte {self.first_byte_timeout:g} s, "
                f"between chunks {self.chunk_timeout:g} s",
            ),
        ]
        markdown = "\n".join(f"- **{k}**: {v}" for k, v in facts)
        plain = "\n".join(f"{k:>9}: {v}" for k, v in facts)
        self._show(markdown, plain)

    def _identity_fact(self) -> str:
        identity = self._identity
        if identity is None:
            return self.session.notebook
        return f"{identity.context.label} (chats filed as {identity.id})"

    def _cmd_login(self, words: list[str]) -> None:
        if words:
            raise _fail("%ofox login takes no arguments: the key is asked for, hidden")
        key = getpass.getpass("OfoxAI API key (hidden): ").strip()
        if not key:
            raise _fail("no key entered; nothing changed")
        try:
            key = check_api_key(key)
        except OfoxError as err:
            raise _fail(f"{err.one_line()}; nothing changed") from None
        self._login = Secret(key)
        self.session.reset_client()
        print("ofox: key set for this kernel only (kept in memory, never saved)")

    def _cmd_logout(self, words: list[str]) -> None:
        if words:
            raise _fail("%ofox logout takes no arguments")
        had = self._login is not None
        self._login = None
        self.session.reset_client()
        note = (
            " (OFOX_API_KEY is still set in the environment)"
            if os.environ.get("OFOX_API_KEY")
            else ""
        )
        print(f"ofox: {'key forgotten' if had else 'no key was set by %ofox login'}{note}")

    def _cmd_export(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--chat": True, "--force": False}, "export")
        if len(rest) != 1:
            raise _fail("usage: %ofox export PATH.md|PATH.json [--chat NAME] [--force]")
        chat = flags.get("--chat")
        if chat is not None and chat not in self.session.chats:
            raise _fail(f"no chat named {chat!r}")
        path = Path(rest[0]).expanduser()
        try:
            if path.exists() and not flags.get("--force"):
                raise _fail(f"%ofox export: {path} exists; add --force to overwrite it")
            turns = self.session.export(path, str(chat) if chat else None)
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise _fail(f"cannot write {path}: {reason}") from None
        print(f"ofox: wrote {turns} turn{'s' * (turns != 1)} to {path}")

    def _cmd_chat(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--chat": True, "-m": True, "--model": True}, "chat")
        if rest:
            raise _fail("usage: %ofox chat [--chat NAME] [-m MODEL]")
        from IPython.display import display

        from ._widgets import ChatWidget  # ipywidgets only when a widget is opened

        model = flags.get("-m") or flags.get("--model")
        display(
            ChatWidget(chat=str(flags.get("--chat", "main")), model=str(model) if model else None)
        )

    def _last_error(self) -> str:
        """``{Err}``: the last error of this kernel, as ``%ofox explain`` sends it."""
        from ._assist import last_error_report

        if self.shell is None:
            raise OfoxError("{Err} needs IPython")
        return last_error_report(self.shell)

    def _cmd_explain(self, words: list[str]) -> None:
        self._about_last_error(words, "explain")

    def _cmd_fix(self, words: list[str]) -> None:
        self._about_last_error(words, "fix")

    def _about_last_error(self, words: list[str], command: str) -> None:
        """``%ofox explain|fix [QUESTION] [-m MODEL] [--chat NAME]``: the last error of this
        kernel goes to the model as a turn of the chat; ``fix`` puts the code it answers with in
        a new cell below."""
        from ._assist import explain_prompt, fix_prompt, last_error_report, put_code_in_next_cell

        flags, question = self._options(
            words, {"-m": True, "--model": True, "--chat": True}, command
        )
        if self.shell is None:
            raise _fail(f"%ofox {command} needs IPython")
        report = last_error_report(self.shell)
        compose = fix_prompt if command == "fix" else explain_prompt
        prompt = compose(report, " ".join(question))
        line = []
        for flag in ("-m", "--model", "--chat"):
            if flag in flags:
                line += [flag, str(flags[flag])]
        args = self.ofox_cell.parser.parse_args(line)
        options, prompt, images = self._ask_options(args, prompt)
        exchange = self._ask(prompt, options, images, None, None)
        if command == "fix":
            put_code_in_next_cell(self.shell, exchange.text, None)

    def _cmd_code(self, words: list[str]) -> None:
        """``%ofox code [-o NAME]``: the code of the last reply, in a new cell below."""
        from ._assist import put_code_in_next_cell

        flags, rest = self._options(words, {"-o": True}, "code")
        if rest:
            raise _fail(f"%ofox code: unexpected {rest[0]!r} (usage: %ofox code [-o NAME])")
        out = flags.get("-o")
        if out is not None and not str(out).isidentifier():
            raise _fail(f"-o needs a variable name, not {out!r}")
        last = self.shell.user_ns.get("_ofox") if self.shell is not None else None
        if not isinstance(last, Exchange):
            raise _fail("no reply yet in this kernel: nothing to take code from")
        put_code_in_next_cell(self.shell, last.text, str(out) if out else None)

    def _cmd_tools(self, words: list[str]) -> None:
        """``%ofox tools [add F,G | remove F] [--chat NAME]``: the tools offered in every cell of
        a chat, listed with their schemas, added or taken away."""
        from ._reports import tools_report
        from ._tools import add_standing, remove_standing, standing_tools

        flags, rest = self._options(words, {"--chat": True}, "tools")
        chat = str(flags.get("--chat", "main"))
        usage = "usage: %ofox tools [add F,G | remove F] [--chat NAME]"
        if rest and (rest[0] not in ("add", "remove") or len(rest) != 2):
            raise _fail(f"%ofox tools: {usage}")
        ns = self.shell.user_ns if self.shell is not None else {}
        if rest and rest[0] == "add":
            names = [n.strip() for n in rest[1].split(",") if n.strip()]
            specs = add_standing(chat, [_function(ns, n, "%ofox tools add") for n in names])
            print(f"chat {chat}: {', '.join(s.name for s in specs)} offered in every later cell")
            return
        if rest:
            if not remove_standing(chat, rest[1]):
                raise _fail(f"%ofox tools remove: chat {chat} has no tool named {rest[1]!r}")
            print(f"chat {chat}: {rest[1]} no longer offered")
            return
        self._show(*tools_report(chat, standing_tools(chat)))

    def _cmd_compare(self, words: list[str]) -> None:
        allowed = {"-m": True, "--models": True, "-t": True, "--temperatures": True, "--chat": True}
        flags, rest = self._options(words, allowed, "compare")
        models = [m.strip() for m in str(flags.get("-m") or flags.get("--models") or "").split(",")]
        temps_text = str(flags.get("-t") or flags.get("--temperatures") or "")
        try:
            temperatures = [float(t) for t in temps_text.split(",") if t.strip()]
        except ValueError:
            raise _fail(f"-t takes numbers separated by commas, not {temps_text!r}") from None
        for value in temperatures:
            check_ranges({"temperature": value})
        if rest:  # a prompt: run the comparison here, and leave its result in the cell
            items = [m for m in models if m] + [f"{t!r}" for t in temperatures]
            chat = str(flags.get("--chat") or COMPARE_CHAT).strip()
            if not chat:
                raise _fail("--chat needs a name")
            options = AskOptions(model=str(self.model), cell_id=self._cell_id)
            self._compare(utf8_safe(" ".join(rest)), items, chat, options, None)
            return
        if "--chat" in flags:
            raise _fail('usage: %ofox compare ["PROMPT" [--chat NAME]] [-m MODEL,…] [-t TEMP,…]')
        from IPython.display import display

        from ._widgets import CompareWidget

        display(
            CompareWidget(
                models=[m for m in models if m] or None,
                temperatures=list(temperatures) or None,
            )
        )

    def _compare(
        self, prompt: str, items: list[str], chat: str, options: AskOptions, out: str | None
    ) -> None:
        """Run a comparison in this cell (``_compare.py``); one line if it cannot start."""
        from ._compare import Comparison, columns_from

        try:
            columns = columns_from(items, options.model)
            for column in columns:
                if column.temperature is not None:
                    check_ranges({"temperature": column.temperature})
        except OfoxError as err:
            raise _fail(err) from None
        comparison = Comparison(
            self.session,
            columns,
            chat=chat,
            cell_id=options.cell_id,
            mode=self._mode(),
            max_rate=self.max_updates_per_second,
            options=options,
        )
        try:
            exchanges = comparison.run(prompt)
        except Interrupted:
            self._store_notices()
            raise _fail("interrupted — the comparison stopped; what arrived is kept") from None
        self._store_notices()
        texts = {
            c.label: (e.text if e is not None else None)
            for c, e in zip(columns, exchanges, strict=True)
        }
        if self.shell is not None:
            self.shell.user_ns["_ofox_compare"] = texts
            if out:
                self.shell.user_ns[out] = texts


def _function(ns: dict[str, Any], name: str, where: str) -> Any:
    """The notebook's function ``name``, or one line saying why there is none."""
    if name not in ns:
        raise ToolError(f"{where}: no function named {name!r}", hint="define it first")
    if not callable(ns[name]):
        raise ToolError(f"{where}: {name!r} is a {type(ns[name]).__name__}, not a function")
    return ns[name]


def _looks_like_path(name: str) -> bool:
    """``-i`` with a word that is no variable: a path when it says so (a folder, an image file
    ending), so that a missing file is reported as one, not as an unknown variable."""
    return (
        "/" in name
        or os.sep in name
        or name.startswith("~")
        or name.lower().endswith(
            (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
        )
    )


def _strict_ok(schema: Any, depth: int = 0) -> bool:
    """Whether a JSON schema meets structured-output strict mode: every object closes its
    properties (``additionalProperties: false``) and requires all of them."""
    if depth > 64:
        return False  # a cycle, or nesting no model's strict mode takes: send it as a guide
    if isinstance(schema, list):
        return all(_strict_ok(item, depth + 1) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(_strict_ok(v, depth + 1) for k, v in schema.items() if k not in ("required", "enum"))


# magic_arguments names the usage after the method (``%ofox_cell``); the magic is ``%%ofox``
# (the help formatter adds one ``%`` to the program name).
OfoxMagics.ofox_cell.parser.prog = "%ofox"
OfoxMagics.ofox_cell.__doc__ = OfoxMagics.ofox_cell.parser.format_help()


def _restored_notice(identity: Identity, session: NotebookSession) -> str | None:
    """One line on what %load_ext found: restored chats, or a copy's start."""
    turns = sum(len(c) for c in session.chats.values())
    if not turns:
        return None
    names = ", ".join(sorted(session.chats))
    plural = "s" * (turns != 1)
    where = identity.context.label
    if identity.how == "copy":
        return (
            f"ofox: {where} is a copy of another notebook: it starts with its {turns} "
            f"turn{plural} (chat {names}); from here on the two are separate"
        )
    moved = f", formerly {Path(identity.moved_from).name}" if identity.moved_from else ""
    return f"ofox: restored {turns} turn{plural} of chat {names} for {where}{moved}"


_LOADED: dict[int, OfoxMagics] = {}


def load_ipython_extension(ip: InteractiveShell) -> None:
    """``%load_ext ofox_jupyter``: register the magics and the cell-id hook; say what's loaded."""
    magics = OfoxMagics(shell=ip)
    ip.register_magics(magics)
    ip.events.register("pre_run_cell", magics.pre_run_cell)
    magics.recent.install(ip)
    _LOADED[id(ip)] = magics
    for notice in magics.notices():
        print(utf8_safe(notice))


def unload_ipython_extension(ip: InteractiveShell) -> None:
    """Undo exactly what :func:`load_ipython_extension` did."""
    magics = _LOADED.pop(id(ip), None)
    if magics is not None:
        _unregister(ip, magics)


def _unregister(ip: InteractiveShell, magics: OfoxMagics) -> None:
    ip.events.unregister("pre_run_cell", magics.pre_run_cell)
    magics.recent.uninstall()
    for kind in ("line", "cell"):
        table = ip.magics_manager.magics[kind]
        if getattr(table.get("ofox"), "__self__", None) is magics:
            del table["ofox"]
    if ip.magics_manager.registry.get(type(magics).__name__) is magics:
        del ip.magics_manager.registry[type(magics).__name__]
    configurables: list[Any] = ip.configurables
    configurables[:] = [c for c in configurables if c is not magics]
    magics._close_session()
