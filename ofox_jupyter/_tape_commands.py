"""``%ofox record`` and ``%ofox replay``: a lesson recorded once (key-free) and replayed anywhere,
offline (the transports are in :mod:`._recording`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._cell_options import fail

if TYPE_CHECKING:
    from ._magics import OfoxMagics
    from ._recording import Tape

__all__ = ["TapeCommands", "tape_from_environment"]


class TapeCommands:
    """The recording subcommands of :class:`._line_commands.LineCommands`."""

    magics: OfoxMagics

    def _options(
        self, words: list[str], allowed: dict[str, bool], command: str
    ) -> tuple[dict[str, str | bool], list[str]]:
        raise NotImplementedError  # LineCommands' parser

    def _cmd_record(self, words: list[str]) -> None:
        """``%ofox record [PATH | stop]``: every exchange from now on goes to a key-free file
        (default: beside the notebook)."""
        from ._recording import Tape

        _, rest = self._options(words, {}, "record")
        if rest == ["stop"]:
            self._untape("record")
            return
        if len(rest) > 1:
            raise fail("usage: %ofox record [PATH | stop]")
        self.magics.session  # noqa: B018 - the notebook's identity (its path) is known from here
        context = self.magics._identity.context if self.magics._identity else None
        here = Path(context.path) if context and context.path else Path.cwd() / "notebook"
        beside = here.parent if here.suffix == ".ipynb" else here
        stem = here.stem if here.suffix == ".ipynb" else "ofox"
        path = Path(rest[0]).expanduser() if rest else beside / f"{stem}.ofox-recording.jsonl"
        try:
            tape = Tape("record", path)
        except OSError as err:
            raise fail(f"%ofox record: cannot write {path}: {err.strerror or err}") from None
        self._tape(tape)
        print(f"recording every exchange to {path} (no key in it); %ofox record stop ends it")

    def _cmd_replay(self, words: list[str]) -> None:
        """``%ofox replay PATH [--fast] [--fallback-emulator] | stop``: answer from a recording."""
        from ._recording import Tape

        flags, rest = self._options(
            words, {"--fast": False, "--fallback-emulator": False}, "replay"
        )
        if rest == ["stop"]:
            self._untape("replay")
            return
        if len(rest) != 1:
            raise fail("usage: %ofox replay PATH [--fast] [--fallback-emulator] | stop")
        path = Path(rest[0]).expanduser()
        try:
            tape = Tape(
                "replay",
                path,
                fast="--fast" in flags,
                fallback_emulator="--fallback-emulator" in flags,
            )
        except OSError as err:
            raise fail(f"%ofox replay: cannot read {path}: {err.strerror or err}") from None
        except ValueError as err:
            raise fail(f"%ofox replay: {err}") from None
        self._tape(tape)
        pace = "at once" if tape.fast else "at the recorded pace"
        print(f"replaying {path.name} {pace}, offline and with no key; %ofox replay stop ends it")

    def _tape(self, tape: Any) -> None:
        self.magics.tape = tape
        self.magics.session.reset_client()

    def _untape(self, mode: str) -> None:
        tape = self.magics.tape
        if tape is None or tape.mode != mode:
            raise fail(f"%ofox {mode} stop: nothing is being {mode}ed")
        self._tape(None)
        written = tape.file
        if written is not None and written.failed:
            print(
                f"record stopped ({tape.path}): {written.recorded} exchanges written, "
                f"{written.failed} could not be ({written.failure})"
            )
            return
        print(f"{mode} stopped ({tape.path})")


def tape_from_environment() -> tuple[Tape | None, str | None]:
    """``OFOX_REPLAY=PATH``: replay from the start (a notebook run offline in CI, a class), and
    the line to say so at load."""
    path = os.environ.get("OFOX_REPLAY")
    if not path:
        return None, None
    from ._recording import Tape  # httpx is imported only when a replay is asked for

    try:
        tape = Tape("replay", Path(path).expanduser())
    except (OSError, ValueError) as err:
        return None, f"ofox: OFOX_REPLAY: cannot replay {path}: {err}"
    return tape, f"ofox: replaying {Path(path).name} (OFOX_REPLAY), offline"
