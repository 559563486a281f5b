"""``%%ofox --map NAME`` (the cell is a template, asked once per item of ``NAME``) and
``%ofox batch [clear]`` (the batch cache): the magic forms of :func:`._batch.batch`.

The cell's other options mean what they mean for one prompt (model, system prompt, sampling,
``--json``/``--schema``, routing and fallback) and apply to every item; the conversation options
(``--chat``, ``--new``) do not: a batch is not a chat and is kept in its cache, not the history.
The session's budget (``OfoxMagics.max_cost``) holds the batch's worst case before it is sent.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING, Any

from ._cell_options import fail
from ._exceptions import OfoxError
from ._messages import utf8_safe

if TYPE_CHECKING:
    from ._batch_plan import PreparedBatch
    from ._batch_results import ItemResult
    from ._budget import Budget
    from ._magics import OfoxMagics

__all__ = ["BatchCommands", "map_arguments", "run_map"]

#: The ``%%ofox`` options of ``--map`` (added to the cell magic's by ``_magics``).
MAP_ARGUMENTS: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (
        ("--map",),
        {
            "metavar": "NAME",
            "help": "ask the cell once per item of NAME (a list, Series or DataFrame); "
            "{item}, {item.field} fill it in; the results go to -o (default _ofox_batch)",
        },
    ),
    (("--rpm",), {"type": float, "help": "with --map: our share of the requests per minute"}),
    (("--dry-run",), {"action": "store_true", "help": "with --map: the plan and cost, not sent"}),
    (("--yes",), {"action": "store_true", "help": "with --map: send without asking about cost"}),
    (("--no-cache",), {"action": "store_true", "help": "with --map: send everything, keep none"}),
]


def map_arguments(function: Any) -> Any:
    """Add :data:`MAP_ARGUMENTS` to a magic's ``magic_arguments``."""
    from IPython.core.magic_arguments import argument

    for names, options in reversed(MAP_ARGUMENTS):
        function = argument(*names, **options)(function)
    return function


#: Where the results go when the cell gives no ``-o``.
DEFAULT_OUT = "_ofox_batch"


def run_map(magics: OfoxMagics, args: Any, cell: str) -> None:
    """Run the batch of a ``%%ofox --map`` cell; every failure is one line."""
    from ._batch_plan import PreparedBatch
    from ._cell_options import ask_options

    refused = (
        ("--image", bool(args.image), "use items that are images"),
        ("--tools", args.tools is not None, "a batch asks, it does not run tools"),
        ("--vars", args.vars, "{item} is its template"),
        ("--context", args.context is not None, "each item is asked on its own"),
        ("--compare", args.compare is not None, "compare one prompt, or map one model"),
        ("--code", args.code, "one reply's code goes to a new cell; a batch has many"),
    )
    for flag, given, why in refused:
        if given:
            raise fail(f"--map does not take {flag}: {why}")
    ns = magics.shell.user_ns if magics.shell is not None else {}
    if args.map not in ns:
        raise fail(
            OfoxError(
                f"--map {args.map}: no variable of that name",
                hint="define it first: a list, a pandas Series or DataFrame",
            )
        )
    options, prompt, _ = ask_options(magics, args, cell)
    session = magics.session
    tape = magics.tape
    try:
        job = PreparedBatch(
            prompt,
            ns[args.map],
            model=options.model,
            system_prompt=options.system,
            detail=args.detail,
            rpm=args.rpm,
            cache=not args.no_cache,
            confirm_cost=0.0 if args.yes else float(magics.batch_confirm_cost),
            client_settings=magics._client_settings(),
            model_info=session.model_info,
            params=options.params,
            transport=tape.transport(asynchronous=True) if tape is not None else None,
        )
    except OfoxError as err:
        raise fail(err) from None
    try:
        _run(magics, job, args)
    finally:
        job.close()


def _run(magics: OfoxMagics, job: PreparedBatch, args: Any) -> None:
    from ._batch import _run_in_thread

    budget = magics.session.budget
    job.show_summary = False  # the result's own table follows
    job.rich = magics._mode() == "rich"  # the bar follows OfoxMagics.display_mode, as replies do
    try:
        plan = job.prepare()
        if args.dry_run:
            _show(magics, plan)
            return
        held = _hold(budget, job)  # before the question: no "yes" to a batch then refused
    except OfoxError as err:
        raise fail(err) from None
    result = None
    try:
        job.confirm(input)
        result = _run_in_thread(job)
    except OfoxError as err:
        raise fail(err) from None
    finally:
        budget.settle(held, _charged(job) if result is not None else 0.0)
        _record_usage(magics, job)
    ns = magics.shell.user_ns if magics.shell is not None else {}
    ns[args.out or DEFAULT_OUT] = result
    for notice in result.notices:
        print(utf8_safe(f"ofox: {notice}"))
    _show(magics, result)


def _record_usage(magics: OfoxMagics, job: PreparedBatch) -> None:
    """What the batch's answers used, per model, into the notebook's ``%ofox usage`` (the
    cache's answers were counted when they were first asked)."""
    from ._streaming import Usage

    answers: dict[str, list[ItemResult]] = {}
    for item in job.result:
        if item.fresh and item.usage is not None:
            answers.setdefault(item.model or job.model, []).append(item)
    for model, items in answers.items():
        costs = [item.cost for item in items]
        cost = None if None in costs else sum(c or 0.0 for c in costs)
        usage = Usage.total(item.usage for item in items if item.usage is not None)
        magics.session.record_usage(model, usage, cost, len(items), job.settings.offline)


def _charged(job: PreparedBatch) -> float:
    """What the batch's requests may have cost: the answers' known costs, and the worst case
    of every other request that was not refused (an answer without usage, one cut off by a
    stop), as the budget counts a single request."""
    result, plan = job.result, job.plan
    fresh = [r for r in result if r.fresh]
    known = [r.cost for r in fresh if r.cost is not None]
    unknown = max(0, result.sent - result.unbilled - len(known))
    worst = plan.max_cost / plan.requests if plan and plan.requests and plan.max_cost else 0.0
    return sum(known) + unknown * worst


def _hold(budget: Budget, job: PreparedBatch) -> float:
    """Set the batch's worst case aside in the session's budget, or refuse it."""
    plan = job.plan
    if budget.limit <= 0 or plan is None or not plan.requests:
        return 0.0
    if plan.max_cost is None:
        raise budget.unpriced(plan.model, "this batch's cost")
    hint = "fewer items, a lower --max-tokens, or raise OfoxMagics.max_cost"
    return budget.reserve(plan.max_cost, "this batch", hint)


def _show(magics: OfoxMagics, value: Any) -> None:
    if magics._mode() == "rich":
        from IPython.display import display

        display({"text/markdown": value._repr_markdown_(), "text/plain": repr(value)}, raw=True)
        return
    print(value.summary())
    failed = getattr(value, "failed", [])
    for item in failed[:_FAILURES_SHOWN]:  # in a terminal there is no table to read them in
        print(f"  item {item.position}: {item.error}")
    if len(failed) > _FAILURES_SHOWN:
        print(f"  … {len(failed) - _FAILURES_SHOWN:,} more failed (see .errors)")


#: Failures a terminal lists under the summary.
_FAILURES_SHOWN = 5


class BatchCommands:
    """``%ofox batch [clear]``, a subcommand of :class:`._line_commands.LineCommands`."""

    magics: OfoxMagics

    def _cmd_batch(self, words: list[str]) -> None:
        """``%ofox batch``: where the batch cache is and what it holds; ``clear``: empty it."""
        from ._batch_cache import BatchCache

        if words not in ([], ["clear"]):
            raise fail("usage: %ofox batch [clear]")
        try:
            with BatchCache() as cache:
                if words:
                    print(f"ofox: cleared {cache.clear():,} cached batch replies")
                else:
                    print(f"ofox: {len(cache):,} cached batch replies in {cache.path}")
        except Exception as err:  # noqa: BLE001 - sqlite3.Error, OSError: one line
            if words and isinstance(err, sqlite3.DatabaseError):
                _start_afresh(err)
                return
            raise fail(f"%ofox batch: the cache could not be opened ({err})") from None


def _start_afresh(err: Exception) -> None:
    """``%ofox batch clear`` on a file that is not a cache (damaged): remove it, and its
    journal, so that the next batch starts a new one."""
    from ._batch_cache import default_cache_path

    path = default_cache_path()
    try:
        for suffix in ("", "-wal", "-shm"):
            path.with_name(path.name + suffix).unlink(missing_ok=True)
    except OSError as gone:
        raise fail(
            f"%ofox batch clear: {path} is damaged ({err}) and could not be removed ({gone})"
        ) from None
    print(f"ofox: {path} was damaged ({err}): removed; the next batch starts a new cache")
