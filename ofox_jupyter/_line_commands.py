"""The ``%ofox`` line subcommands: each parses its words, asks the session, and shows the result
(its tables and lists built in :mod:`._reports`). :class:`OfoxMagics` picks the subcommand and
hands over the rest of the line."""

from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ._cell_options import ask_options, fail, function_named
from ._cell_run import ask, compare
from ._compare import COMPARE_CHAT
from ._config import OFFLINE, Secret, check_api_key
from ._exceptions import OfoxError
from ._map_run import BatchCommands
from ._messages import utf8_safe
from ._render import text_table
from ._reports import usage_report
from ._request import check_ranges
from ._session import AskOptions, Exchange
from ._tape_commands import TapeCommands

if TYPE_CHECKING:
    from ._magics import OfoxMagics

__all__ = ["LINE_USAGE", "SUBCOMMANDS", "LineCommands"]

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
    "record",
    "replay",
    "batch",
)
LINE_USAGE = "usage: %ofox " + "|".join(SUBCOMMANDS) + " [options]  (%ofox? for help)"


class LineCommands(TapeCommands, BatchCommands):
    """The subcommands of one :class:`OfoxMagics` (``_cmd_NAME`` runs ``%ofox NAME``)."""

    def __init__(self, magics: OfoxMagics) -> None:
        self.magics = magics

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
                    raise fail(f"%ofox {command}: unknown option {word}")
                if allowed[word]:
                    if index + 1 >= len(words):
                        raise fail(f"%ofox {command}: {word} needs a value")
                    found[word] = words[index + 1]
                    index += 1
                else:
                    found[word] = True
            else:
                positional.append(word)
            index += 1
        return found, positional

    def _show(self, markdown: str, plain: str) -> None:
        if self.magics._mode() == "rich":
            from IPython.display import display

            display({"text/markdown": markdown, "text/plain": plain}, raw=True)
        else:
            print(plain)

    def _cmd_models(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--all": False}, "models")
        if len(rest) > 1:
            raise fail("%ofox models takes at most one filter word")
        needle = rest[0].lower() if rest else ""
        models = [
            m
            for m in self.magics.session.catalog(refresh=True).values()
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
        skipped = self.magics.session.catalog_skipped
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
            raise fail("%ofox history takes no words; use --chat NAME")
        name = str(flags.get("--chat", "main"))
        conversation = self.magics.session.chats.get(name)
        if conversation is None or not len(conversation):
            self._show(f"*Chat `{name}` is empty.*", f"Chat {name!r} is empty.")
            return
        from ._session import render_history

        self._show(*render_history(conversation))

    def _cmd_reset(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--chat": True, "--all": False}, "reset")
        if rest or ("--all" in flags and "--chat" in flags):
            raise fail("usage: %ofox reset [--chat NAME | --all]")
        chat = None if flags.get("--all") else str(flags.get("--chat", "main"))
        removed = self.magics.session.reset(chat)
        what = "every chat" if chat is None else f"chat {chat!r}"
        print(f"ofox: cleared {what} ({removed} turn{'s' * (removed != 1)}), here and on disk")

    def _cmd_usage(self, words: list[str]) -> None:
        if words:
            raise fail("%ofox usage takes no options")
        session = self.magics.session
        self._show(*usage_report(session.usage_rows(), session.budget))

    def _cmd_config(self, words: list[str]) -> None:
        if words:
            raise fail("%ofox config takes no options; change settings with %config OfoxMagics.X")
        if self.magics._login is not None:
            key = "set by %ofox login (kernel memory only)"
        elif os.environ.get("OFOX_API_KEY"):
            key = "set by OFOX_API_KEY"
        else:
            key = "not set"
        base = self.magics.base_url or os.environ.get("OFOX_BASE_URL") or ""
        where = (
            "offline emulator" if self.magics.offline() or base == OFFLINE else base or "default"
        )
        session = self.magics.session
        facts = [
            ("model", str(self.magics.model)),
            ("API", where),
            ("key", key),
            ("notebook", self._identity_fact()),
            ("history", str(session.store.path or "in memory only") if session.store else "off"),
            (
                "display",
                f"{self.magics.display_mode} ({self.magics._mode()}), {self.magics.format}",
            ),
            ("retries", str(self.magics.max_retries)),
            (
                "timeouts",
                f"first byte {self.magics.first_byte_timeout:g} s, "
                f"between chunks {self.magics.chunk_timeout:g} s",
            ),
        ]
        markdown = "\n".join(f"- **{k}**: {v}" for k, v in facts)
        plain = "\n".join(f"{k:>9}: {v}" for k, v in facts)
        self._show(markdown, plain)

    def _identity_fact(self) -> str:
        identity = self.magics._identity
        if identity is None:
            return self.magics.session.notebook
        return f"{identity.context.label} (chats filed as {identity.id})"

    def _cmd_login(self, words: list[str]) -> None:
        if words:
            raise fail("%ofox login takes no arguments: the key is asked for, hidden")
        key = getpass.getpass("OfoxAI API key (hidden): ").strip()
        if not key:
            raise fail("no key entered; nothing changed")
        try:
            key = check_api_key(key)
        except OfoxError as err:
            raise fail(f"{err.one_line()}; nothing changed") from None
        self.magics._login = Secret(key)
        self.magics.session.reset_client()
        print("ofox: key set for this kernel only (kept in memory, never saved)")

    def _cmd_logout(self, words: list[str]) -> None:
        if words:
            raise fail("%ofox logout takes no arguments")
        had = self.magics._login is not None
        self.magics._login = None
        self.magics.session.reset_client()
        note = (
            " (OFOX_API_KEY is still set in the environment)"
            if os.environ.get("OFOX_API_KEY")
            else ""
        )
        print(f"ofox: {'key forgotten' if had else 'no key was set by %ofox login'}{note}")

    def _cmd_export(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--chat": True, "--force": False}, "export")
        if len(rest) != 1:
            raise fail("usage: %ofox export PATH.md|PATH.json [--chat NAME] [--force]")
        chat = flags.get("--chat")
        if chat is not None and chat not in self.magics.session.chats:
            raise fail(f"no chat named {chat!r}")
        path = Path(rest[0]).expanduser()
        try:
            if path.exists() and not flags.get("--force"):
                raise fail(f"%ofox export: {path} exists; add --force to overwrite it")
            turns = self.magics.session.export(path, str(chat) if chat else None)
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise fail(f"cannot write {path}: {reason}") from None
        print(f"ofox: wrote {turns} turn{'s' * (turns != 1)} to {path}")

    def _cmd_chat(self, words: list[str]) -> None:
        flags, rest = self._options(words, {"--chat": True, "-m": True, "--model": True}, "chat")
        if rest:
            raise fail("usage: %ofox chat [--chat NAME] [-m MODEL]")
        from IPython.display import display

        from ._widgets import ChatWidget  # ipywidgets only when a widget is opened

        model = flags.get("-m") or flags.get("--model")
        display(
            ChatWidget(chat=str(flags.get("--chat", "main")), model=str(model) if model else None)
        )

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
        if self.magics.shell is None:
            raise fail(f"%ofox {command} needs IPython")
        self.magics.session.client  # noqa: B018 - the key is a live secret: scrubbed before cuts
        report = last_error_report(self.magics.shell, self.magics.last_error)
        compose = fix_prompt if command == "fix" else explain_prompt
        prompt = compose(report, " ".join(question))
        line = []
        for flag in ("-m", "--model", "--chat"):
            if flag in flags:
                line += [flag, str(flags[flag])]
        args = self.magics.ofox_cell.parser.parse_args(line)
        options, prompt, images = ask_options(self.magics, args, prompt)
        exchange = ask(self.magics, prompt, options, images, None, None)
        if command == "fix":
            put_code_in_next_cell(self.magics.shell, exchange.text, None)

    def _cmd_code(self, words: list[str]) -> None:
        """``%ofox code [-o NAME]``: the code of the last reply, in a new cell below."""
        from ._assist import put_code_in_next_cell

        flags, rest = self._options(words, {"-o": True}, "code")
        if rest:
            raise fail(f"%ofox code: unexpected {rest[0]!r} (usage: %ofox code [-o NAME])")
        out = flags.get("-o")
        if out is not None and not str(out).isidentifier():
            raise fail(f"-o needs a variable name, not {out!r}")
        last = self.magics.shell.user_ns.get("_ofox") if self.magics.shell is not None else None
        if not isinstance(last, Exchange):
            raise fail("no reply yet in this kernel: nothing to take code from")
        put_code_in_next_cell(self.magics.shell, last.text, str(out) if out else None)

    def _cmd_tools(self, words: list[str]) -> None:
        """``%ofox tools [add F,G | remove F] [--chat NAME]``: the tools offered in every cell of
        a chat, listed with their schemas, added or taken away."""
        from ._reports import tools_report
        from ._tools import add_standing, remove_standing, standing_tools

        flags, rest = self._options(words, {"--chat": True}, "tools")
        chat = str(flags.get("--chat", "main"))
        usage = "usage: %ofox tools [add F,G | remove F] [--chat NAME]"
        if rest and (rest[0] not in ("add", "remove") or len(rest) != 2):
            raise fail(f"%ofox tools: {usage}")
        ns = self.magics.shell.user_ns if self.magics.shell is not None else {}
        if rest and rest[0] == "add":
            names = [n.strip() for n in rest[1].split(",") if n.strip()]
            specs = add_standing(chat, [function_named(ns, n, "%ofox tools add") for n in names])
            print(f"chat {chat}: {', '.join(s.name for s in specs)} offered in every later cell")
            return
        if rest:
            if not remove_standing(chat, rest[1]):
                raise fail(f"%ofox tools remove: chat {chat} has no tool named {rest[1]!r}")
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
            raise fail(f"-t takes numbers separated by commas, not {temps_text!r}") from None
        for value in temperatures:
            check_ranges({"temperature": value})
        if rest:  # a prompt: run the comparison here, and leave its result in the cell
            items = [m for m in models if m] + [f"{t!r}" for t in temperatures]
            chat = str(flags.get("--chat") or COMPARE_CHAT).strip()
            if not chat:
                raise fail("--chat needs a name")
            options = AskOptions(model=str(self.magics.model), cell_id=self.magics._cell_id)
            compare(self.magics, utf8_safe(" ".join(rest)), items, chat, options, None)
            return
        if "--chat" in flags:
            raise fail('usage: %ofox compare ["PROMPT" [--chat NAME]] [-m MODEL,…] [-t TEMP,…]')
        from IPython.display import display

        from ._widgets import CompareWidget

        display(
            CompareWidget(
                models=[m for m in models if m] or None,
                temperatures=list(temperatures) or None,
            )
        )
