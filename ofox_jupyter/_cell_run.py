"""Running what a ``%%ofox`` cell (or ``%ofox explain``, ``fix``, ``compare``) asks: one turn
streamed into the cell, or a comparison, with every failure turned into one line and what
arrived kept; then ``_ofox`` / ``-o`` set and the history store's notices printed."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._cell_options import fail
from ._display import LiveReply
from ._exceptions import OfoxError
from ._messages import utf8_safe
from ._request import check_ranges
from ._session import AskOptions, Exchange, Interrupted

if TYPE_CHECKING:
    from ._images import PreparedImage
    from ._magics import OfoxMagics

__all__ = ["ask", "compare", "publish", "store_notices"]


def ask(
    magics: OfoxMagics,
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
        mode=magics._mode(),
        fmt=fmt or str(magics.format),
        max_rate=magics.max_updates_per_second,
    )
    magics.last_live = live
    live.start(images)
    try:
        exchange = magics.session.ask(prompt, options, live)
    except Interrupted as stop:
        if stop.exchange is not None and (stop.exchange.turn or stop.exchange.reply.text):
            # The footer already says "interrupted: partial reply kept"; the error line
            # (which stops a Run All here) says what to do about it.
            live.finish(stop.exchange)
            publish(magics, stop.exchange, out)
            store_notices(magics)
            raise fail("interrupted — run the cell again for the whole reply") from None
        if stop.exchange is not None:  # stopped in a tool, before any text: shown, not kept
            live.finish(stop.exchange)
            publish(magics, stop.exchange, None)
        else:
            live.abandon()
        store_notices(magics)
        raise fail(stop) from None
    except OfoxError as err:
        live.abandon()
        raise fail(err) from None
    except KeyboardInterrupt:
        live.abandon()
        raise fail("interrupted before the reply began — nothing was recorded") from None
    except BaseException:
        live.abandon()  # a bug of ours must not leave the status line ticking
        raise
    live.finish(exchange)
    publish(magics, exchange, out)
    store_notices(magics)
    if exchange.error is not None:
        raise fail(exchange.error)
    return exchange


def publish(magics: OfoxMagics, exchange: Exchange, out: str | None) -> None:
    if magics.shell is None:
        return
    magics.shell.user_ns["_ofox"] = exchange
    if out:
        parsed = exchange.value is not None
        magics.shell.user_ns[out] = exchange.value if parsed else exchange.text


def store_notices(magics: OfoxMagics) -> None:
    """What the history store had to say during the cell (a failure, a re-created file),
    one line each, after the reply."""
    session = magics._session
    if session is not None and session.notices:
        for notice in session.notices:
            print(utf8_safe(notice))
        session.notices.clear()


def compare(
    magics: OfoxMagics,
    prompt: str,
    items: list[str],
    chat: str,
    options: AskOptions,
    out: str | None,
) -> None:
    """Run a comparison in this cell (``_compare.py``); one line if it cannot start."""
    from ._compare import Comparison, columns_from

    try:
        columns = columns_from(items, options.model)
        for column in columns:
            if column.temperature is not None:
                check_ranges({"temperature": column.temperature})
    except OfoxError as err:
        raise fail(err) from None
    comparison = Comparison(
        magics.session,
        columns,
        chat=chat,
        cell_id=options.cell_id,
        mode=magics._mode(),
        max_rate=magics.max_updates_per_second,
        options=options,
    )
    try:
        exchanges = comparison.run(prompt)
    except Interrupted:
        store_notices(magics)
        raise fail("interrupted — the comparison stopped; what arrived is kept") from None
    store_notices(magics)
    texts = {
        c.label: (e.text if e is not None else None)
        for c, e in zip(columns, exchanges, strict=True)
    }
    if magics.shell is not None:
        magics.shell.user_ns["_ofox_compare"] = texts
        if out:
            magics.shell.user_ns[out] = texts
