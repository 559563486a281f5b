"""``ofox_jupyter.batch`` against the emulator over real HTTP: order, rate adaptation against an
enforced limit, retries, per-item failures, resume after an interrupt, the cache (and that its
keys and file hold no API key), dry runs and the cost question, pandas in and out."""

from __future__ import annotations

import _thread
import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from batch_helpers import (  # cache_fixture: the `cache` fixture, used by name
    cache_fixture,  # noqa: F401
    chats,
    keyed,
    short_window_emulator,
)
from conftest import TEST_KEY

import ofox_jupyter
from ofox_jupyter import OfoxError
from ofox_jupyter._batch import _run_in_thread
from ofox_jupyter._batch_cache import BatchCache, cache_key
from ofox_jupyter._batch_plan import PreparedBatch
from ofox_jupyter._batch_send import send
from ofox_jupyter._ratelimit import RateLimiter
from ofox_jupyter.emulator import Emulator


def test_results_come_back_in_input_order_whatever_order_they_finish(
    emu: Emulator, cache: BatchCache
) -> None:
    # Earlier items are answered later: each waits longer before its first byte.
    items = [f"item-{i} [emulator-fault: slow:{0.1 * (12 - i):.1f}]" for i in range(12)]
    result = ofox_jupyter.batch("Say {item}", items, cache=cache, **keyed(emu))
    assert isinstance(result, ofox_jupyter.BatchResult)
    assert [r.position for r in result] == list(range(12))
    for i, item in enumerate(result):
        assert item.ok and item.text.endswith(f"Say item-{i}"), item
        assert item.usage is not None and item.usage.total_tokens > 0
    assert result.done == 12 and not result.failed and not result.interrupted
    assert len(chats(emu)) == 12


def test_a_rerun_is_served_from_the_cache_and_sends_nothing(
    emu: Emulator, cache: BatchCache
) -> None:
    items = ["alpha", "beta", "gamma"]
    first = ofox_jupyter.batch("Word: {item}", items, cache=cache, **keyed(emu))
    sent = len(chats(emu))
    again = ofox_jupyter.batch("Word: {item}", items + ["delta"], cache=cache, **keyed(emu))
    assert len(chats(emu)) == sent + 1  # only the new item
    assert [r.cached for r in again] == [True, True, True, False]
    assert [r.text for r in again[:3]] == [r.text for r in first]
    assert "3 from the cache" in again.summary()


def test_the_cache_key_and_file_hold_no_api_key(emu: Emulator, tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    with BatchCache(path) as cache:
        ofox_jupyter.batch("Word: {item}", ["one", "two"], cache=cache, **keyed(emu))
        keys = list(cache.get_many([]))  # nothing asked, nothing found
        assert keys == []
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("cache"))
    assert TEST_KEY.encode() not in raw
    assert b"Word: one" in raw or b"one" in raw  # the replies are there
    # The key is the request's content and where it goes, never the credentials.
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    assert cache_key("https://api.ofox.ai/v1", body) == cache_key("https://api.ofox.ai/v1", body)
    assert cache_key("offline", body) != cache_key("https://api.ofox.ai/v1", body)
    # Another key, the same requests: all from the cache.
    with BatchCache(path) as cache:
        other = ofox_jupyter.batch(
            "Word: {item}", ["one", "two"], cache=cache, **keyed(emu, api_key="sk-other")
        )
    assert other.from_cache == 2


def test_one_failing_item_is_one_line_and_the_rest_go_on(emu: Emulator, cache: BatchCache) -> None:
    items = ["fine", "broken [emulator-fault: 400]", "also fine"]
    result = ofox_jupyter.batch("Say {item}", items, cache=cache, **keyed(emu))
    assert [r.status for r in result] == ["done", "failed", "done"]
    error = result[1].error
    assert error is not None and "\n" not in error and "400" in error
    assert result.errors[1] == error
    # A failed item is not cached: the next run asks it again.
    again = ofox_jupyter.batch("Say {item}", items, cache=cache, **keyed(emu))
    assert [r.cached for r in again] == [True, False, True]


def test_a_429_and_a_503_are_retried_and_the_item_answered(
    emu: Emulator, cache: BatchCache
) -> None:
    emu.inject("429:1")
    emu.inject("503")
    result = ofox_jupyter.batch("Say {item}", ["a"], cache=cache, **keyed(emu))
    assert result[0].ok, result[0]
    assert result.rate_limited == 1
    assert result.sent == 3  # the 429, the 503, the answer


def test_a_missing_field_for_every_item_is_one_error_before_anything_is_sent(
    emu: Emulator, cache: BatchCache
) -> None:
    rows = [{"name": "a"}, {"name": "b"}]
    with pytest.raises(OfoxError) as caught:
        ofox_jupyter.batch("{item.age}", rows, cache=cache, **keyed(emu))
    assert "has no 'age'" in str(caught.value) and "name" in caught.value.one_line()
    assert chats(emu) == []


@pytest.mark.parametrize(
    ("items", "says"),
    [("one string", "one str"), ({"a": 1}, "is a dict"), (42, "not a int")],
)
def test_items_that_are_not_a_collection_are_refused(items: Any, says: str) -> None:
    with pytest.raises(OfoxError, match=says):
        ofox_jupyter.batch("{item}", items, progress=False)


def test_pandas_in_pandas_out(emu: Emulator, cache: BatchCache) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"review": ["good", "bad"], "stars": [5, 1]}, index=["r1", "r2"])
    schema = {
        "type": "object",
        "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]}},
        "required": ["sentiment"],
    }
    result = ofox_jupyter.batch(
        "{item.review} ({item[stars]} stars)", frame, schema=schema, cache=cache, **keyed(emu)
    )
    assert list(result.texts.index) == ["r1", "r2"]
    table = result.to_frame()
    assert list(table.index) == ["r1", "r2"]
    assert list(table["sentiment"]) == ["positive", "positive"]
    sent = chats(emu)[0].body
    assert sent is not None and "good (5 stars)" in str(sent["messages"])
    assert sent["response_format"]["type"] == "json_schema"


def test_images_are_attached_to_their_item(emu: Emulator, cache: BatchCache) -> None:
    from PIL import Image

    images = [Image.new("RGB", (40, 30), colour) for colour in ("red", "blue")]
    result = ofox_jupyter.batch(
        "What colour is {item}?", images, model="openai/gpt-4o", cache=cache, **keyed(emu)
    )
    assert result.done == 2
    for request, name in zip(chats(emu), ("image 1", "image 2"), strict=True):
        assert request.body is not None
        content = request.body["messages"][-1]["content"]
        assert any(part.get("type") == "image_url" for part in content)
        assert any(name in part.get("text", "") for part in content)


def test_a_dry_run_sends_nothing_and_prices_the_rest(emu: Emulator, cache: BatchCache) -> None:
    ofox_jupyter.batch("Say {item}", ["a"], cache=cache, max_tokens=100, **keyed(emu))
    before = len(chats(emu))
    plan = ofox_jupyter.batch(
        "Say {item}", ["a", "b", "c"], cache=cache, dry_run=True, max_tokens=100, **keyed(emu)
    )
    assert isinstance(plan, ofox_jupyter.BatchPlan)
    assert (plan.items, plan.requests, plan.cached) == (3, 2, 1)
    assert plan.max_cost is not None and plan.prompt_cost is not None
    assert plan.max_cost > plan.prompt_cost > 0
    assert len(chats(emu)) == before


def test_above_confirm_cost_it_asks_and_no_means_nothing_is_sent(
    emu: Emulator, cache: BatchCache
) -> None:
    asked: list[str] = []

    def no(question: str) -> str:
        asked.append(question)
        return "n"

    options = keyed(emu, confirm_cost=1e-9, ask=no)
    with pytest.raises(OfoxError, match="not sent"):
        ofox_jupyter.batch("Say {item}", ["a", "b"], cache=cache, **options)
    assert asked and "2 requests" in asked[0]
    assert chats(emu) == []

    def nobody(question: str) -> str:
        raise EOFError("no stdin")

    with pytest.raises(OfoxError, match="no one to ask"):
        ofox_jupyter.batch(
            "Say {item}", ["a"], cache=cache, **keyed(emu, confirm_cost=1e-9, ask=nobody)
        )
    result = ofox_jupyter.batch(
        "Say {item}", ["a"], cache=cache, **keyed(emu, confirm_cost=1e-9, ask=lambda q: "y")
    )
    assert result.done == 1


def test_at_the_enforced_limit_never_over_it(tmp_path: Path) -> None:
    """20 requests a second allowed; 80 items. A plain gather is refused at once; the batch
    paces itself under the limit and gets (almost) no 429."""
    with short_window_emulator(rpm=20, latency=0.05) as emu:
        # What asyncio.gather does: everything at once.
        async def flood() -> list[int]:
            async with httpx.AsyncClient(base_url=emu.base_url, timeout=30) as http:
                body = {
                    "model": "openai/gpt-4o-mini",
                    "messages": [{"role": "user", "content": "x"}],
                }
                answers = await asyncio.gather(
                    *(
                        http.post(
                            "/chat/completions",
                            json=body,
                            headers={"Authorization": f"Bearer {TEST_KEY}"},
                        )
                        for _ in range(40)
                    )
                )
            return [a.status_code for a in answers]

        statuses = asyncio.run(flood())
        assert statuses.count(429) >= 15
        time.sleep(1.1)  # the window empties

        job = PreparedBatch(
            "Say {item}",
            [f"n{i}" for i in range(80)],
            cache=BatchCache(tmp_path / "c.sqlite3"),
            progress=False,
            client_settings={"api_key": TEST_KEY, "base_url": emu.base_url},
        )
        job.limiter = RateLimiter(window=1.0, max_in_flight=job.concurrency)
        job.prepare()
        result = asyncio.run(send(job, keep_on_cancel=False))
    assert result.done == 80
    assert [r.text.count(f"n{i}") > 0 for i, r in enumerate(result)] == [True] * 80
    assert result.rate_limited <= 2, result.rate_limited
    assert job.limiter.announced == 20


def test_interrupted_keeps_what_was_answered_and_a_rerun_continues(tmp_path: Path) -> None:
    items = [f"n{i}" for i in range(40)]
    path = tmp_path / "c.sqlite3"
    with Emulator(api_key=TEST_KEY, latency=0.1) as emu:
        options = keyed(emu)
        # Ctrl-C in the caller's thread (a kernel interrupt) once some items are answered.
        timer = threading.Timer(0.9, _thread.interrupt_main)
        timer.start()
        try:
            first = ofox_jupyter.batch("Say {item}", items, cache=BatchCache(path), **options)
        finally:
            timer.cancel()
        assert first.interrupted
        answered = first.done
        assert 0 < answered < 40
        assert all(r.status == "not run" for r in first if not r.ok)
        assert "interrupted" in first.summary()
        before = len(chats(emu))
        second = ofox_jupyter.batch("Say {item}", items, cache=BatchCache(path), **options)
        assert second.done == 40 and not second.interrupted
        assert second.from_cache == answered
        assert len(chats(emu)) - before == 40 - answered


def test_stop_from_another_thread_returns_promptly(tmp_path: Path) -> None:
    with Emulator(api_key=TEST_KEY, latency=0.5) as emu:
        job = PreparedBatch(
            "Say {item}",
            [f"n{i}" for i in range(30)],
            cache=False,
            progress=False,
            client_settings={"api_key": TEST_KEY, "base_url": emu.base_url},
        )
        job.prepare()
        threading.Timer(0.3, job.stop.set).start()
        started = time.monotonic()
        result = _run_in_thread(job)
        took = time.monotonic() - started
    assert result.interrupted and result.done < 30
    assert took < 5  # not the 30 × 0.5 s the rest would have taken at one a second


def test_abatch_runs_on_the_callers_loop(emu: Emulator, cache: BatchCache) -> None:
    result = asyncio.run(ofox_jupyter.abatch("Say {item}", ["x", "y"], cache=cache, **keyed(emu)))
    assert isinstance(result, ofox_jupyter.BatchResult)
    assert result.done == 2


def test_the_terminal_progress_bar_is_one_updating_line(
    emu: Emulator, cache: BatchCache, capsys: pytest.CaptureFixture[str]
) -> None:
    ofox_jupyter.batch("Say {item}", ["a", "b", "c"], cache=cache, **keyed(emu, progress=True))
    err = capsys.readouterr().err
    assert "ofox batch" in err and "3/3" in err
    assert "tokens" in err and "\r" in err
    assert TEST_KEY not in err


def test_the_key_is_in_no_result_repr_or_error(emu: Emulator, cache: BatchCache) -> None:
    items = ["fine", f"echo {TEST_KEY} [emulator-fault: 400]"]
    result = ofox_jupyter.batch("Say {item}", items, cache=cache, **keyed(emu))
    shown = repr(result) + result._repr_markdown_() + repr(list(result)) + str(result.errors)
    assert TEST_KEY not in shown
    # ... nor in what was sent: a prompt is scrubbed of the live key, as with %%ofox --vars
    assert all(TEST_KEY not in str(r.body) for r in chats(emu))
    assert "********" in str(chats(emu)[-1].body)


def test_the_same_request_twice_is_sent_once(emu: Emulator, cache: BatchCache) -> None:
    result = ofox_jupyter.batch("Say {item}", ["a", "a", "b", "a"], cache=cache, **keyed(emu))
    assert len(chats(emu)) == 2
    assert [r.same_as for r in result] == [None, 0, None, 0]
    assert not any(r.cached for r in result)
    assert result[1].text == result[0].text == result[3].text
    assert result[1].cost == 0.0 and result.done == 4
    same = ofox_jupyter.batch("Say hello", ["x", "y", "z"], cache=False, **keyed(emu))
    assert len(chats(emu)) == 3
    assert any("no {item}" in notice for notice in same.notices)


def test_rows_keep_their_column_types(emu: Emulator, cache: BatchCache) -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"id": [1, 2], "score": [0.5, 1.5], 3: ["x", "y"]})
    ofox_jupyter.batch(
        "id={item.id} score={item.score} c={item[3]}", frame, cache=cache, **keyed(emu)
    )
    sent = [str(r.body["messages"]) for r in chats(emu) if r.body is not None]
    assert "id=1 score=0.5 c=x" in sent[0] and "id=2 score=1.5 c=y" in sent[1]


def test_bad_client_settings_are_one_error_before_anything_is_sent(emu: Emulator) -> None:
    with pytest.raises(OfoxError, match="max_retries"):
        ofox_jupyter.batch("Say {item}", ["a"], **keyed(emu, max_retries=-1))
    assert chats(emu) == []


# -- hostile input: any template, any item, any cached row


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ofox_jupyter._batch_items import fill  # noqa: E402
from ofox_jupyter._batch_results import from_record  # noqa: E402

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


class _Hostile:
    """An object whose every attribute and repr fails."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("no attributes here")

    def __repr__(self) -> str:
        raise ValueError("no repr either")


@settings(max_examples=300, deadline=None)
@given(
    template=st.text(alphabet=st.sampled_from(list("{}[].item xyz_0")), max_size=40),
    item=_values | st.just(_Hostile()),
)
def test_any_template_and_item_give_text_or_one_clear_error(template: str, item: Any) -> None:
    try:
        text = fill(template, item, 0)
    except OfoxError as err:
        assert "\n" not in err.one_line() and err.one_line().startswith("item 0")
    else:
        assert isinstance(text, str)


@settings(max_examples=300, deadline=None)
@given(
    record=st.dictionaries(
        st.sampled_from(["text", "model", "usage", "cost", "finish_reason"]), _values
    )
)
def test_any_cached_row_is_an_answer_or_asked_again(record: dict[str, Any]) -> None:
    """A row read back (``BatchCache`` keeps only those whose text is text) becomes an answer
    or a failure, which is asked again; never an exception."""
    record = {**record, "text": str(record.get("text"))}
    for expect_json in (False, True):
        item = from_record(0, record, expect_json)
        assert item.status in ("done", "failed")
        assert item.cost is None or isinstance(item.cost, float)
        assert item.usage is None or item.usage.total_tokens >= 0
        assert item.finish_reason is None or isinstance(item.finish_reason, str)


def test_image_file_names_are_sent_as_images(
    emu: Emulator, cache: BatchCache, tmp_path: Path
) -> None:
    from PIL import Image

    paths = []
    for name, colour in (("red.png", "red"), ("blue.jpg", "blue")):
        Image.new("RGB", (30, 20), colour).save(tmp_path / name)
        paths.append(str(tmp_path / name))
    items = [*paths, str(tmp_path / "missing.png"), "just text.png"]
    result = ofox_jupyter.batch(
        "Describe {item}", items, model="openai/gpt-4o", cache=cache, **keyed(emu)
    )
    assert [r.status for r in result] == ["done", "done", "done", "done"]
    sent = [r.body["messages"][-1]["content"] for r in chats(emu) if r.body is not None]
    kinds = [
        [part["type"] for part in content] if isinstance(content, list) else ["text"]
        for content in sent
    ]
    assert kinds[:2] == [["text", "image_url"], ["text", "image_url"]]
    assert kinds[2:] == [["text"], ["text"]]  # no such file: the name is text
