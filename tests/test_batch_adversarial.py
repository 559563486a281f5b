"""An adversarial pass over ``ofox_jupyter.batch`` / ``abatch`` and ``%%ofox --map``: what a
careless or hostile user (or upstream) does to it, and what they should get — one clear line for
bad input, nothing answered lost, no API key anywhere, results in input order, never over the
rate limit, Ctrl-C (or a cancel) keeps what was answered.

A docstring that begins "Was:" tells what the code did when the test was written (a bug, or
with "(design)" a gap), fixed since; the test keeps it fixed.
"""

from __future__ import annotations

import asyncio
import gc
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from batch_helpers import (  # cache_fixture: the `cache` fixture, used by name
    cache_fixture,  # noqa: F401
    chats,
    keyed,
    short_window_emulator,
)
from conftest import TEST_KEY
from IPython.core.error import UsageError

import ofox_jupyter
from ofox_jupyter import BatchResult, OfoxError
from ofox_jupyter._batch import _run_in_thread
from ofox_jupyter._batch_cache import BatchCache
from ofox_jupyter._batch_plan import PreparedBatch
from ofox_jupyter._batch_results import ItemResult
from ofox_jupyter._batch_send import send
from ofox_jupyter._ratelimit import RateLimiter
from ofox_jupyter.emulator import Emulator


def one_line(err: OfoxError) -> str:
    line = err.one_line()
    assert "\n" not in line and len(line) < 400, line
    return line


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- bad options: one line, nothing sent


@pytest.mark.parametrize(
    "options",
    [
        {"concurrency": 0},
        {"concurrency": "many"},
        {"concurrency": True},
        {"rpm": 0},
        {"rpm": math.nan},
        {"rpm": math.inf},
        {"rpm": -1},
        {"max_tokens": "ten"},
        {"schema": "not a dict"},
        {"schema": ["a"]},
        {"json": True, "schema": {"type": "object"}},
        {"detail": "ultra", "_image": True},
    ],
    ids=repr,
)
def test_bad_options_are_one_line_and_send_nothing(
    emu: Emulator, cache: BatchCache, options: dict[str, Any]
) -> None:
    options = dict(options)
    items: list[Any] = ["a", "b"]
    if options.pop("_image", False):
        from PIL import Image

        items = [Image.new("RGB", (8, 8), "red")]
    with pytest.raises(OfoxError) as caught:
        ofox_jupyter.batch("Say {item}", items, cache=cache, **keyed(emu, **options))
    one_line(caught.value)
    assert chats(emu) == []


@pytest.mark.parametrize(
    "options",
    [
        {"frobnicate": 3},  # a typo'd or unknown option
        {"concurency": 4},  # the same, for a batch option
        {"stream": True},
        {"messages": []},
        {"response_format": "json"},
        {"rpm": "10"},
        {"rpm": True},  # concurrency=True is refused; rpm=True ran at 1 request a minute
        {"confirm_cost": "1"},
        {"confirm_cost": math.nan},
        {"max_retries": "2"},
        {"timeout": -1},
        {"system_prompt": 3},
        {"cache": "yes"},  # was taken for a cache object: a notice, and no cache
    ],
    ids=repr,
)
def test_wrong_types_and_unknown_options_are_one_ofox_error(
    emu: Emulator, options: dict[str, Any]
) -> None:
    """Was: TypeError/ValueError tracebacks (or silent acceptance) instead of one line."""
    settings = keyed(emu, cache=False)
    settings.update(options)
    failure = None
    try:
        ofox_jupyter.batch("Say {item}", ["a"], **settings)
    except OfoxError as err:
        one_line(err)
    except Exception as err:  # noqa: BLE001 - the finding: reported without its traceback
        failure = f"{type(err).__name__}: {err}"
    else:
        failure = "no error: the option was accepted"
    # timeout=-1 leaves a socket open (held by the traceback): its warning belongs here.
    gc.collect()
    if failure:
        pytest.fail(failure)
    assert chats(emu) == []


# -- items


def test_zero_items_is_an_empty_result_and_sends_nothing(emu: Emulator, cache: BatchCache) -> None:
    pd = pytest.importorskip("pandas")
    for items in ([], (x for x in ()), pd.Series([], dtype=object), pd.DataFrame({"a": []})):
        result = ofox_jupyter.batch("Say {item}", items, cache=cache, **keyed(emu))
        assert isinstance(result, BatchResult) and len(result) == 0
        assert "0 items" in result.summary() and not result.interrupted
        result._repr_markdown_()
        assert len(result.to_frame()) == 0
    assert chats(emu) == []


def test_one_item(emu: Emulator, cache: BatchCache) -> None:
    result = ofox_jupyter.batch("Say {item}", ["solo"], cache=cache, **keyed(emu))
    assert len(result) == 1 and result[0].ok and "Say solo" in result[0].text
    assert "1 item ·" in result.summary()


def test_ten_thousand_tiny_items_prepare_and_show_quickly(capsys: pytest.CaptureFixture) -> None:
    """Measured, not asserted: preparation and the result's repr/markdown of 10,000 items."""
    items = [f"i{i}" for i in range(10_000)]
    started = time.perf_counter()
    job = PreparedBatch(
        "Say {item}",
        items,
        cache=False,
        progress=False,
        client_settings={"api_key": TEST_KEY, "base_url": f"http://127.0.0.1:{free_port()}/v1"},
        model_info=lambda model: None,
    )
    plan = job.prepare()
    prepared = time.perf_counter() - started
    started = time.perf_counter()
    shown = repr(job.result) + job.result._repr_markdown_()
    displayed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\n10,000 items: prepare {prepared:.2f}s, repr+markdown {displayed * 1000:.1f}ms")
    assert plan.requests == 10_000 and len(job.result) == 10_000
    assert "10,000 items" in shown and "9,990 more" in shown
    assert shown.count("\n") < 30  # a table of 10 rows, not 10,000


def test_a_generator_that_raises_midway_is_one_line(emu: Emulator) -> None:
    def rows() -> Any:
        yield "a"
        yield "b"
        raise RuntimeError("the database went away")

    with pytest.raises(OfoxError, match="database went away") as caught:
        ofox_jupyter.batch("Say {item}", rows(), **keyed(emu, cache=False))
    one_line(caught.value)
    assert chats(emu) == []


def test_bad_images_fail_their_item_and_the_rest_go_on(emu: Emulator, cache: BatchCache) -> None:
    items = [b"not an image at all", Path("/no/such/dir/chart.png"), "fine", None, math.nan]
    result = ofox_jupyter.batch("Say {item}", items, cache=cache, **keyed(emu))
    assert [r.status for r in result] == ["failed", "failed", "done", "done", "done"]
    for r in result[:2]:
        assert r.error is not None and "\n" not in r.error and r.error.startswith("item ")
    assert [r.position for r in result] == list(range(5))
    # every item bad: one error, nothing sent
    with pytest.raises(OfoxError):
        ofox_jupyter.batch("Say {item}", [b"junk", b"more junk"], cache=cache, **keyed(emu))


@pytest.mark.parametrize("template", ["{item.__class__}", "{item._private}", "{item.__dict__}"])
def test_private_and_dunder_fields_are_refused_without_leaking_internals(
    emu: Emulator, template: str
) -> None:
    class Row:
        _private = "internal-secret-value"
        public = "ok"

    with pytest.raises(OfoxError) as caught:
        ofox_jupyter.batch(template, [Row(), Row()], **keyed(emu, cache=False))
    line = one_line(caught.value)
    assert "internal-secret-value" not in line and "<class" not in line
    assert chats(emu) == []


def test_braces_of_code_and_json_are_left_alone(emu: Emulator, cache: BatchCache) -> None:
    template = '```python\nd = {"k": 1}\nprint({item})\n```\n{"label": "{item}"} {{item}}'
    ofox_jupyter.batch(template, ["v"], cache=cache, **keyed(emu))
    sent = chats(emu)[0].body["messages"][-1]["content"]
    assert sent == '```python\nd = {"k": 1}\nprint(v)\n```\n{"label": "v"} {item}'


@pytest.mark.parametrize(
    "template", ["Label: {items}", "Label: {item!r}", "Label: {item:>5}", "Label: {item.name }"]
)
def test_a_mistyped_field_does_not_silently_give_every_item_one_answer(
    emu: Emulator, template: str
) -> None:
    """Was: the template has no real field, so all three items send the same request, once,
    and get the same answer, with no notice: the no-{item} check is a substring test for
    ``"{item"`` (_batch_plan.py, _merge_duplicates)."""
    try:
        result = ofox_jupyter.batch(template, ["a", "b", "c"], **keyed(emu, cache=False))
    except OfoxError as err:  # refusing the template is fine too
        one_line(err)
        return
    assert result.sent == 3 or result.notices, (result.sent, result.notices)


def test_tuples_as_the_dict_hint_suggests_can_be_templated(emu: Emulator) -> None:
    """Was: a dict as items is refused with "pass ... list(d.items())"; doing that, the
    obvious template ``{item[0]}`` fails: "item 0 has no '0' ... it has: count, index"."""
    prices = {"apple": 1.5, "pear": 2}
    with pytest.raises(OfoxError) as refused:
        ofox_jupyter.batch("{item}", prices, **keyed(emu, cache=False))
    assert "list(d.items())" in refused.value.one_line()
    result = ofox_jupyter.batch(
        "{item[0]} costs {item[1]}", list(prices.items()), **keyed(emu, cache=False)
    )
    assert result.done == 2
    assert "apple costs 1.5" in str(chats(emu)[0].body)


def test_a_huge_item_is_not_cut_without_telling_the_user(emu: Emulator) -> None:
    """Was (design): a 1 MB item goes out as its first 4,000 characters (the note of the cut
    is only in the prompt, for the model); nothing in the result tells the user that the
    summaries they asked for are of 0.4 % of their documents."""
    result = ofox_jupyter.batch("Summarise: {item}", ["x" * 1_000_000], **keyed(emu, cache=False))
    assert result.done == 1
    assert any("truncated" in n or "cut" in n for n in result.notices), result.notices


# -- pandas


def test_duplicate_index_labels_keep_order_and_index(emu: Emulator, cache: BatchCache) -> None:
    pd = pytest.importorskip("pandas")
    series = pd.Series(["a", "b", "c"], index=[1, 1, 2])
    result = ofox_jupyter.batch("Say {item}", series, cache=cache, **keyed(emu))
    assert list(result.texts.index) == [1, 1, 2]
    assert [t.endswith(f"Say {w}") for t, w in zip(result.texts, "abc", strict=True)] == [True] * 3
    unnamed = pd.DataFrame({"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)]))
    result = ofox_jupyter.batch("Number {item.a}", unnamed, cache=cache, **keyed(emu))
    assert len(unnamed.join(result.to_frame())) == 2


def test_a_named_multiindex_result_joins_back(emu: Emulator, cache: BatchCache) -> None:
    """Was: the result's index is rebuilt from a list of labels (pd.Index(list)), which
    drops the index names; README's ``frame.join(result.to_frame())`` then raises pandas'
    "ValueError: cannot join with no overlapping index names" for a named MultiIndex."""
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"a": [1, 2]}, index=pd.MultiIndex.from_tuples([("x", 1), ("y", 2)], names=["k", "n"])
    )
    result = ofox_jupyter.batch("Number {item.a}", frame, cache=cache, **keyed(emu))
    assert list(result.texts.index.names) == ["k", "n"]
    joined = frame.join(result.to_frame())
    assert len(joined) == 2 and joined["text"].str.endswith("Number 1").iloc[0]


def test_duplicate_index_labels_warn_before_the_readme_join_multiplies_rows(
    emu: Emulator, cache: BatchCache
) -> None:
    """Was (design): README's recipe ``reviews.join(labels.to_frame())`` on a frame with a
    repeated label gives 4 rows for 2, each row paired with both answers; nothing warns."""
    pd = pytest.importorskip("pandas")
    reviews = pd.DataFrame({"review": ["good", "bad"]}, index=["r", "r"])
    labels = ofox_jupyter.batch("Label {item.review}", reviews, cache=cache, **keyed(emu))
    assert len(reviews.join(labels.to_frame())) == 4  # pandas' join, as documented by pandas
    assert any("duplicate" in n or "repeated" in n for n in labels.notices), labels.notices


def test_to_frame_keeps_json_fields_named_like_its_own_columns() -> None:
    """Was: a schema with a field named error, cost, tokens or cached (say, "does this code
    have an error?") loses the model's values in to_frame(): its own columns overwrite them."""
    pytest.importorskip("pandas")
    value = {"error": "typo on line 3", "cost": 12.5, "tokens": 7, "cached": "yes"}
    result = BatchResult([ItemResult(0, "done", text="{}", value=value)])
    row = result.to_frame().to_dict("records")[0]
    assert {"typo on line 3", 12.5, 7, "yes"} <= set(row.values()), row


# -- the key


def test_the_key_in_a_system_prompt_is_not_sent_or_cached(emu: Emulator, tmp_path: Path) -> None:
    """Was: the prompt is scrubbed of the live key, the system prompt is not: it is sent,
    echoed into the reply, and written to the cache file (README: 'prompt or system prompt')."""
    path = tmp_path / "keyed.sqlite3"
    with BatchCache(path) as store:
        result = ofox_jupyter.batch(
            "Say {item}", ["a"], system=f"use {TEST_KEY}", cache=store, **keyed(emu)
        )
    assert all(TEST_KEY not in str(r.body) for r in chats(emu))
    assert TEST_KEY not in result[0].text
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("keyed"))
    assert TEST_KEY.encode() not in raw


def _raises_with_key() -> Any:
    yield "a"
    raise RuntimeError(f"GET https://example.com/rows?key={TEST_KEY} failed")


class _FailsWithKey:
    @property
    def field(self) -> str:
        raise RuntimeError(f"token {TEST_KEY} expired")

    def __repr__(self) -> str:
        raise RuntimeError(f"token {TEST_KEY} expired")


@pytest.mark.parametrize(
    ("template", "items"),
    [
        ("{item}", "generator"),
        ("{item.field}", [_FailsWithKey()]),
        ("{item}", [_FailsWithKey()]),
        ("{item.missing}", [{TEST_KEY: 1}]),
    ],
    ids=["listing", "field", "repr", "hint"],
)
def test_errors_about_items_never_show_the_key(emu: Emulator, template: str, items: Any) -> None:
    """Was: an item's own exception (or a dict key in the hint) goes into the OfoxError
    unscrubbed: "items could not be listed (RuntimeError: ... key=sk-...)"."""
    if items == "generator":
        items = _raises_with_key()
    with pytest.raises(OfoxError) as caught:
        ofox_jupyter.batch(template, items, **keyed(emu, cache=False))
    assert TEST_KEY not in caught.value.one_line() + str(caught.value)


# -- failing upstreams


@pytest.mark.timeout(30)
def test_a_refused_connection_fails_every_item_in_one_line_promptly() -> None:
    base = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    result = ofox_jupyter.batch(
        "Say {item}",
        [f"n{i}" for i in range(30)],
        api_key=TEST_KEY,
        base_url=base,
        cache=False,
        progress=False,
        confirm_cost=0,
    )
    took = time.monotonic() - started
    assert isinstance(result, BatchResult) and len(result) == 30
    assert [r.status for r in result] == ["failed"] * 30
    assert all(r.error and "\n" not in r.error and "could not reach" in r.error for r in result)
    assert "0 answered · 30 failed" in result.summary()
    assert took < 20, took  # retried with backoff, not hung


@pytest.mark.timeout(30)
def test_a_wrong_api_key_stops_the_batch_instead_of_failing_every_item(emu: Emulator) -> None:
    """Was: every item is sent and refused with a 401, at the rate limit's pace: 200 items
    took 60 s (10,000 would take 50 min) to say the key is wrong 200 times."""
    items = [f"n{i}" for i in range(12)]
    result = ofox_jupyter.batch(
        "Say {item}", items, **keyed(emu, api_key="sk-wrong-key-000", cache=False)
    )
    assert result.done == 0
    assert result.sent <= 3, f"{result.sent} requests sent with a key the gateway refused"
    assert all(r.error is None or "\n" not in r.error for r in result)


def test_a_batch_whose_every_item_failed_says_why(emu: Emulator) -> None:
    """Was (design): the summary is '2 items · 0 answered · 2 failed · 0 tokens · $0':
    what failed (the one error they share) is only in .errors."""
    result = ofox_jupyter.batch(
        "Say {item} [emulator-fault: 400]", ["a", "b"], **keyed(emu, cache=False)
    )
    assert result.done == 0 and len(result.failed) == 2
    assert "0 answered · 2 failed" in result.summary()
    assert "400" in result.summary(), result.summary()


@pytest.mark.timeout(30)
def test_two_a_second_never_over_the_limit_and_everything_answered() -> None:
    with short_window_emulator(rpm=2, latency=0.6) as emu:
        job = PreparedBatch(
            "Say {item}",
            [f"n{i}" for i in range(8)],
            cache=False,
            progress=False,
            client_settings={"api_key": TEST_KEY, "base_url": emu.base_url},
        )
        job.limiter = RateLimiter(window=1.0, max_in_flight=job.concurrency)
        job.prepare()
        result = asyncio.run(send(job, keep_on_cancel=False))
    assert result.done == 8
    assert [r.text.endswith(f"Say n{i}") for i, r in enumerate(result)] == [True] * 8
    assert result.rate_limited == 0 and result.sent == 8


# -- cancelling, interrupting, the cache


@pytest.mark.timeout(30)
def test_cancelling_abatch_keeps_the_answered_and_leaves_nothing_running(
    tmp_path: Path,
) -> None:
    items = [f"n{i}" for i in range(30)]
    path = tmp_path / "c.sqlite3"
    with Emulator(api_key=TEST_KEY, latency=0.2) as emu:
        before = set(threading.enumerate())
        options = keyed(emu)

        async def cancelled() -> list[asyncio.Task[Any]]:
            with BatchCache(path) as store:
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(
                        ofox_jupyter.abatch("Say {item}", items, cache=store, **options), 1.2
                    )
            return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

        assert asyncio.run(cancelled()) == []
        time.sleep(0.2)
        left = [t.name for t in set(threading.enumerate()) - before if t.is_alive()]
        assert left == [], left
        with BatchCache(path) as store:
            answered = len(store)
        assert 0 < answered < 30
        sent = len(chats(emu))
        with BatchCache(path) as store:
            again = ofox_jupyter.batch("Say {item}", items, cache=store, **options)
        assert again.done == 30 and again.from_cache == answered
        assert len(chats(emu)) - sent == 30 - answered


@pytest.mark.timeout(30)
def test_an_interrupted_batch_without_a_cache_does_not_claim_it_cached() -> None:
    """Was: with cache=False the summary still says 'answered items are cached'."""
    with Emulator(api_key=TEST_KEY, latency=0.3) as emu:
        job = PreparedBatch(
            "Say {item}",
            [f"n{i}" for i in range(20)],
            cache=False,
            progress=False,
            client_settings={"api_key": TEST_KEY, "base_url": emu.base_url},
        )
        job.prepare()
        threading.Timer(0.8, job.stop.set).start()
        result = _run_in_thread(job)
    assert result.interrupted
    assert "cached" not in result.summary(), result.summary()


@pytest.mark.timeout(30)
def test_a_locked_cache_does_not_hold_up_stopping(tmp_path: Path) -> None:
    """BatchCache.put runs on the batch's event loop: a file another process holds used to make
    timeout for every answered item while another process holds the file; Ctrl-C took 5 s, not
    a tenth of one (and each later item waits 5 s more)."""
    path = tmp_path / "locked.sqlite3"
    BatchCache(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with Emulator(api_key=TEST_KEY) as emu:
            cache = BatchCache(path)
            job = PreparedBatch(
                "Say {item}",
                [f"n{i}" for i in range(6)],
                cache=cache,
                progress=False,
                client_settings={"api_key": TEST_KEY, "base_url": emu.base_url},
            )
            job.prepare()
            threading.Timer(0.4, job.stop.set).start()
            started = time.monotonic()
            result = _run_in_thread(job)
            took = time.monotonic() - started
            assert job.cache is None  # given up after the first write that could not go in
            cache.close()
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.interrupted and result.done >= 1
    assert any("not cached" in n for n in result.notices)
    assert took < 1.5, f"stopped after {took:.1f}s"


def _cache_files(history: Path) -> list[Path]:
    return [p for p in history.parent.iterdir() if "batch-cache" in p.name]


@pytest.mark.parametrize("damage", ["deleted", "garbage", "other table", "a directory"])
def test_a_damaged_cache_between_runs_only_costs_the_cache(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: str
) -> None:
    history = tmp_path / "history.sqlite3"
    monkeypatch.setenv("OFOX_HISTORY_PATH", str(history))
    first = ofox_jupyter.batch("Say {item}", ["a", "b"], **keyed(emu))
    assert first.done == 2
    (path,) = _cache_files(history)
    for extra in _cache_files(history):
        extra.unlink()
    if damage == "garbage":
        path.write_bytes(b"not sqlite " * 500)
    elif damage == "other table":
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE replies (x INTEGER)")
        db.commit()
        db.close()
    elif damage == "a directory":
        path.mkdir()
    again = ofox_jupyter.batch("Say {item}", ["a", "b"], **keyed(emu))
    assert again.done == 2 and [r.text for r in again] == [r.text for r in first]
    if damage != "deleted":
        assert again.notices and all("\n" not in n for n in again.notices)


def test_a_corrupt_cache_notice_says_which_file(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Was: 'no batch cache (DatabaseError: file is not a database)', on every batch from
    then on; %ofox batch clear cannot open it either, and neither says where the file is."""
    history = tmp_path / "history.sqlite3"
    monkeypatch.setenv("OFOX_HISTORY_PATH", str(history))
    path = history.with_name("history.batch-cache.sqlite3")
    path.write_bytes(b"not sqlite " * 500)
    result = ofox_jupyter.batch("Say {item}", ["a"], **keyed(emu))
    assert result.done == 1
    assert any(path.name in n for n in result.notices), result.notices


@pytest.mark.timeout(30)
def test_two_threads_sharing_one_cache(
    emu: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OFOX_HISTORY_PATH", str(tmp_path / "history.sqlite3"))
    items = [f"w{i}" for i in range(25)]
    shared = BatchCache(tmp_path / "shared.sqlite3")
    outcomes: dict[str, Any] = {}

    def run(name: str, cache_option: Any) -> None:
        try:
            outcomes[name] = ofox_jupyter.batch(
                "Say {item}", items, cache=cache_option, **keyed(emu)
            )
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            outcomes[name] = err

    threads = [
        threading.Thread(target=run, args=(name, option))
        for name, option in (("a", True), ("b", True), ("c", shared), ("d", shared))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(25)
    for name, outcome in outcomes.items():
        assert isinstance(outcome, BatchResult), (name, outcome)
        assert outcome.done == 25 and not outcome.notices, (name, outcome.notices)
        assert [r.text.endswith(f"Say w{i}") for i, r in enumerate(outcome)] == [True] * 25
    assert len(outcomes) == 4
    assert len(shared) == 25
    with BatchCache() as default:
        assert len(default) == 25
    shared.close()


# -- the magic


@pytest.mark.parametrize("out", ["1bad", "a.b", "'x y'", "for", "class"])
def test_map_refuses_an_output_name_python_cannot_use(ip: Any, emu: Emulator, out: str) -> None:
    """FINDING for keywords: ``-o for`` stores the result in user_ns['for'], which no code can
    read (str.isidentifier() is true for keywords; _cell_options.py:35)."""
    ip.user_ns["words"] = ["x"]
    with pytest.raises(UsageError, match="-o needs a variable name"):
        ip.run_cell_magic("ofox", f"--map words --yes -o {out}", "Define {item}")
    assert chats(emu) == []


@pytest.mark.parametrize("cell", ["", "   \n  "])
def test_map_with_an_empty_cell_is_one_line(ip: Any, emu: Emulator, cell: str) -> None:
    ip.user_ns["words"] = ["x"]
    with pytest.raises(UsageError):
        ip.run_cell_magic("ofox", "--map words --yes", cell)
    assert chats(emu) == []


def test_map_takes_json_no_stream_and_ignores_the_chat_options(ip: Any, emu: Emulator) -> None:
    ip.user_ns["words"] = ["x", "y"]
    ip.run_cell_magic("ofox", "--map words --yes --json -o parsed", "Define {item} as JSON")
    parsed = ip.user_ns["parsed"]
    assert [isinstance(r.value, dict) for r in parsed] == [True, True]
    assert chats(emu)[0].body["response_format"] == {"type": "json_object"}
    ip.run_cell_magic("ofox", "--map words --yes --no-stream -o plain", "Define {item}")
    assert ip.user_ns["plain"].done == 2
    ip.run_cell_magic("ofox", "--map words --yes --chat x --new -o chatted", "Define {item}")
    assert ip.user_ns["chatted"].done == 2
    magics = ip.magics_manager.registry["OfoxMagics"]
    assert "x" not in magics.session.chats  # a batch is not a conversation


def test_map_where_every_item_fails_says_why_in_text_mode(
    ip: Any, emu: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was: in text mode the magic prints only the summary line ('2 items · 0 answered · 2
    failed · …'), never an error: the user cannot tell a bad prompt from a bad key."""
    ip.user_ns["words"] = ["x", "y"]
    ip.run_cell_magic("ofox", "--map words --yes", "Define {item} [emulator-fault: 400]")
    result = ip.user_ns["_ofox_batch"]
    assert result.done == 0 and len(result.failed) == 2
    out = capsys.readouterr().out
    assert "2 failed" in out
    assert "400" in out, out
