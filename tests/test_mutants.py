"""Behaviour pinned down where mutation testing (bench/mutation.py) found the suite silent.

Each test states a user- or API-visible behaviour of a core module: what the footer says, what a
tool-call block shows, what provenance metadata holds, how a config value is read, … — not how the
code computes it.
"""

from __future__ import annotations

import json
import pickle

import pytest

from ofox_jupyter import _config
from ofox_jupyter._config import (
    DEFAULT_BASE_URL,
    OFFLINE,
    Secret,
    Timeouts,
    check_api_key,
    display_url,
    is_loopback_host,
    resolve_settings,
    scrub,
)
from ofox_jupyter._exceptions import ConfigError, RequestValidationError
from ofox_jupyter._images import PreparedImage
from ofox_jupyter._messages import ToolCall, assistant, tool_result
from ofox_jupyter._render import (
    call_block,
    final_bundle,
    footer_parts,
    format_cost,
    provenance,
    render_replies,
    thumbnails_bundle,
)
from ofox_jupyter._request import check_ranges, encode_body, provider_options
from ofox_jupyter._session import Exchange
from ofox_jupyter._streaming import Reply, Usage
from ofox_jupyter._tools import ToolResult

# --------------------------------------------------------------------------------------------
# _render: the footer, tool-call blocks, replies, provenance and thumbnails
# --------------------------------------------------------------------------------------------


def reply(text: str = "hi", **kw: object) -> Reply:
    kw.setdefault("model", "m")
    kw.setdefault("requested_model", kw["model"])
    return Reply(text=text, **kw)  # type: ignore[arg-type]


def exchange(text: str = "hi", *, reply_kw: dict | None = None, **kw: object) -> Exchange:
    kw.setdefault("chat", "main")
    kw.setdefault("total_seconds", 1.5)
    return Exchange(reply=reply(text, **(reply_kw or {})), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cost", "shown"),
    [
        (0, "$0"),
        (-1, "$0"),
        (0.01, "$0.01"),
        (0.5, "$0.50"),
        (1.25, "$1.25"),
        (0.0042, "$0.0042"),
        (0.000011, "$0.000011"),
    ],
)
def test_cost_is_cents_from_a_cent_up_and_two_significant_digits_below(cost, shown):
    assert format_cost(cost) == shown


def test_footer_of_a_plain_reply_is_model_and_time():
    facts, warnings = footer_parts(exchange())
    assert facts == ["m", "1.50 s"]
    assert warnings == []


def test_footer_facts_in_order():
    ex = exchange(
        chat="notes",
        cost=0.0042,
        first_token_seconds=0.25,
        reply_kw={"usage": Usage(1234, 56, 1290)},
    )
    facts, _ = footer_parts(ex)
    assert facts == [
        "m",
        "chat notes",
        "1,234 → 56 tokens",
        "$0.0042",
        "first token 0.25 s",
        "1.50 s",
    ]


def test_footer_offline_says_would_cost_and_names_the_emulator():
    facts, _ = footer_parts(exchange(cost=0.5, reply_kw={"offline": True}))
    assert facts == ["m", "would cost $0.50", "1.50 s", "offline emulator"]


def test_footer_online_cost_is_plain():
    facts, _ = footer_parts(exchange(cost=0.5))
    assert "$0.50" in facts
    assert "offline emulator" not in facts


def test_footer_names_a_fallback_only_when_one_was_asked_for():
    ex = exchange(reply_kw={"model": "b", "requested_model": "a"}, fallback_asked=True)
    assert footer_parts(ex)[0][0] == "answered by b (fallback from a)"
    ex = exchange(reply_kw={"model": "b", "requested_model": "a"})
    assert footer_parts(ex)[0][0] == "b"


def test_footer_warns_about_an_empty_complete_reply_only():
    assert footer_parts(exchange(""))[1] == ["the model sent an empty reply"]
    assert footer_parts(exchange("x"))[1] == []
    assert footer_parts(exchange("", status="interrupted"))[1] == ["interrupted: nothing kept"]
    call = ToolCall("c1", "f", "{}")
    assert footer_parts(exchange("", reply_kw={"tool_calls": (call,)}))[1] == []
    result = ToolResult(call, "1", True)
    assert footer_parts(exchange("", tool_results=(result,)))[1] == []


@pytest.mark.parametrize(
    ("finish", "warning"),
    [
        ("length", ["cut off: raise --max-tokens"]),
        ("content_filter", ["stopped by the content filter"]),
        ("stop", []),
        (None, []),
    ],
)
def test_footer_warns_about_the_finish_reason(finish, warning):
    assert footer_parts(exchange(reply_kw={"finish_reason": finish}))[1] == warning


def test_footer_keeps_the_replys_own_warnings_first():
    ex = exchange(reply_kw={"warnings": ("odd usage",), "finish_reason": "length"})
    assert footer_parts(ex)[1] == ["odd usage", "cut off: raise --max-tokens"]


@pytest.mark.parametrize(("n", "s"), [(1, ""), (2, "s"), (3, "s")])
def test_footer_counts_left_out_turns_and_images(n, s):
    warnings = footer_parts(exchange(omitted_turns=n, omitted_images=n))[1]
    assert warnings == [
        f"{n} earlier turn{s} left out (context full)",
        f"{n} earlier image{s} left out (context full)",
    ]


@pytest.mark.parametrize(("n", "s"), [(1, ""), (2, "s")])
def test_footer_says_the_tool_round_limit_was_hit(n, s):
    warnings = footer_parts(exchange(round_limit_hit=True, tool_rounds=n))[1]
    assert warnings == [f"stopped after {n} tool round{s} (raise OfoxMagics.max_tool_rounds)"]


def test_footer_status_warnings():
    assert footer_parts(exchange(status="interrupted"))[1] == ["interrupted: partial reply kept"]
    assert footer_parts(exchange(status="partial"))[1] == ["stream broke: partial reply kept"]


def test_provenance_holds_where_the_reply_came_from():
    ex = exchange(
        chat="c",
        status="partial",
        cost=0.25,
        reply_kw={
            "model": "b",
            "requested_model": "a",
            "finish_reason": "length",
            "offline": True,
            "usage": Usage(1, 2, 3),
        },
    )
    assert provenance(ex) == {
        "ofox": {
            "chat": "c",
            "turn_id": None,
            "model": "b",
            "requested_model": "a",
            "status": "partial",
            "finish_reason": "length",
            "offline": True,
            "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
            "cost": 0.25,
        }
    }
    assert provenance(exchange())["ofox"]["usage"] is None


def test_call_block_plain_text_lines():
    call_ok = ToolResult(ToolCall("1", "f", "{}"), '"ok"', True)
    assert call_block("f", '{"x": 1}', call_ok, markdown=False) == 'tool f({"x": 1}) ✓ "ok"'
    failed = ToolResult(ToolCall("1", "f", "{}"), '{"error": "x"}', False, error="boom")
    assert call_block("f", "{}", failed, markdown=False) == "tool f({}) ✗ boom"
    no_msg = ToolResult(ToolCall("1", "f", "{}"), "raw", False)
    assert call_block("f", "{}", no_msg, markdown=False) == "tool f({}) ✗ raw"
    assert call_block("f", "{}", None, markdown=False) == "tool f({}) …"
    empty = ToolResult(ToolCall("1", "f", "{}"), "", True)
    assert call_block("f", "{}", empty, markdown=False) == "tool f({}) ✓"


def test_call_block_plain_text_shortens_long_arguments_and_results():
    args = "a" * 100
    out = "b" * 300
    line = call_block("f", args, ToolResult(ToolCall("1", "f", args), out, True), markdown=False)
    assert line == f"tool f({'a' * 79}…) ✓ {'b' * 199}…"
    exact = call_block("f", "a" * 80, None, markdown=False)
    assert exact == f"tool f({'a' * 80}) …"  # exactly at the limit: kept whole
    assert call_block(
        "f", "{}", ToolResult(ToolCall("1", "f", "{}"), "b" * 200, True), markdown=False
    ).endswith(" " + "b" * 200)


def test_call_block_markdown_is_a_details_block_with_pretty_arguments():
    result = ToolResult(ToolCall("1", "f", "{}"), "42", True)
    block = call_block("f", '{"city": "Zürich", "n": [1]}', result)
    assert block == (
        '<details><summary>tool f({"city": "Zürich", "n": [1]}) ✓</summary>\n\n'
        "arguments:\n\n```json\n"
        + json.dumps({"city": "Zürich", "n": [1]}, ensure_ascii=False, indent=2)
        + "\n```\n\nresult:\n\n```\n42\n```\n\n</details>"
    )


def test_call_block_markdown_error_and_pending_and_bad_json():
    failed = ToolResult(ToolCall("1", "f", "x"), "{}", False, error="no such <tool>")
    block = call_block("f", "not json", failed)
    assert "```json\nnot json\n```" in block
    assert "\n\nerror:\n\n```\nno such <tool>\n```" in block
    assert "<summary>tool f(not json) ✗</summary>" in block
    pending = call_block("f", "{}", None)
    assert (
        pending
        == "<details><summary>tool f({}) …</summary>\n\narguments:\n\n"
        "```json\n{}\n```\n\n</details>"
    )


def test_call_block_markdown_shortens_summary_and_result():
    args = json.dumps({"k": "v" * 100})
    result = ToolResult(ToolCall("1", "f", args), "r" * 5000, True)
    block = call_block("f", args, result)
    assert f"<summary>tool f({args[:59]}…) ✓</summary>" in block
    assert "\n```\n" + "r" * 3999 + "…\n```" in block
    whole = call_block("f", "{}", ToolResult(ToolCall("1", "f", "{}"), "r" * 4000, True))
    assert "r" * 4000 + "\n```" in whole
    sixty = '"' + "a" * 58 + '"'
    assert f"<summary>tool f({sixty}) …</summary>" in call_block("f", sixty, None)


def test_render_replies_shows_every_round_in_order():
    call = ToolCall("c1", "lookup", "{}")
    replies = (
        assistant("let me look", (call,)),
        tool_result("c1", '"found"'),
        assistant("the answer"),
    )
    ex = exchange("the answer", replies=replies, tool_results=(ToolResult(call, '"found"', True),))
    assert render_replies(ex, markdown=False) == (
        'let me look\n\ntool lookup({}) ✓ "found"\n\nthe answer'
    )
    md = render_replies(ex)
    assert md.startswith("let me look\n\n<details><summary>tool lookup({}) ✓</summary>")
    assert md.endswith("</details>\n\nthe answer")


def test_render_replies_without_rounds_shows_the_reply_text():
    assert render_replies(exchange("just text")) == "just text"
    assert render_replies(exchange("")) == ""
    ex = exchange("final", replies=(assistant("from rounds"),))
    assert render_replies(ex) == "from rounds"


def test_render_replies_json_mode_value_is_pretty_printed_in_markdown_only():
    value = {"städte": ["Zürich"], "n": 1}
    ex = exchange(
        '{"städte":["Zürich"],"n":1}',
        value=value,
        replies=(assistant("intro"), assistant('{"städte":["Zürich"],"n":1}')),
    )
    pretty = json.dumps(value, ensure_ascii=False, indent=2)
    assert render_replies(ex) == f"intro\n\n```json\n{pretty}\n```"
    assert render_replies(ex, markdown=False) == 'intro\n\n{"städte":["Zürich"],"n":1}'
    assert render_replies(exchange("", value=0)) == ""  # nothing to replace


def test_final_bundle_text_and_markdown():
    ex = exchange("**hi**", reply_kw={"finish_reason": "length"})
    assert final_bundle(ex, "text") == {
        "text/plain": "**hi**\n\n— m · 1.50 s · ⚠ cut off: raise --max-tokens"
    }
    bundle = final_bundle(ex, "markdown")
    assert bundle == {
        "text/markdown": "**hi**\n\n<sub>m · 1.50 s · ⚠ cut off: raise --max-tokens</sub>",
        "text/plain": "**hi**\n\n— m · 1.50 s · ⚠ cut off: raise --max-tokens",
    }


def test_final_bundle_of_an_empty_reply():
    bundle = final_bundle(exchange("", status="interrupted"), "markdown")
    assert bundle["text/plain"] == "— m · 1.50 s · ⚠ interrupted: nothing kept"
    assert bundle["text/markdown"].startswith("*(no text)*\n\n<sub>")


def test_final_bundle_plain_text_shows_tool_calls_as_lines():
    call = ToolCall("c1", "f", "{}")
    ex = exchange(
        "", replies=(assistant(None, (call,)),), tool_results=(ToolResult(call, "1", True),)
    )
    assert final_bundle(ex, "text")["text/plain"].startswith("tool f({}) ✓ 1\n\n— ")
    assert "<details>" in final_bundle(ex, "markdown")["text/markdown"]


def test_final_bundle_escapes_html_in_the_footer():
    ex = exchange(reply_kw={"model": "<b>m</b>"})
    assert (
        "<sub>&lt;b&gt;m&lt;/b&gt; · 1.50 s</sub>" in final_bundle(ex, "markdown")["text/markdown"]
    )


def test_thumbnails_of_local_and_remote_images():
    local = PreparedImage(
        url="data:image/png;base64,AAAA",
        detail=None,
        width=640,
        height=480,
        mime="image/png",
        thumbnail="data:image/png;base64,T",
        source="fig 1",
    )
    remote = PreparedImage(url='https://x.test/a.png?a=1&b="2"', detail=None, source="")
    bundle = thumbnails_bundle([local, remote])
    assert bundle["text/plain"] == "[sent 2 images: fig 1 (640×480 png), image (URL, sent as is)]"
    assert bundle["text/html"] == (
        '<div class="ofox-images">'
        '<img src="data:image/png;base64,T" title="fig 1: 640×480 png" alt="fig 1: 640×480 png" '
        'style="height:80px;margin:0 6px 0 0;border:1px solid #ddd">'
        '<a href="https://x.test/a.png?a=1&amp;b=&quot;2&quot;">: URL, sent as is</a>'
        "</div>"
    )
    one = thumbnails_bundle([remote])
    assert one["text/plain"] == "[sent 1 image: image (URL, sent as is)]"


def test_thumbnail_titles_escape_quotes():
    img = PreparedImage(
        url="data:,",
        detail=None,
        width=1,
        height=2,
        mime="image/jpeg",
        thumbnail="data:T",
        source='my "plot"',
    )
    html_ = thumbnails_bundle([img])["text/html"]
    assert 'title="my &quot;plot&quot;: 1×2 jpeg"' in html_
    no_mime = PreparedImage(url="u", detail=None, width=1, height=2, mime=None, source="s")
    assert "s (URL, sent as is)" in thumbnails_bundle([no_mime])["text/plain"]


# --------------------------------------------------------------------------------------------
# _config: keys, base URLs, timeouts, secrets
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("ab\ncd", "the API key contains a line break at position 3 of 5"),
        ("ab\rcd", "the API key contains a line break at position 3 of 5"),
        ("ab\u2028c", "the API key contains a line break at position 3 of 4"),
        ("ab cd", "the API key contains a space or tab at position 3 of 5"),
        ("a\tb", "the API key contains a space or tab at position 2 of 3"),
        ("a\x00b", "the API key contains a control character (U+0000) at position 2 of 3"),
        ("a\x7fb", "the API key contains a control character (U+007F) at position 2 of 3"),
        ("a\x01b", "the API key contains a control character (U+0001) at position 2 of 3"),
        (
            "ab\u200b",
            "the API key contains a non-ASCII character (U+200B ZERO WIDTH SPACE) "
            "at position 3 of 3",
        ),
        (
            "é",
            "the API key contains a non-ASCII character (U+00E9 LATIN SMALL LETTER E WITH "
            "ACUTE) at position 1 of 1",
        ),
        (
            "a\U000e0080",
            "the API key contains a non-ASCII character (U+E0080 unnamed) at position 2 of 2",
        ),
    ],
)
def test_a_bad_key_is_named_by_position_never_shown(key, message):
    with pytest.raises(ConfigError) as info:
        check_api_key(key)
    assert info.value.message == message
    assert info.value.hint == "copy the key again from the OfoxAI console, on one line"


def test_a_good_key_keeps_every_printable_ascii_character():
    key = "".join(chr(c) for c in range(0x21, 0x7F))
    assert check_api_key(f"  {key}\n") == key


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://api.test/v1", "https://api.test/v1"),
        ("https://user:pw@api.test/v1", "https://***@api.test/v1"),
        ("https://user@api.test:8443/v1", "https://***@api.test:8443/v1"),
        ("http://:pw@[::1]:8080/x", "http://***@[::1]:8080/x"),
        ("http://u:p@[::1", "(a malformed URL)"),
    ],
)
def test_display_url_hides_credentials(url, shown):
    assert display_url(url) == shown


def test_timeouts_coerce():
    assert Timeouts.coerce(None) == Timeouts(10.0, 120.0, 60.0, 30.0)
    t = Timeouts(1, 2, 3, 4)
    assert Timeouts.coerce(t) is t
    assert Timeouts.coerce(5) == Timeouts(5.0, 5.0, 5.0, 5.0)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("localhost", True),
        ("LOCALHOST", True),
        ("localhost.localdomain", True),
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("[::1]", True),
        ("10.0.0.1", False),
        ("example.com", False),
        ("", False),
    ],
)
def test_is_loopback_host(host, loopback):
    assert is_loopback_host(host) is loopback


def test_resolve_settings_order_and_defaults(monkeypatch):
    monkeypatch.setenv("OFOX_API_KEY", "env-key")
    monkeypatch.setenv("OFOX_BASE_URL", "https://env.test/v1/")
    s = resolve_settings()
    assert (s.base_url, s.api_key.reveal(), s.offline) == ("https://env.test/v1", "env-key", False)
    assert s.max_retries == 2 and s.timeouts == Timeouts()
    s = resolve_settings(
        api_key="arg-key", base_url=" https://arg.test/v2// ", max_retries=0, timeout=3
    )
    assert (s.base_url, s.api_key.reveal()) == ("https://arg.test/v2", "arg-key")
    assert s.max_retries == 0 and s.timeouts == Timeouts(3, 3, 3, 3)
    monkeypatch.delenv("OFOX_BASE_URL")
    assert resolve_settings().base_url == DEFAULT_BASE_URL


def test_resolve_settings_goes_offline_without_a_key_or_when_asked(monkeypatch):
    s = resolve_settings(timeout=7, max_retries=1)
    assert (s.base_url, s.api_key, s.offline) == (OFFLINE, None, True)
    assert s.timeouts == Timeouts(7, 7, 7, 7) and s.max_retries == 1
    s = resolve_settings(api_key="k", base_url="OFFLINE")
    assert (s.base_url, s.api_key, s.offline) == (OFFLINE, None, True)
    # an empty key counts as none; an empty key with another URL is not offline
    s = resolve_settings(api_key="", base_url="https://other.test")
    assert (s.offline, s.api_key) == (False, None)
    # a key for the real gateway is used
    s = resolve_settings(api_key="k")
    assert (s.base_url, s.offline) == (DEFAULT_BASE_URL, False)


def test_resolve_settings_rejects_bad_urls_and_retries():
    with pytest.raises(ConfigError, match="max_retries must be 0 or more, not -1"):
        resolve_settings(api_key="k", base_url="https://x.test", max_retries=-1)
    for url in ("ftp://x.test", "https://", "https://x.test:port/v1", "x.test"):
        with pytest.raises(ConfigError) as info:
            resolve_settings(api_key="k", base_url=url)
        shown = display_url(url.rstrip("/"))
        assert info.value.message == f"base URL {shown!r} is not an http(s) URL"
        assert "OFOX_BASE_URL" in info.value.hint


def test_a_key_goes_over_plain_http_only_to_this_machine():
    with pytest.raises(ConfigError) as info:
        resolve_settings(api_key="k", base_url="http://remote.test/v1")
    assert info.value.message == "refusing to send the API key over plain http to remote.test"
    assert info.value.hint == "use an https:// base URL"
    assert resolve_settings(api_key="k", base_url="http://127.0.0.1:9/v1").api_key.reveal() == "k"
    # without a key nothing secret is sent: plain http is fine
    assert resolve_settings(base_url="http://remote.test/v1").api_key is None


def test_url_credentials_become_secrets_that_scrub_removes():
    s = resolve_settings(api_key="k", base_url="https://someuser:longpassword@x.test/v1")
    assert {c.reveal() for c in s.url_secrets} == {"someuser", "longpassword"}
    assert s.shown_url == "https://***@x.test/v1"
    assert "longpassword" not in scrub("a longpassword b")
    assert "someuser" not in scrub("someuser!")


def test_scrub_takes_the_longest_secret_out_whole():
    short = Secret("abc123")
    long = Secret("xyz-abc123-tail")
    assert scrub("key xyz-abc123-tail and abc123") == "key ******** and ********"
    assert scrub(42) == "42"
    del short, long


def test_secret_never_shows_itself():
    s = Secret("sk-very-secret")
    assert repr(s) == str(s) == "Secret('********')"
    assert s.redact("a sk-very-secret b") == "a ******** b"
    assert Secret("").redact("text") == "text"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(s)
    assert s in _config._LIVE
    assert Secret("") not in _config._LIVE


# --------------------------------------------------------------------------------------------
# _request: the body checks and their messages
# --------------------------------------------------------------------------------------------


def test_provider_options():
    assert provider_options() is None
    assert provider_options(fallback=[" ", ""]) is None
    assert provider_options("cost", [" a ", "", "b"]) == {"routing": "cost", "fallback": ["a", "b"]}
    with pytest.raises(RequestValidationError) as info:
        provider_options("fastest")
    assert info.value.message == (
        "routing must be one of priority, cost, latency, balanced, not 'fastest'"
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"a": float("nan")}, "cannot send the request: a is nan (JSON has no NaN or infinity)"),
        (
            {"a": [1, float("-inf")]},
            "cannot send the request: a[1] is -inf (JSON has no NaN or infinity)",
        ),
        ({"a": {"b": {1, 2}}}, "cannot send the request: a.b is a set, which JSON cannot carry"),
        ({"a": {(1, 2): 3}}, "cannot send the request: a is a dict with a tuple key"),
        (
            {"x": 1, "y": object()},
            "cannot send the request: y is a object, which JSON cannot carry",
        ),
    ],
)
def test_an_unsendable_body_names_the_value(body, message):
    with pytest.raises(RequestValidationError) as info:
        encode_body(body)
    assert info.value.message == message
    assert info.value.hint == "pass plain JSON values (numbers, text, lists, dicts)"


def test_an_unsendable_cycle_is_named():
    loop: list = []
    loop.append(loop)
    with pytest.raises(RequestValidationError, match=r"\[0\] is a reference to itself"):
        encode_body({"a": loop})


def test_encode_body_is_compact_utf8_and_replaces_lone_surrogates():
    assert encode_body({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()
    assert encode_body({"a": "x\ud83dy"}) == '{"a":"x\ufffdy"}'.encode()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"temperature": 2.5}, "temperature must be in [0, 2], not 2.5"),
        ({"temperature": -0.1}, "temperature must be in [0, 2], not -0.1"),
        ({"top_p": 0}, "top_p must be in (0, 1], not 0"),
        ({"top_p": 1.5}, "top_p must be in (0, 1], not 1.5"),
        ({"presence_penalty": -3}, "presence_penalty must be in [-2, 2], not -3"),
        ({"frequency_penalty": 2.01}, "frequency_penalty must be in [-2, 2], not 2.01"),
        ({"temperature": "hot"}, "temperature must be a number, not 'hot'"),
        ({"temperature": True}, "temperature must be a number, not True"),
        ({"temperature": float("inf")}, "temperature must be a finite number, not inf"),
        ({"max_tokens": 0}, "max_tokens must be a whole number from 1 to 10,000,000, not 0"),
        (
            {"max_tokens": 10_000_001},
            "max_tokens must be a whole number from 1 to 10,000,000, not 10000001",
        ),
        ({"max_tokens": 1.5}, "max_tokens must be a whole number from 1 to 10,000,000, not 1.5"),
        ({"max_tokens": True}, "max_tokens must be a whole number from 1 to 10,000,000, not True"),
        (
            {"max_tokens": 10**40},
            "max_tokens must be a whole number from 1 to 10,000,000, not a number that large",
        ),
    ],
)
def test_out_of_range_values_are_refused_with_the_interval(params, message):
    with pytest.raises(RequestValidationError) as info:
        check_ranges(params)
    assert info.value.message == message


def test_the_range_ends_that_are_allowed():
    check_ranges(
        {
            "temperature": 0,
            "top_p": 1,
            "presence_penalty": -2,
            "frequency_penalty": 2,
            "max_tokens": 1,
        }
    )
    check_ranges({"temperature": 2, "max_tokens": 10_000_000, "top_p": None})


def test_json_mode_replaces_only_the_last_piece():
    ex = exchange(
        "{}", value={"a": 1}, replies=(assistant("one"), assistant("two"), assistant('{"a":1}'))
    )
    assert render_replies(ex) == 'one\n\ntwo\n\n```json\n{\n  "a": 1\n}\n```'


def test_url_edges_keep_their_letters_and_hide_credentials_without_a_host():
    s = resolve_settings(api_key="k", base_url="https://x.test/pathX/")
    assert s.base_url == "https://x.test/pathX"
    assert display_url("https://user@/x") == "https://***@/x"
    with pytest.raises(ConfigError) as info:
        resolve_settings(api_key="k", base_url="nope")
    assert info.value.hint == "set OFOX_BASE_URL to e.g. https://api.ofox.ai/v1, or 'offline'"
    with pytest.raises(TypeError) as error:
        pickle.dumps(Secret("x"))
    assert str(error.value) == "a Secret cannot be pickled"
