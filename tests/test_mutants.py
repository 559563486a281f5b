"""Behaviour pinned down where mutation testing (bench/mutation.py) found the suite silent.

Each test states a user- or API-visible behaviour of a core module: what the footer says, what a
tool-call block shows, what provenance metadata holds, how a config value is read, … — not how the
code computes it.
"""

from __future__ import annotations

import json
import pickle

import pytest
from IPython.core.error import UsageError

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
        pending == "<details><summary>tool f({}) …</summary>\n\narguments:\n\n"
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


# --------------------------------------------------------------------------------------------
# _request: wait hints and what an unsendable body is
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("12s", 12.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("1h", 3600.0),
        (" 2.5s ", 2.5),
        ("0s", 0.0),
        ("", None),
        ("s", None),
        ("12", None),
        ("12s later", None),
        ("x12s", None),
        ("1m 30s", None),
    ],
)
def test_parse_duration(text, seconds):
    from ofox_jupyter._request import parse_duration

    assert parse_duration(text) == seconds


def test_the_rate_limit_reset_is_a_wait_hint_only_when_the_window_is_used_up():
    from ofox_jupyter._request import retry_after_seconds

    used_up = {"x-ratelimit-reset-requests": "1m30s", "x-ratelimit-remaining-requests": "0"}
    assert retry_after_seconds(used_up) == 90.0
    assert retry_after_seconds({**used_up, "x-ratelimit-remaining-requests": "3"}) is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"a": float("inf")}, "cannot send the request: a is inf (JSON has no NaN or infinity)"),
        ({"a": 1.5, "b": {1}}, "cannot send the request: b is a set, which JSON cannot carry"),
        (
            {"a": {"b": [1, "x", None, True]}, "c": {2}},
            "cannot send the request: c is a set, which JSON cannot carry",
        ),
        (
            {"a": [{"b": 1}, [2]], "c": b"x"},
            "cannot send the request: c is a bytes, which JSON cannot carry",
        ),
    ],
)
def test_an_unsendable_value_after_good_ones_is_the_one_named(body, message):
    with pytest.raises(RequestValidationError) as info:
        encode_body(body)
    assert info.value.message == message


def _nested(levels: int) -> dict:
    deep: list = []
    inner = deep
    for _ in range(levels):
        nxt: list = []
        inner.append(nxt)
        inner = nxt
    inner.append({1})
    return {"a": deep}


def test_a_body_nested_too_deeply_is_named_where_the_depth_limit_is():
    # 200 containers deep is still looked into; below that the value is "nested too deeply".
    with pytest.raises(RequestValidationError) as info:
        encode_body(_nested(198))
    assert info.value.message == (
        "cannot send the request: a" + "[0]" * 199 + " is a set, which JSON cannot carry"
    )
    with pytest.raises(RequestValidationError) as info:
        encode_body(_nested(199))
    assert info.value.message == (
        "cannot send the request: a" + "[0]" * 200 + " is nested too deeply"
    )


def test_the_same_value_twice_is_not_a_cycle():
    shared = {"k": {1}}
    with pytest.raises(RequestValidationError) as info:
        encode_body({"a": [[1], [1]], "b": shared})
    assert info.value.message == "cannot send the request: b.k is a set, which JSON cannot carry"


def test_a_dict_that_holds_itself_is_named_as_a_cycle():
    loop: dict = {}
    loop["again"] = loop
    with pytest.raises(RequestValidationError) as info:
        encode_body({"a": loop})
    assert (
        info.value.message == "cannot send the request: a.again is a reference to itself (a cycle)"
    )


def test_a_decimal_nan_is_named_by_its_type():
    from decimal import Decimal

    with pytest.raises(RequestValidationError) as info:
        encode_body({"a": Decimal("NaN")})
    assert info.value.message == "cannot send the request: a is a Decimal, which JSON cannot carry"


# --------------------------------------------------------------------------------------------
# _conversation: images left out, a cleared chat
# --------------------------------------------------------------------------------------------

_NOTE = "[an image was here; left out]"


def _image_turn(turn_id: str, cell_id: str | None = None):
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import image_part, user

    return Turn(
        id=turn_id,
        chat="main",
        user=user("look at this", [image_part("data:image/png;base64,AAAA")]),
        replies=(
            assistant("a cat"),
            # a figure a tool made, sent back to the model as a user message among the replies
            user(
                "the plot", [image_part("https://x.test/p.png"), image_part("https://x.test/q.png")]
            ),
            assistant("two lines"),
        ),
        cell_id=cell_id,
    )


def test_strip_images_leaves_a_note_in_place_of_each_image_and_keeps_the_text():
    from ofox_jupyter._conversation import strip_images
    from ofox_jupyter._messages import image_part, text_part, user

    message = user(
        "look", [image_part("data:image/png;base64,AAAA"), image_part("https://x/y.png")]
    )
    stripped = strip_images(message)
    assert stripped.role == "user"
    assert stripped.content == (text_part("look"), text_part(_NOTE), text_part(_NOTE))
    assert stripped.images == ()
    assert stripped.text == f"look\n{_NOTE}\n{_NOTE}"
    for plain in (user("hi"), assistant("ok"), _text_parts_message()):
        assert strip_images(plain) == plain


def _text_parts_message():
    from ofox_jupyter._messages import Message, text_part

    return Message(role="user", content=(text_part("a"), text_part("b")))


def test_a_request_over_budget_leaves_out_the_images_of_every_message_of_a_turn():
    from ofox_jupyter._conversation import Conversation, estimate_tokens, turn_sizes
    from ofox_jupyter._messages import user

    chat = Conversation("main")
    turn = _image_turn("t1")
    chat.record(turn)
    new = user("next")
    slim, extra, images = turn_sizes(turn)
    assert images == 3 and extra > 0
    budget = estimate_tokens(new) + slim  # the words fit, the images do not
    messages, start, omitted = chat.request_messages(new, budget=budget)
    assert (start, omitted) == (0, 3)
    assert [m.images for m in messages] == [(), (), (), (), ()]
    assert [m.text for m in messages] == [
        f"look at this\n{_NOTE}",
        "a cat",
        f"the plot\n{_NOTE}\n{_NOTE}",
        "two lines",
        "next",
    ]


def test_a_cleared_chat_sizes_its_requests_like_a_new_one():
    from ofox_jupyter._conversation import Conversation, estimate_tokens, turn_sizes
    from ofox_jupyter._messages import user

    chat = Conversation("main", turns=[_image_turn("old", "c1")])
    chat.clear()
    assert len(chat) == 0 and chat.ids == () and chat.position_of_cell("c1") is None
    turn = _image_turn("t1")
    chat.record(turn)
    new = user("next")
    slim, extra, images = turn_sizes(turn)
    fixed = estimate_tokens(new)
    # Everything fits exactly: nothing is left out.
    messages, start, omitted = chat.request_messages(new, budget=fixed + slim + extra)
    assert (start, omitted) == (0, 0) and len(messages) == 5
    assert sum(len(m.images) for m in messages) == 3
    # Not even the words fit: the turn is left out, and so are its three images.
    messages, start, omitted = chat.request_messages(new, budget=fixed + slim - 1)
    assert (messages, start, omitted) == ([new], 1, 3)


def test_restored_entries_count_toward_the_window_like_recorded_turns():
    from ofox_jupyter._conversation import Conversation, estimate_tokens, turn_sizes
    from ofox_jupyter._messages import user

    stored = {"t1": _image_turn("t1"), "t2": _image_turn("t2", "c2")}
    chat = Conversation("main", loader=lambda ids: {i: stored[i] for i in ids if i in stored})
    first = user("first words")
    from ofox_jupyter._conversation import Turn

    chat.record(Turn(id="t0", chat="main", user=first, replies=(assistant("ok"),)))
    sizes = [turn_sizes(stored[i]) for i in ("t1", "t2")]
    chat.add_entries(["t1", "t2"], [None, "c2"], *[[s[k] for s in sizes] for k in range(3)])
    assert chat.ids == ("t0", "t1", "t2") and chat.position_of_cell("c2") == 2
    new = user("next")
    fixed = estimate_tokens(new)
    slim = sum(turn_sizes(t)[0] for t in (chat.turns[0], stored["t1"], stored["t2"]))
    extra = sum(s[1] for s in sizes)
    messages, start, omitted = chat.request_messages(new, budget=fixed + slim + extra)
    assert (start, omitted, len(messages)) == (0, 0, 11)
    messages, start, omitted = chat.request_messages(new, budget=fixed + slim)
    assert (start, omitted, len(messages)) == (0, 6, 11)
    assert all(m.images == () for m in messages)
    messages, start, omitted = chat.request_messages(new, budget=fixed + slim - 1)
    assert (start, omitted, len(messages)) == (1, 6, 9)


@pytest.mark.parametrize("data", [{"id": "x"}, {"id": "x", "user": "hi"}, ["id", "user"], None])
def test_a_row_without_a_user_message_is_not_a_turn(data):
    from ofox_jupyter._conversation import Turn

    with pytest.raises(ValueError) as info:
        Turn.from_dict(data)
    assert str(info.value) == "not a turn"


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        (400, False),
        (404, False),
        (408, True),
        (409, True),
        (410, False),
        (429, True),
        (499, False),
        (500, True),
        (503, True),
    ],
)
def test_which_statuses_are_retried(status, retry):
    from ofox_jupyter._request import RetryPolicy

    assert RetryPolicy().retryable_status(status) is retry


def test_retry_waits_double_with_at_most_a_quarter_of_jitter_and_a_cap():
    from ofox_jupyter._request import RetryPolicy

    policy = RetryPolicy(max_retries=10, initial=0.5, maximum=3.0, max_hint=60.0)
    for attempt, full in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 3.0), (6, 3.0)]:
        for _ in range(50):
            wait = policy.delay(attempt)
            assert 0.75 * full <= wait <= full
    assert policy.delay(10) is None
    # The server's hint is taken as it is, up to the longest wait worth blocking for.
    assert policy.delay(0, {"retry-after": "60"}) == 60.0
    assert policy.delay(0, {"retry-after": "61"}) is None


# --------------------------------------------------------------------------------------------
# _streaming: errors mid-stream, chunk previews, whole replies as events, malformed completions
# --------------------------------------------------------------------------------------------


def _stream_error(data: str, event: str = "", secret=None):
    from ofox_jupyter._exceptions import StreamError
    from ofox_jupyter._streaming import StreamState

    state = StreamState("m", secret=secret)
    state.on_event("", json.dumps({"choices": [{"delta": {"content": "par"}}]}))
    with pytest.raises(StreamError) as info:
        state.on_event(event, data)
    assert info.value.partial.text == "par" and info.value.partial.complete is False
    return info.value


@pytest.mark.parametrize(
    ("error", "message", "api_type", "code"),
    [
        (
            {"message": "bad\n   thing", "type": "server_error", "code": 502},
            "the API reported an error mid-stream (server_error 502): bad thing",
            "server_error",
            502,
        ),
        (
            {"message": "slow", "type": "overloaded", "code": "busy"},
            "the API reported an error mid-stream (overloaded busy): slow",
            "overloaded",
            "busy",
        ),
        (
            {"message": "", "code": True},
            "the API reported an error mid-stream: unknown error",
            None,
            None,
        ),
        (
            {"message": 7, "type": 3, "code": 1.5},
            "the API reported an error mid-stream: unknown error",
            None,
            None,
        ),
        ({"code": "c1"}, "the API reported an error mid-stream (c1): unknown error", None, "c1"),
        ("overloaded  now", "the API reported an error mid-stream: overloaded now", None, None),
        (5, "the API reported an error mid-stream: unknown error", None, None),
        (["x"], "the API reported an error mid-stream: unknown error", None, None),
    ],
)
def test_an_error_mid_stream_says_what_the_api_said(error, message, api_type, code):
    err = _stream_error(json.dumps({"error": error}))
    assert (err.kind, err.message, err.api_type, err.code) == (
        "error_event",
        message,
        api_type,
        code,
    )


def test_an_error_event_without_an_error_field_reads_the_chunk_itself():
    err = _stream_error(json.dumps({"message": "quota", "type": "billing"}), event="error")
    assert (err.message, err.api_type) == (
        "the API reported an error mid-stream (billing): quota",
        "billing",
    )


def test_a_long_error_message_is_cut_at_300_characters():
    exact = _stream_error(json.dumps({"error": "x" * 300})).message
    assert exact == "the API reported an error mid-stream: " + "x" * 300
    long = _stream_error(json.dumps({"error": {"message": "y" * 301}})).message
    assert long == "the API reported an error mid-stream: " + "y" * 299 + "…"


def test_a_chunk_that_is_not_json_is_quoted_up_to_80_characters():
    err = _stream_error("not json")
    assert (err.kind, err.message) == (
        "malformed",
        "the stream sent a chunk that is not JSON: 'not json'",
    )
    exact = "a" * 80
    assert _stream_error(exact).message == f"the stream sent a chunk that is not JSON: {exact!r}"
    assert _stream_error("b" * 81).message == (
        f"the stream sent a chunk that is not JSON: {'b' * 80!r}…"
    )
    assert _stream_error("[1, 2]").message == "the stream sent a non-object chunk: '[1, 2]'"


def test_a_chunk_preview_never_shows_the_key_even_where_it_is_cut():
    key = Secret("sk-previewsecret-0123456789")
    data = "z" * 70 + key.reveal() + "tail"
    err = _stream_error(data, secret=key)
    assert key.reveal() not in err.message and "sk-prev" not in err.message
    assert err.message == (
        "the stream sent a chunk that is not JSON: "
        + repr(("z" * 70 + "********" + "tail")[:80])
        + "…"
    )


def test_a_whole_reply_stands_for_the_events_a_stream_would_have_sent():
    from ofox_jupyter._streaming import (
        FinishEvent,
        ReasoningDelta,
        TextDelta,
        ToolCallDelta,
        UsageEvent,
        events_of_reply,
    )

    usage = Usage(3, 4, 7)
    whole = reply(
        "hi",
        reasoning="thinking",
        tool_calls=(ToolCall("c1", "f", '{"a":1}'), ToolCall("c2", "g", "{}")),
        finish_reason="tool_calls",
        usage=usage,
    )
    assert events_of_reply(whole) == [
        ReasoningDelta("thinking"),
        TextDelta("hi"),
        ToolCallDelta(0, "c1", "f", '{"a":1}'),
        ToolCallDelta(1, "c2", "g", "{}"),
        FinishEvent("tool_calls"),
        UsageEvent(usage),
    ]
    assert events_of_reply(reply("")) == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"choices": "x"}, "choices is text, not a list"),
        ({"choices": (1,)}, "choices is tuple, not a list"),
        ({"choices": [5]}, "choices[0] is a number, not an object"),
        ({"choices": [True]}, "choices[0] is true/false, not an object"),
        ({"choices": [[1]]}, "choices[0] is a list, not an object"),
        ({"choices": [{"message": "hi"}]}, "message is text, not an object"),
        (
            {"choices": [{"message": {"content": {"a": 1}}}]},
            "message.content is an object, not text",
        ),
        ({"choices": [{"message": {"content": 2.5}}]}, "message.content is a number, not text"),
        (
            {"choices": [{"message": {}, "finish_reason": False}]},
            "finish_reason is true/false, not text",
        ),
        (
            {"choices": [{"message": {}, "finish_reason": 0.5}]},
            "finish_reason is a number, not text",
        ),
        (
            {"choices": [{"message": {}, "finish_reason": ["stop"]}]},
            "finish_reason is a list, not text",
        ),
    ],
)
def test_a_malformed_completion_names_the_field_and_what_it_was(body, message):
    from ofox_jupyter._streaming import MalformedChunk, reply_from_completion

    with pytest.raises(MalformedChunk) as info:
        reply_from_completion(body, "m")
    assert str(info.value) == message


def test_usage_of_the_wrong_shape_is_one_warning_however_often_it_comes():
    from ofox_jupyter._streaming import StreamState

    state = StreamState("m")
    for data in (
        {"choices": [{"delta": {"content": "a"}}], "usage": {"prompt_tokens": "n/a"}},
        {"choices": [{"delta": {"content": "b"}}], "usage": {"prompt_tokens": "n/a"}},
        {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": [1]},
    ):
        state.on_event("", json.dumps(data))
    done = state.on_end()
    assert done.text == "ab" and done.usage is None
    assert done.warnings == (
        "usage.prompt_tokens is text, not a token count: usage left out",
        "usage is a list, not an object: usage left out",
    )


def test_a_turn_comes_back_whole_from_its_stored_json():
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import image_part, user

    turn = Turn(
        id="t1",
        chat="side",
        user=user("look", [image_part("https://x.test/a.png")]),
        replies=(
            assistant(None, [ToolCall("c1", "f", "{}")]),
            tool_result("c1", "4"),
            assistant("4"),
        ),
        cell_id="cell-9",
        model="openai/gpt-4o",
        served_model="openai/gpt-4o-2024",
        usage=Usage(10, 5, 15, cached_tokens=2),
        cost=0.25,
        finish_reason="stop",
        status="interrupted",
        created=1700000000.5,
    )
    data = json.loads(json.dumps(turn.to_dict()))
    assert Turn.from_dict(data) == turn


def test_a_stored_turn_with_odd_values_gets_the_defaults():
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import user

    turn = Turn.from_dict(
        {
            "id": 7,
            "chat": "",
            "user": {"role": "user", "content": "hi"},
            "replies": [{"role": "assistant", "content": "ok"}],
            "cell_id": 5,
            "model": None,
            "usage": "lots",
            "cost": "free",
            "finish_reason": 1,
            "status": "",
            "created": None,
        }
    )
    assert turn == Turn(id="7", chat="main", user=user("hi"), replies=(assistant("ok"),))
    one = {
        "id": "a",
        "user": {"role": "user", "content": "x"},
        "replies": [{"role": "assistant", "content": "y"}],
        "cost": 2,
    }
    assert Turn.from_dict(one).cost == 2.0


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"id": "a", "user": {"role": "user"}, "replies": "text"},
            "replies must be a list of messages",
        ),
        (
            {"id": "a", "user": {"role": "user"}, "replies": [1]},
            "replies must be a list of messages",
        ),
        ({"user": {"role": "user"}, "replies": [{"role": "assistant"}]}, "not a turn: 'id'"),
    ],
)
def test_a_stored_turn_of_the_wrong_shape_says_why(data, message):
    from ofox_jupyter._conversation import Turn

    with pytest.raises(ValueError) as info:
        Turn.from_dict(data)
    assert str(info.value) == message


# --------------------------------------------------------------------------------------------
# _history: the store's notebooks, copies, clearing, usage and a file deleted under it
# --------------------------------------------------------------------------------------------

_PNG = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4DwABBAEAwS2"
    "OUAAAAABJRU5ErkJggg=="
)


def _turn(turn_id: str, chat: str = "main", text: str = "q", image: str | None = None, cell=None):
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import image_part, user

    images = [image_part(image)] if image else []
    return Turn(
        id=turn_id,
        chat=chat,
        user=user(text, images),
        replies=(assistant(f"answer to {text}"),),
        cell_id=cell,
    )


def _texts(store, notebook: str) -> dict[str, list[str]]:
    return {
        name: [t.user.text for t in chat.turns]
        for name, chat in sorted(store.load(notebook).items())
    }


def _image_rows(path) -> int:
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute("SELECT COUNT(*) FROM images").fetchone()[0]


def test_the_notebook_a_kernel_works_under_is_the_one_it_was_last_bound_to(tmp_path):
    from ofox_jupyter._history import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3")
    assert store.notebook_of_kernel("k1") is None
    store.bind("nb1", path="a.ipynb", kernel="k1")
    store.bind("nb2", path="b.ipynb", kernel="k2")
    assert (store.notebook_of_kernel("k1"), store.notebook_of_kernel("k2")) == ("nb1", "nb2")
    store.bind("nb3", path="c.ipynb", kernel="k1")
    assert store.notebook_of_kernel("k1") == "nb3"
    assert store.notebook("nb1").kernel is None  # a kernel works for one notebook at a time
    assert store.notebook_of_kernel("k3") is None


def test_has_turns_is_per_notebook(tmp_path):
    from ofox_jupyter._history import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3")
    store.save_chat("nb1", "main", "be brief")
    assert store.has_turns("nb1") is False
    store.save_turn("nb1", _turn("t1"))
    assert (store.has_turns("nb1"), store.has_turns("nb2")) == (True, False)


def test_a_chat_index_counts_its_turns(tmp_path):
    from ofox_jupyter._history import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3")
    store.save_chat("nb1", "empty", "sys")
    for i in range(3):
        store.save_turn("nb1", _turn(f"t{i}", text=f"q{i}"))
    sizes = {index.name: len(index) for index in store.index("nb1")}
    assert sizes == {"empty": 0, "main": 3}


def test_clearing_one_chat_or_a_whole_notebook(tmp_path):
    from ofox_jupyter._history import HistoryStore

    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    other_png = _PNG[:-4] + "AAAA"
    store.save_turn("nb1", _turn("t1", text="a", image=_PNG))
    store.save_turn("nb1", _turn("t2", chat="side", text="b", image=other_png))
    store.save_turn("nb2", _turn("t3", text="c", image=_PNG))
    store.add_usage("nb1", "m", 10, 5, 0.5)
    store.add_usage("nb2", "m", 1, 1, None)
    assert _image_rows(path) == 2

    store.clear("nb1", "side")
    assert _texts(store, "nb1") == {"main": ["a"]}
    assert _image_rows(path) == 1  # the image only the cleared chat showed is gone
    assert store.usage("nb1") == [("m", 10, 5, 0.5, 1, 0, 0)]  # one chat: usage stays

    store.clear("nb1")
    assert _texts(store, "nb1") == {} and store.usage("nb1") == []
    assert _texts(store, "nb2") == {"main": ["c"]}
    assert store.usage("nb2") == [("m", 1, 1, None, 1, 0, 0)]
    assert _image_rows(path) == 1  # still shown by nb2
    assert store.load("nb2")["main"].turns[0].user.images[0]["image_url"]["url"] == _PNG


def test_usage_adds_up_per_model_and_skips_rows_another_program_damaged(tmp_path):
    import sqlite3

    from ofox_jupyter._history import HistoryStore

    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.add_usage("nb1", "b-model", 10, 5, None)
    store.add_usage("nb1", "b-model", 1, 2, None, cached=3, reasoning=4)
    store.add_usage("nb1", "a-model", 7, 8, 0.25, requests=2)
    store.add_usage("nb1", "a-model", 1, 1, None)
    assert store.usage("nb1") == [
        ("a-model", 8, 9, 0.25, 3, 0, 0),
        ("b-model", 11, 7, None, 2, 3, 4),
    ]
    with sqlite3.connect(path) as db:
        for model, prompt, completion, cost, requests in [
            (b"blob", 1, 1, 0.1, 1),
            ("c1", "lots", 1, 0.1, 1),
            ("c2", 1, "lots", 0.1, 1),
            ("c3", 1, 1, "free", 1),
            ("c4", 1, 1, 0.1, "one"),
        ]:
            db.execute(
                "INSERT INTO usage (notebook, model, prompt_tokens, completion_tokens, cost, "
                "requests, cached_tokens, reasoning_tokens) VALUES ('nb1', ?, ?, ?, ?, ?, 'x', 1)",
                (model, prompt, completion, cost, requests),
            )
        db.execute(
            "INSERT INTO usage (notebook, model, prompt_tokens, completion_tokens, cost, "
            "requests, cached_tokens, reasoning_tokens) VALUES ('nb1', 'ok', 1, 2, 3, 4, 'x', 2.5)"
        )
    assert [row[0] for row in store.usage("nb1")] == ["a-model", "b-model", "ok"]
    assert store.usage("nb1")[2] == ("ok", 1, 2, 3, 4, 0, 0)


def test_a_copy_gets_every_chat_or_only_the_turns_its_file_shows(tmp_path):
    from ofox_jupyter._history import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3")
    store.save_chat("nb1", "side", "be brief")
    store.save_turn("nb1", _turn("t1", text="a"))
    store.save_turn("nb1", _turn("t2", text="b"))
    store.save_turn("nb1", _turn("t3", chat="side", text="c"))
    assert store.fork("nb1", "nb2") == 3
    assert _texts(store, "nb2") == {"main": ["a", "b"], "side": ["c"]}
    copied = store.load("nb2")
    assert copied["side"].system == "be brief"
    assert not {t.id for c in copied.values() for t in c.turns} & {"t1", "t2", "t3"}
    # The copies are found by the turn ids they came from.
    assert store.match(["t1"]) == {"nb1": 1, "nb2": 1}

    assert store.fork("nb1", "nb3", only=["t2", "t3"]) == 2
    assert _texts(store, "nb3") == {"main": ["b"], "side": ["c"]}
    # A copy of the copy still points back at the first notebook's turn.
    nb2_t2 = next(t.id for t in copied["main"].turns if t.user.text == "b")
    assert store.fork("nb2", "nb4", only=["t2"]) == 1
    assert store.match(["t2"], notebook="nb4") == {"nb4": 1}
    assert store.fork("nb2", "nb5", only=[nb2_t2]) == 1
    assert store.fork("nb1", "nb6", only=[]) == 0 and _texts(store, "nb6") == {}


def test_a_deleted_store_file_gets_back_its_owners_chats_and_images_only(tmp_path):
    import os

    from ofox_jupyter._history import HistoryStore

    path = tmp_path / "h.sqlite3"
    store = HistoryStore(path)
    store.owner = "nb1"
    store.bind("nb1", path="a.ipynb", kernel="k1")
    store.save_chat("nb1", "side", "be brief")
    store.save_turn("nb1", _turn("t1", text="a", image=_PNG))
    store.save_turn("nb1", _turn("t2", chat="side", text="b"))
    store.save_turn("nb2", _turn("t3", text="c", image=_PNG[:-4] + "AAAA"))
    store.add_usage("nb1", "m", 3, 4, 0.5)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{path}{suffix}"):
            os.remove(f"{path}{suffix}")
    assert store.reopen_if_gone() is True
    assert store.reopen_if_gone() is False
    assert _texts(store, "nb1") == {"main": ["a"], "side": ["b"]}
    assert store.load("nb1")["side"].system == "be brief"
    assert store.load("nb1")["main"].turns[0].user.images[0]["image_url"]["url"] == _PNG
    assert store.usage("nb1") == [("m", 3, 4, 0.5, 1, 0, 0)]
    assert store.notebook_of_kernel("k1") == "nb1"
    assert _texts(store, "nb2") == {}
    assert _image_rows(path) == 1


# --------------------------------------------------------------------------------------------
# _session: the exchange's repr, interruptions, exports, reset and a store that fails
# --------------------------------------------------------------------------------------------


def test_exchange_repr_shows_chat_model_status_and_the_start_of_the_text():
    short = exchange("hello", chat="side", status="partial")
    assert repr(short) == "<ofox Exchange chat='side' model='m' status=partial text='hello'>"
    exact = exchange("x" * 40)
    assert repr(exact) == f"<ofox Exchange chat='main' model='m' status=complete text={'x' * 40!r}>"
    long = exchange("y" * 41)
    assert repr(long) == f"<ofox Exchange chat='main' model='m' status=complete text={'y' * 40!r}…>"


def test_an_interruption_says_whether_anything_was_kept():
    from ofox_jupyter._session import Interrupted

    for nothing in (None, exchange("")):
        err = Interrupted(nothing)
        assert (err.message, err.hint, err.exchange) == (
            "interrupted before the reply began",
            "nothing was recorded",
            nothing,
        )
    partial = exchange("half a sen")
    err = Interrupted(partial)
    assert (err.message, err.hint, err.exchange) == (
        "interrupted",
        "the partial reply was kept",
        partial,
    )
    assert err.one_line() == "interrupted — the partial reply was kept"


def test_markdown_export_of_chats():
    from ofox_jupyter._conversation import Conversation, Turn
    from ofox_jupyter._messages import image_part, user
    from ofox_jupyter._session import render_markdown

    main = Conversation(
        "main",
        "be brief",
        [
            Turn(
                id="t1",
                chat="main",
                user=user(
                    "two pics", [image_part("https://x/a.png"), image_part("https://x/b.png")]
                ),
                replies=(assistant("cats"),),
                model="openai/gpt-4o",
                served_model="openai/gpt-4o-2024",
            ),
            Turn(
                id="t2",
                chat="main",
                user=user("one pic", [image_part("https://x/c.png")]),
                replies=(assistant("a dog"),),
                model="openai/gpt-4o",
                status="interrupted",
            ),
        ],
    )
    side = Conversation(
        "side",
        None,
        [Turn(id="t3", chat="side", user=user("hi"), replies=(assistant("yo"),), model="m")],
    )
    assert render_markdown([main, side]) == "\n".join(
        [
            "# Chat `main`\n",
            "**System:** be brief\n",
            "## 1. You — 2 images\n\ntwo pics\n",
            "## 1. openai/gpt-4o-2024\n\ncats\n",
            "## 2. You — 1 image\n\none pic\n",
            "## 2. openai/gpt-4o (interrupted)\n\na dog\n",
            "# Chat `side`\n",
            "## 1. You\n\nhi\n",
            "## 1. m\n\nyo\n",
        ]
    )


def _session_with_store(tmp_path):
    from ofox_jupyter._history import HistoryStore
    from ofox_jupyter._session import NotebookSession

    store = HistoryStore(tmp_path / "h.sqlite3")
    store.save_chat("nb", "side", None)
    store.save_turn("nb", _turn("t1", text="a"))
    store.save_turn("nb", _turn("t2", text="b"))
    store.save_turn("nb", _turn("t3", chat="side", text="c"))
    store.add_usage("nb", "m", 1, 2, None)

    def no_client():
        raise AssertionError("no request expected")

    return store, NotebookSession(notebook="nb", client_factory=no_client, store=store)


def test_reset_one_chat_or_all_in_memory_and_in_the_store(tmp_path):
    store, session = _session_with_store(tmp_path)
    assert session.reset("nope") == 0
    assert session.reset("side") == 1
    assert sorted(session.chats) == ["main"] and _texts(store, "nb") == {"main": ["a", "b"]}
    assert session.usage_rows() == [("m", 1, 2, None, 1, 0, 0)]
    assert session.reset() == 2
    assert session.chats == {} and _texts(store, "nb") == {} and session.usage_rows() == []
    assert session.notices == [] and session.unsaved == 0


def test_reset_drops_the_writes_the_store_still_owes_for_what_was_cleared(tmp_path, monkeypatch):
    import sqlite3

    store, session = _session_with_store(tmp_path)
    real_clear = store.clear

    def broken(*args, **kwargs):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "clear", broken)
    assert session.reset("side") == 1
    assert session.unsaved == 1  # the clear itself waits for the store
    assert session.notices == [
        f"ofox: cannot save to {store.path} (disk I/O error); this chat is kept in kernel memory "
        "and saved when the store works again"
    ]
    monkeypatch.setattr(store, "clear", real_clear)
    assert session.reset() == 2
    assert session.unsaved == 0 and _texts(store, "nb") == {}


def test_usage_that_cannot_be_read_is_a_notice_not_an_error(tmp_path, monkeypatch):
    import sqlite3

    store, session = _session_with_store(tmp_path)

    def broken(notebook):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "usage", broken)
    assert session.usage_rows() == []
    assert session.notices == [
        f"ofox: cannot read history from {store.path} (disk I/O error); earlier turns are left "
        "out for now"
    ]


def test_export_of_one_chat_or_all(tmp_path):
    store, session = _session_with_store(tmp_path)
    assert session.export(tmp_path / "side.json", "side") == 1
    data = json.loads((tmp_path / "side.json").read_text("utf-8"))
    assert [c["name"] for c in data["chats"]] == ["side"] and data["notebook"] == "nb"
    assert session.export(tmp_path / "all.JSON") == 3
    data = json.loads((tmp_path / "all.JSON").read_text("utf-8"))
    assert sorted(c["name"] for c in data["chats"]) == ["main", "side"]
    assert session.export(tmp_path / "all.markdown") == 3
    assert "# Chat `side`" in (tmp_path / "all.markdown").read_text("utf-8")


def test_images_to_a_model_the_catalog_says_is_text_only_are_refused_before_sending():
    import httpx

    from ofox_jupyter._client import Client
    from ofox_jupyter._exceptions import ImageError
    from ofox_jupyter._session import NotebookSession

    models = [
        {"id": "a/text", "architecture": {"input_modalities": ["text"]}},
        {"id": "a/vision", "architecture": {"input_modalities": ["text", "image"]}},
    ]

    def gateway(request: httpx.Request) -> httpx.Response:
        assert request.url.path.endswith("/models"), "only the catalog may be asked for"
        return httpx.Response(200, json={"object": "list", "data": models})

    session = NotebookSession(
        notebook="nb",
        client_factory=lambda: Client(
            "sk-test-key-0000",
            base_url="http://127.0.0.1:9/v1",
            transport=httpx.MockTransport(gateway),
        ),
    )
    session.check_vision("a/vision")
    session.check_vision("b/unknown")  # not in the catalog: the server decides
    with pytest.raises(ImageError) as info:
        session.check_vision("a/text")
    assert info.value.one_line() == (
        "a/text does not accept images — pick a vision model (%ofox models shows a vision badge)"
    )


def test_a_json_mode_reply_that_is_not_json_keeps_its_text_and_says_where_it_broke():
    import httpx

    from ofox_jupyter._client import Client
    from ofox_jupyter._session import AskOptions, NotebookSession

    body = {
        "id": "c1",
        "object": "chat.completion",
        "model": "a/m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "sure: 42"},
                "finish_reason": "stop",
            }
        ],
    }

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        return httpx.Response(200, json=body)

    session = NotebookSession(
        notebook="nb",
        client_factory=lambda: Client(
            "sk-test-key-0000",
            base_url="http://127.0.0.1:9/v1",
            transport=httpx.MockTransport(gateway),
        ),
    )
    options = AskOptions(model="a/m", stream=False, expect_json=True)
    done = session.ask("answer in JSON", options)
    assert done.text == "sure: 42" and done.value is None
    assert done.error.one_line() == (
        "the reply is not valid JSON (Expecting value, line 1 column 1) — the raw text is kept "
        "in _ofox.text"
    )


def test_an_error_mid_stream_keeps_type_and_code_short_and_without_the_key():
    from ofox_jupyter._exceptions import StreamError
    from ofox_jupyter._streaming import StreamState

    key = Secret("sk-typecodesecret-0123456789")
    state = StreamState("m", secret=key)
    error = {"message": "no", "type": "t" * 70, "code": f"c-{key.reveal()}-" + "d" * 70}
    with pytest.raises(StreamError) as info:
        state.on_event("", json.dumps({"error": error}))
    assert state.done is True  # nothing more is read from a broken stream
    assert info.value.api_type == "t" * 60
    assert info.value.code == ("c-********-" + "d" * 70)[:60]
    plain = StreamState("m", secret=key)
    with pytest.raises(StreamError) as info:
        plain.on_event("", json.dumps({"error": {"message": "x", "type": "quota", "code": "c1"}}))
    assert (info.value.api_type, info.value.code) == ("quota", "c1")
    assert info.value.message == "the API reported an error mid-stream (quota c1): x"


def _tool_reply(*fragments, secret=None):
    from ofox_jupyter._streaming import ChunkAccumulator

    acc = ChunkAccumulator("m")
    events = []
    for fragment in fragments:
        events += acc.feed({"choices": [{"delta": {"tool_calls": [fragment]}}]})
    return events, acc.reply()


def test_tool_call_fragments_without_an_index_build_the_first_call():
    from ofox_jupyter._streaming import ToolCallDelta

    events, done = _tool_reply(
        {"id": "c1", "function": {"arguments": '{"a"'}},
        {"index": 0, "function": {"name": "late", "arguments": ": 1}"}},
        {"function": {"name": "ignored", "arguments": ""}},
    )
    assert done.tool_calls == (ToolCall("c1", "late", '{"a": 1}'),)
    assert events == [
        ToolCallDelta(0, "c1", "", '{"a"'),
        ToolCallDelta(0, None, None, ": 1}"),
        ToolCallDelta(0, None, None, ""),
    ]
    _, named = _tool_reply(
        {"index": 0, "id": "c1", "function": {"name": "first"}},
        {"index": 0, "function": {"name": "second", "arguments": "{}"}},
    )
    assert named.tool_calls == (ToolCall("c1", "first", "{}"),)


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ({"function": "f"}, "tool_calls[].function is text, not an object"),
        ({"id": 5}, "tool_calls[].id is a number, not text"),
        ({"function": {"name": ["f"]}}, "tool_calls[].function.name is a list, not text"),
        ({"function": {"arguments": {"a": 1}}}, "tool_calls[].function.arguments is an object"),
        ({"index": "0"}, "tool_calls[].index is text, not a number"),
    ],
)
def test_a_tool_call_fragment_of_the_wrong_shape_is_named(fragment, message):
    from ofox_jupyter._streaming import MalformedChunk

    with pytest.raises(MalformedChunk) as info:
        _tool_reply(fragment)
    assert str(info.value) == message


def test_at_most_4096_tool_calls_in_one_reply():
    from ofox_jupyter._streaming import ChunkAccumulator, MalformedChunk

    acc = ChunkAccumulator("m")
    for i in range(4096):
        acc.feed({"choices": [{"delta": {"tool_calls": [{"index": i, "id": f"c{i}"}]}}]})
    more = {"index": 5, "function": {"arguments": "{}"}}  # an existing call goes on
    acc.feed({"choices": [{"delta": {"tool_calls": [more]}}]})
    with pytest.raises(MalformedChunk) as info:
        acc.feed({"choices": [{"delta": {"tool_calls": [{"index": 4096, "id": "x"}]}}]})
    assert str(info.value) == "more than 4096 tool calls in one reply"
    assert len(acc.reply().tool_calls) == 4096 and acc.reply().tool_calls[5].arguments == "{}"


def test_a_whole_completion_becomes_a_reply():
    from ofox_jupyter._streaming import reply_from_completion

    body = {
        "id": "cmpl-1",
        "model": "a/served",
        "choices": [
            {
                "message": {
                    "content": [
                        {"type": "text", "text": "a"},
                        {"type": "image_url"},
                        "loose",
                        {"text": 5},
                        {"type": "text", "text": "b"},
                    ],
                    "reasoning": "hmm",
                    "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{}"}}],
                },
                "finish_reason": "tool_calls",
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 4},
    }
    done = reply_from_completion(body, "a/asked")
    assert (done.text, done.model, done.requested_model, done.id) == (
        "ab",
        "a/served",
        "a/asked",
        "cmpl-1",
    )
    assert (done.reasoning, done.finish_reason, done.tool_calls) == (
        "hmm",
        "tool_calls",
        (ToolCall("c1", "f", "{}"),),
    )
    assert done.usage == Usage(3, 4, 7)
    assert done.raw == body and done.complete is True and done.offline is False
    assert done.warnings == ()
    assert reply_from_completion(body, "a/asked", offline=True).offline is True

    odd = {
        "id": 5,
        "model": "",
        "choices": [{"message": {"content": None, "reasoning": {"x": 1}}}],
        "usage": {"prompt_tokens": "n/a"},
    }
    done = reply_from_completion(odd, "a/asked")
    assert (done.text, done.model, done.id, done.reasoning, done.usage) == (
        "",
        "a/asked",
        None,
        "",
        None,
    )
    assert done.warnings == ("usage.prompt_tokens is text, not a token count: usage left out",)
    assert reply_from_completion({"model": 7, "choices": []}, "a/asked").model == "a/asked"
    assert reply_from_completion({"usage": {}}, "m").usage is None


def test_completion_tool_calls_that_are_not_a_list_of_calls_are_refused():
    from ofox_jupyter._streaming import MalformedChunk, reply_from_completion

    for calls in ("f", [1], [{"function": "f"}]):
        with pytest.raises(MalformedChunk) as info:
            reply_from_completion({"choices": [{"message": {"tool_calls": calls}}]}, "m")
        assert str(info.value) == "message.tool_calls is not a list of calls"


def test_a_turns_reasoning_is_kept_with_it():
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import user

    turn = Turn(
        id="t1",
        chat="main",
        user=user("why?"),
        replies=(assistant("because"),),
        reasoning="let me think",
        reasoning_seconds=2.5,
    )
    assert Turn.from_dict(json.loads(json.dumps(turn.to_dict()))) == turn
    data = turn.to_dict() | {"reasoning_seconds": 2}
    assert Turn.from_dict(data).reasoning_seconds == 2.0
    assert Turn.from_dict(data | {"reasoning_seconds": True}).reasoning_seconds is None
    assert Turn.from_dict(data | {"reasoning": 5}).reasoning == ""


def test_the_servers_wait_hint_in_seconds_or_as_a_date():
    import email.utils
    import time

    from ofox_jupyter._request import retry_after_seconds

    assert retry_after_seconds({"retry-after": "0.5"}) == 0.5
    assert retry_after_seconds({"retry-after": "-3"}) == 0.0
    soon = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 27 <= retry_after_seconds({"retry-after": soon}) <= 31
    past = email.utils.formatdate(time.time() - 300, usegmt=True)
    assert retry_after_seconds({"retry-after": past}) == 0.0
    assert retry_after_seconds({"retry-after": "soon"}) is None


def test_a_rerun_cell_sizes_its_window_from_the_turns_before_it_only():
    from ofox_jupyter._conversation import Conversation, estimate_tokens, turn_sizes
    from ofox_jupyter._messages import user

    chat = Conversation("main")
    turns = [_image_turn(f"t{i}", f"c{i}") for i in range(3)]
    for turn in turns:
        chat.record(turn)
    new = user("again")
    slim, extra, _ = turn_sizes(turns[0])
    # Re-running c1 sends only t0, which fits exactly with its image.
    messages, start, omitted = chat.request_messages(
        new, cell_id="c1", budget=estimate_tokens(new) + slim + extra
    )
    assert (start, omitted, len(messages)) == (0, 0, 5)
    assert sum(len(m.images) for m in messages) == 3


def test_a_completion_without_reasoning_has_none():
    from ofox_jupyter._streaming import reply_from_completion

    done = reply_from_completion({"choices": [{"message": {"content": "hi"}}]}, "m")
    assert (done.text, done.reasoning, done.complete) == ("hi", "", True)


def test_token_estimate_is_four_characters_a_token_plus_framing_and_1105_an_image():
    from ofox_jupyter._conversation import estimate_tokens
    from ofox_jupyter._messages import image_part, user

    assert estimate_tokens(user("")) == 4
    assert estimate_tokens(user("a" * 8)) == 6
    assert estimate_tokens(user("a" * 9)) == 7  # a started token counts
    call = assistant(None, [ToolCall("c1", "name", "{}" + "x" * 5)])  # 4 + 7 characters
    assert estimate_tokens(call) == 4 + 3
    two = user("abcd", [image_part("https://x/a.png"), image_part("https://x/b.png")])
    assert estimate_tokens(two) == 4 + 1 + 2 * 1105


def _history_chat():
    from ofox_jupyter._conversation import Conversation, Turn
    from ofox_jupyter._messages import image_part, user

    return Conversation(
        "main",
        "s" * 81,
        [
            Turn(
                id="t1",
                chat="main",
                user=user("one  pic\nplease", [image_part("https://x/a.png")]),
                replies=(assistant("a cat"),),
                model="a/m",
                served_model="a/served",
            ),
            Turn(
                id="t2",
                chat="main",
                user=user("two", [image_part("https://x/b.png"), image_part("https://x/c.png")]),
                replies=(assistant("dogs"),),
                model="a/m",
                status="interrupted",
                reasoning="hmm",
                reasoning_seconds=2.25,
            ),
            Turn(
                id="t3",
                chat="main",
                user=user("q" * 12),
                replies=(assistant("why"),),
                model="a/m",
                reasoning="so",
            ),
        ],
    )


def test_history_at_a_glance():
    from ofox_jupyter._session import render_history

    markdown, plain = render_history(_history_chat(), limit=10)
    head = f"chat main · 3 turns · system: {'s' * 80}… (1 more characters)"
    assert plain == "\n".join(
        [
            head,
            "",
            "1. You (+1 image): one pic pl… (4 more characters)\n   a/served: a cat",
            "2. You (+2 images): two\n   a/m (interrupted) (thought for 2.2 s): dogs",
            "3. You: qqqqqqqqqq… (2 more characters)\n   a/m (thought): why",
        ]
    )
    assert markdown == "\n".join(
        [
            f"**{head}**",
            "",
            "1. **You** (+1 image): one pic pl… (4 more characters)  \n   **a/served**: a cat",
            "2. **You** (+2 images): two  \n   **a/m** (interrupted) (thought for 2.2 s): dogs",
            "3. **You**: qqqqqqqqqq… (2 more characters)  \n   **a/m** (thought): why",
        ]
    )


def test_history_of_one_short_turn_is_not_cut():
    from ofox_jupyter._conversation import Conversation, Turn
    from ofox_jupyter._messages import user

    chat = Conversation(
        "side",
        "s" * 80,
        [Turn(id="t", chat="side", user=user("x" * 240), replies=(assistant("ok"),), model="m")],
    )
    from ofox_jupyter._session import render_history

    _, plain = render_history(chat)
    assert plain == f"chat side · 1 turn · system: {'s' * 80}\n\n1. You: {'x' * 240}\n   m: ok"


def test_markdown_export_shows_the_thinking_collapsed_above_the_reply():
    from ofox_jupyter._render import thinking_block
    from ofox_jupyter._session import render_markdown

    text = render_markdown([_history_chat()])
    assert f"## 2. a/m (interrupted)\n\n{thinking_block('hmm', 2.25)}\n\ndogs\n" in text
    assert f"## 3. a/m\n\n{thinking_block('so', None)}\n\nwhy\n" in text
    assert "## 1. a/served\n\na cat\n" in text


def test_a_store_that_cannot_load_turns_is_a_notice(tmp_path, monkeypatch):
    import sqlite3

    from ofox_jupyter._messages import user

    store, session = _session_with_store(tmp_path)

    def broken(ids):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "load_turns", broken)
    messages, _, _ = session.chats["main"].request_messages(user("next"))
    assert [m.text for m in messages] == ["next"]
    assert session.notices == [
        f"ofox: cannot read history from {store.path} (disk I/O error); earlier turns are left "
        "out for now"
    ]


def test_match_counts_each_turn_once_per_notebook(tmp_path):
    from ofox_jupyter._history import HistoryStore

    store = HistoryStore(tmp_path / "h.sqlite3")
    store.save_turn("nb1", _turn("t1", text="a", cell="c1"))
    store.save_turn("nb1", _turn("t2", text="b", cell="c2"))
    store.save_turn("nb2", _turn("t3", text="c", cell="c1"))
    assert store.match(["t1", "t2"], ["c1", "c2"]) == {"nb1": 2, "nb2": 1}
    assert store.match(["t1"], ["c1"], notebook="nb1") == {"nb1": 1}
    assert store.match([], ["c2"]) == {"nb1": 1}


# The widgets' path: NotebookSession.ask_async with the async client.


def _async_session(handler, clock=None):
    import time

    import httpx

    from ofox_jupyter._client import AsyncClient
    from ofox_jupyter._session import NotebookSession

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        return handler(request)

    def no_sync_client():
        raise AssertionError("the async path must not use the sync client")

    return NotebookSession(
        notebook="nb",
        client_factory=no_sync_client,
        async_client_factory=lambda: AsyncClient(
            "sk-test-key-0000",
            base_url="http://127.0.0.1:9/v1",
            transport=httpx.MockTransport(gateway),
        ),
        clock=clock or time.monotonic,
    )


def _sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


def test_ask_async_without_streaming_sends_the_request_and_tells_the_listener():
    import asyncio

    import httpx

    from ofox_jupyter._session import AskOptions
    from ofox_jupyter._streaming import FinishEvent, TextDelta, UsageEvent

    sent: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "id": "c1",
                "model": "a/m",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "hi"},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
            },
        )

    session = _async_session(handler)
    seen: list = []
    options = AskOptions(model="a/m", stream=False, system="be brief", params={"temperature": 0.5})

    async def run():
        try:
            return await session.ask_async("hello", options, seen.append)
        finally:
            await session.aclose()

    done = asyncio.run(run())
    assert (done.text, done.status, done.first_token_seconds, done.error) == (
        "hi",
        "complete",
        None,
        None,
    )
    assert sent[0]["model"] == "a/m" and sent[0]["temperature"] == 0.5
    assert sent[0]["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert seen == [TextDelta("hi"), FinishEvent("stop"), UsageEvent(Usage(3, 1, 4))]
    assert session.chats["main"].system == "be brief"
    assert [t.text for t in session.chats["main"].turns] == ["hi"]


def test_ask_async_streaming_times_the_first_token_and_the_thinking():
    import asyncio
    import itertools

    import httpx

    from ofox_jupyter._session import AskOptions
    from ofox_jupyter._streaming import ReasoningDelta, TextDelta

    body = (
        _sse(
            {"model": "a/m", "choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]},
            {"choices": [{"index": 0, "delta": {"content": "he"}}]},
            {"choices": [{"index": 0, "delta": {"content": "llo"}, "finish_reason": "stop"}]},
        )
        + b"data: [DONE]\n\n"
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    ticks = itertools.count(100.0, 1.0)  # every reading of the clock is one second later
    session = _async_session(handler, clock=lambda: next(ticks))
    seen: list = []

    async def run():
        try:
            return await session.ask_async("hi", AskOptions(model="a/m"), seen.append)
        finally:
            await session.aclose()

    done = asyncio.run(run())
    assert (done.text, done.status, done.error) == ("hello", "complete", None)
    assert [e for e in seen if isinstance(e, (TextDelta, ReasoningDelta))] == [
        ReasoningDelta("hmm"),
        TextDelta("he"),
        TextDelta("llo"),
    ]
    assert done.first_token_seconds is not None and 0 < done.first_token_seconds < 10
    assert done.reasoning == "hmm" and 0 < done.reasoning_seconds < 10


def test_ask_async_keeps_the_partial_reply_of_a_broken_stream():
    import asyncio

    import httpx

    from ofox_jupyter._exceptions import StreamError
    from ofox_jupyter._session import AskOptions

    body = _sse(
        {"model": "a/m", "choices": [{"index": 0, "delta": {"content": "par"}}]},
        {"error": {"message": "upstream fell over", "type": "server_error"}},
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})

    session = _async_session(handler)

    async def run():
        try:
            return await session.ask_async("hi", AskOptions(model="a/m"))
        finally:
            await session.aclose()

    done = asyncio.run(run())
    assert (done.text, done.status) == ("par", "partial")
    assert isinstance(done.error, StreamError)
    assert (
        done.error.message
        == "the API reported an error mid-stream (server_error): upstream fell over"
    )


@pytest.mark.parametrize(
    ("body", "message", "api_type", "code"),
    [
        (
            b'{"error": {"message": "bad key", "type": "auth", "code": "k1"}}',
            "bad key",
            "auth",
            "k1",
        ),
        (
            b'{"error": {"message": 5, "type": 7, "code": true}}',
            '{"error": {"message": 5, "type": 7, "code": true}}',  # no message: the body itself
            None,
            None,
        ),
        (b'{"error": {"message": "m", "code": 42}}', "m", None, 42),
        (b'{"error": "plain words"}', "plain words", None, None),
        (b'{"error": 5}', '{"error": 5}', None, None),
        (b"", "no error message", None, None),
        (b"<html>502</html>", "no error message", None, None),
        (b"  upstream   timed\nout ", "upstream timed out", None, None),
        (b'["x"]', '["x"]', None, None),
    ],
)
def test_an_error_response_says_what_the_server_said(body, message, api_type, code):
    from ofox_jupyter._request import status_error

    err = status_error(500, {"x-request-id": "r1"}, body)
    assert (err.status, err.api_message, err.type, err.code, err.request_id) == (
        500,
        message,
        api_type,
        code,
        "r1",
    )
    assert err.retry_after is None


def test_a_429_carries_the_wait_hint_of_a_used_up_window():
    from ofox_jupyter._request import retry_after_seconds, status_error

    headers = {"x-ratelimit-reset-requests": "12s", "x-ratelimit-remaining-requests": " 0 "}
    assert status_error(429, headers, b"").retry_after == 12.0
    assert retry_after_seconds({"x-ratelimit-reset-requests": "12s"}) is None
    assert retry_after_seconds({**headers, "x-ratelimit-remaining-requests": "10"}) is None


def test_pinned_turns_and_what_record_returns():
    from ofox_jupyter._conversation import Conversation

    chat = Conversation("main")
    first, second = _turn("t1", cell="c1"), _turn("t2", cell="c2")
    assert chat.record(first) == (0, None)
    assert chat.record(second) == (1, None)
    chat.pin("t1")
    chat.pin("t2")
    assert chat.pinned == (first, second)
    chat.pin("t1", False)
    assert chat.pinned == (second,)
    again = _turn("t3", text="again", cell="c1")
    assert chat.record(again) == (0, first)
    assert chat.ids == ("t3", "t2")


def test_an_error_response_is_cut_to_size_and_odd_codes_are_dropped():
    from ofox_jupyter._request import status_error

    def err(error, headers=None, status=500):
        return status_error(status, headers or {}, json.dumps({"error": error}).encode())

    assert err({"message": "m" * 300}).api_message == "m" * 300
    assert err({"message": "m" * 301}).api_message == "m" * 299 + "…"
    assert err({"message": "x", "type": "t" * 60}).type == "t" * 60
    assert err({"message": "x", "type": "t" * 61}).type == "t" * 59 + "…"
    assert err({"message": "x", "code": "c" * 61}).code == "c" * 59 + "…"
    assert err({"message": "x", "code": 10**9}).code == 10**9
    assert err({"message": "x", "code": -(10**9) - 1}).code is None
    assert err({"message": "x"}, {"retry-after": "3"}, 503).retry_after is None
    assert err({"message": "x"}, {"retry-after": "3"}, 429).retry_after == 3.0
    assert status_error(502, {}, b"bad \xff gateway").api_message == "bad \ufffd gateway"


def test_usage_details_only_when_there_are_any():
    assert Usage(1, 2, 3).to_dict() == {
        "prompt_tokens": 1,
        "completion_tokens": 2,
        "total_tokens": 3,
    }
    assert Usage(5, 6, 11, cached_tokens=2, reasoning_tokens=4).to_dict() == {
        "prompt_tokens": 5,
        "completion_tokens": 6,
        "total_tokens": 11,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 4},
    }


# --------------------------------------------------------------------------------------------
# _conversation: a replaced turn's index sizes; the stub for a turn the store lost
# --------------------------------------------------------------------------------------------


def _sized_turn(turn_id: str, words: int, cell: str, images: int = 0):
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import image_part, user

    parts = [image_part("data:image/png;base64,iVBORw0KGgo=")] * images
    return Turn(
        id=turn_id,
        chat="main",
        user=user("w " * words, parts),
        replies=(assistant("ok"),),
        cell_id=cell,
    )


def _window(chat, budget: int) -> tuple[int, int]:
    """(turns sent, images left out) for one more question with ``budget`` tokens."""
    from ofox_jupyter._messages import user

    messages, _, left_out_images = chat.request_messages(user("next"), budget=budget)
    return sum(1 for m in messages if m.role == "user") - 1, left_out_images


@pytest.mark.parametrize("before, after", [(2_000, 10), (10, 2_000)])
def test_a_replaced_turn_is_sized_again_for_the_window(before, after):
    """Re-running a cell with a longer or shorter question changes what fits the context."""
    from ofox_jupyter._conversation import Conversation, estimate_tokens, turn_sizes
    from ofox_jupyter._messages import user

    chat = Conversation("main")
    chat.record(_sized_turn("a", before, "c1"))
    chat.record(_sized_turn("b", 10, "c2"))
    chat.record(_sized_turn("a2", after, "c1"))  # the same cell again
    fresh = Conversation("main", turns=[_sized_turn("a2", after, "c1"), _sized_turn("b", 10, "c2")])
    total = sum(turn_sizes(t)[0] for t in fresh.turns)
    fixed = estimate_tokens(user("next"))
    # Just enough room for everything: both turns go; one token less, the oldest stays out.
    assert _window(chat, fixed + total) == _window(fresh, fixed + total) == (2, 0)
    assert _window(chat, fixed + total - 1) == _window(fresh, fixed + total - 1) == (1, 0)


@pytest.mark.parametrize("before, after", [(2, 0), (0, 2), (1, 3)])
def test_a_replaced_turns_images_are_counted_again(before, after):
    """Images are left out (oldest first) when only they do not fit; a re-run cell with more or
    fewer images changes that."""
    from ofox_jupyter._conversation import Conversation, estimate_tokens, turn_sizes
    from ofox_jupyter._messages import user

    chat = Conversation("main")
    chat.record(_sized_turn("a", 5, "c1", images=before))
    chat.record(_sized_turn("b", 5, "c2", images=1))
    chat.record(_sized_turn("a2", 5, "c1", images=after))
    fresh = Conversation(
        "main", turns=[_sized_turn("a2", 5, "c1", after), _sized_turn("b", 5, "c2", 1)]
    )
    slim = sum(turn_sizes(t)[0] for t in fresh.turns)
    extra = sum(turn_sizes(t)[1] for t in fresh.turns)
    fixed = estimate_tokens(user("next"))
    for budget in (fixed + slim + extra, fixed + slim + extra - 1, fixed + slim):
        assert _window(chat, budget) == _window(fresh, budget), budget


def test_a_replaced_turn_the_store_lost_comes_back_as_an_empty_stub():
    from ofox_jupyter._conversation import Conversation

    chat = Conversation("main", loader=lambda ids: {})  # the store cannot produce any turn
    chat.add_entry("old", "c1", 10, 0, 0)  # known from the index only
    position, replaced = chat.record(_sized_turn("new", 3, "c1"))
    assert position == 0 and replaced is not None
    assert (replaced.id, replaced.chat, replaced.user.role, replaced.text) == (
        "old",
        "main",
        "user",
        "",
    )
    assert replaced.user.text == "" and replaced.replies == ()


# --------------------------------------------------------------------------------------------
# _session: what a stored turn keeps; the context budget; the store's failures
# --------------------------------------------------------------------------------------------


def _magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def _reopened(ip):
    """The chats as a new kernel finds them: what a fresh reader of the store loads."""
    from ofox_jupyter._history import HistoryStore

    session = _magics(ip).session
    store = HistoryStore(session.store.path)
    try:
        return {name: chat.turns for name, chat in store.load(session.notebook).items()}
    finally:
        store.close()


def test_a_stored_turn_keeps_who_answered_what_it_cost_and_what_it_thought(ip, emu):
    import time as _time

    started = _time.time()
    ip.run_cell(
        "%%ofox -m deepseek/deepseek-v4-pro --max-tokens 400\n"
        "Think first. [emulator-reasoning: 6] [emulator-cached: 3]",
        cell_id="cell-7",
    )
    live = _magics(ip).session.chats["main"].turns[-1]
    turn = _reopened(ip)["main"][-1]
    assert turn.id == live.id and len(turn.id) == 32 and int(turn.id, 16) >= 0  # 128 random bits
    assert (
        turn.model == "deepseek/deepseek-v4-pro" and turn.served_model == "deepseek/deepseek-v4-pro"
    )
    assert turn.cost is not None and turn.cost > 0 and turn.cost == live.cost
    assert turn.finish_reason == "stop" and turn.status == "complete"
    assert started <= turn.created <= _time.time()
    assert turn.reasoning and "alpha" in turn.reasoning
    assert turn.reasoning_seconds is not None and turn.reasoning_seconds >= 0
    assert turn.usage.cached_tokens == 3 and turn.usage.reasoning_tokens >= 6
    assert turn.cell_id == "cell-7"
    rows = {row[0]: row for row in _magics(ip).session.usage_rows()}
    model_row = rows["deepseek/deepseek-v4-pro"]
    assert model_row[5] == 3 and model_row[6] >= 6  # cached and reasoning tokens summed


def _sync_session(handler):
    import httpx

    from ofox_jupyter._client import Client
    from ofox_jupyter._session import NotebookSession

    def gateway(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json={"object": "list", "data": []})
        return handler(request)

    return NotebookSession(
        notebook="nb",
        client_factory=lambda: Client(
            "sk-test-key-0000",
            base_url="http://127.0.0.1:9/v1",
            transport=httpx.MockTransport(gateway),
        ),
    )


def test_a_reply_that_is_empty_is_still_a_turn():
    import httpx

    from ofox_jupyter._session import AskOptions

    def only_done(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, content=b"data: [DONE]\n\n"
        )

    session = _sync_session(only_done)
    exchange = session.ask("Say nothing.", AskOptions(model="m"))
    turns = session.chats["main"].turns
    assert exchange.status == "complete" and exchange.text == ""
    assert len(turns) == 1 and turns[0].text == "" and turns[0].user.text == "Say nothing."


def test_a_broken_stream_keeps_its_partial_text_as_a_turn(ip, emu):
    ip.run_cell("%%ofox\nBreak. [emulator-words: 40] [emulator-fault: disconnect:10]")
    turns = _magics(ip).session.chats["main"].turns
    assert len(turns) == 1 and turns[0].status != "complete" and turns[0].text


def _big_turn_in(ip, words: int) -> None:
    from ofox_jupyter._conversation import Turn
    from ofox_jupyter._messages import user

    session = _magics(ip).session
    session.conversation("main").record(
        Turn(id="big", chat="main", user=user("w " * words), replies=(assistant("ok"),))
    )


def test_the_catalogs_context_length_sets_how_much_history_is_sent(ip, emu):
    # ~200k tokens of history: beyond the 128k assumed for an unknown model, within the
    # 1,048,576 the catalog gives gemini-2.5-flash.
    _big_turn_in(ip, 400_000)
    ip.run_cell("%%ofox -m google/gemini-2.5-flash\nand now?")
    body = [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body
    assert len(body["messages"]) == 3  # the big turn (question and answer) was sent


@pytest.mark.parametrize("max_tokens, sent", [(100, 3), (1000, 1)])
def test_the_reply_s_max_tokens_is_kept_free_of_history(ip, emu, max_tokens, sent):
    _magics(ip).max_context_tokens = 2_000
    _big_turn_in(ip, 3_000)  # ~1,510 tokens: fits 2,000 − 100, not 2,000 − 1,000
    ip.run_cell(f"%%ofox --max-tokens {max_tokens}\nand now?")
    body = [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body
    assert len(body["messages"]) == sent


def test_turns_the_store_refused_stay_in_memory_until_it_takes_them(ip, emu):
    magics = _magics(ip)
    magics.max_context_tokens = 1_200  # the request window holds about one earlier turn
    store = magics.session.store
    store._db.execute("PRAGMA query_only = ON")
    for n in range(3):
        ip.run_cell(f"%%ofox\nquestion {n} " + "w " * 300)
    # The oldest turns fell out of the request window; memory still holds them all.
    assert [t.user.text.split()[1] for t in magics.session.chats["main"].turns] == ["0", "1", "2"]
    store._db.execute("PRAGMA query_only = OFF")


def test_closing_says_how_many_changes_could_not_be_saved(ip, emu, capsys):
    magics = _magics(ip)
    ip.run_cell("%%ofox\nsaved")
    magics.session.store._db.execute("PRAGMA query_only = ON")
    ip.run_cell("%%ofox\nnot saved")
    capsys.readouterr()
    magics._close_session()
    out = capsys.readouterr().out
    assert "could not be saved before closing the history store; they are lost" in out

    ip.run_cell("%%ofox\nsaved again")  # a new session on a writable store
    capsys.readouterr()
    magics._close_session()
    assert "could not be saved" not in capsys.readouterr().out


def test_a_busy_store_tells_why_on_every_write_it_skips(ip, emu, monkeypatch, capsys):
    import sqlite3

    session = _magics(ip).session

    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(session.store, "add_usage", locked)  # the exchange's first write
    capsys.readouterr()
    ip.run_cell("%%ofox\nwhile another kernel holds the lock")
    notices = [ln for ln in capsys.readouterr().out.splitlines() if "cannot save" in ln]
    # The turn's own write is queued without waiting again; the notice names the cause.
    assert notices and all("(database is locked)" in n for n in notices), notices


# --------------------------------------------------------------------------------------------
# _render: terminal tables, costs near a decade, reasoning and token details, JSON replies
# --------------------------------------------------------------------------------------------


def test_a_terminal_table_has_a_header_a_rule_and_aligned_columns():
    from ofox_jupyter._render import text_table

    table = text_table(
        ["model", "tokens", "note"],
        [["a/b", "1,200", "x"], ["long/model-id", "7", ""]],
        right=[1],
    )
    assert table.splitlines() == [
        "model          tokens  note",
        "-------------  ------  ----",
        "a/b             1,200  x",
        "long/model-id       7",
    ]
    with pytest.raises(ValueError):  # a row with a missing cell is a bug of ours, not a table
        text_table(["a", "b"], [["only one"]])


@pytest.mark.parametrize(
    ("cost", "shown"),
    [(0.00999, "$0.010"), (0.000999, "$0.0010"), (0.0000995, "$0.00010"), (0.00994, "$0.0099")],
)
def test_a_cost_that_rounds_up_to_the_next_decade_keeps_two_digits(cost, shown):
    assert format_cost(cost) == shown


def test_token_counts_name_cached_and_reasoning_tokens_only_when_there_are_any():
    from ofox_jupyter._render import token_counts

    assert token_counts(Usage(1200, 80, 1280)) == "1,200 → 80 tokens"
    assert token_counts(Usage(1200, 80, 1280, cached_tokens=1000)) == (
        "1,200 → 80 tokens (1,000 cached)"
    )
    assert token_counts(Usage(10, 80, 90, cached_tokens=2, reasoning_tokens=50)) == (
        "10 → 80 tokens (2 cached, 50 reasoning)"
    )


def test_the_thinking_block_in_each_of_its_states():
    from ofox_jupyter._render import thinking_block

    assert thinking_block("x", 1.25, markdown=False) == "(thought for 1.2 s)"
    assert thinking_block("x", None, markdown=False) == "(thought before answering)"
    assert thinking_block("x", 0.5, markdown=False, live=True) == "(thinking… 0.5 s)"
    assert thinking_block("x", None, markdown=False, live=True) == "(thinking…)"
    block = thinking_block("  costs $5 </details> more  ", 2.0)
    assert block == (
        "<details><summary>thought for 2.0 s</summary>\n\n"
        "costs \\\\$5 &lt;/details> more\n\n</details>"
    )
    assert thinking_block("y", None).startswith("<details><summary>thought before answering<")


def test_a_replys_thinking_is_shown_above_it_in_markdown_and_as_a_line_in_text():
    ex = exchange("It costs $5.", reasoning="pondering $3", reasoning_seconds=1.0)
    assert render_replies(ex).startswith(
        "<details><summary>thought for 1.0 s</summary>\n\npondering \\\\$3\n\n</details>"
    )
    assert render_replies(ex).endswith("It costs \\\\$5.")
    assert render_replies(ex, markdown=False) == "(thought for 1.0 s)\n\nIt costs $5."


def test_a_json_reply_is_shown_pretty_with_its_text_unescaped():
    ex = exchange('{"city":"Zürich"}', value={"city": "Zürich"})
    assert '"city": "Zürich"' in render_replies(ex)


def test_a_tool_call_is_shown_as_it_happens_in_a_terminal(ip, emu, capsys):
    def word_count(text: str) -> int:
        """Count the words."""
        return len(text.split())

    ip.user_ns["word_count"] = word_count
    capsys.readouterr()
    result = ip.run_cell(
        '%%ofox --tools word_count -m openai/gpt-4o\nCount: word_count {"text": "a b c"}'
    )
    assert result.error_in_exec is None
    out = capsys.readouterr().out
    assert 'tool word_count({"text": "a b c"}) ✓ 3' in out


def test_an_error_text_from_the_stream_is_cut_to_300_characters():
    from ofox_jupyter._streaming import StreamState

    for length, shown in ((300, "e" * 300), (301, "e" * 299 + "…")):
        state = StreamState("m")
        with pytest.raises(Exception) as caught:
            state.on_event("", json.dumps({"error": "e" * length}))
        assert shown in str(caught.value) and "e" * (len(shown) + 1) not in str(caught.value)


# --------------------------------------------------------------------------------------------
# Second round: the plain copy of a long reply, the non-streamed path, the async path
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [199, 200, 201, 5_000])
def test_a_long_replys_plain_copy_is_its_first_100_characters(length):
    from ofox_jupyter._render import PLAIN_COPY_LIMIT

    assert PLAIN_COPY_LIMIT == 200

    text = "".join(chr(ord("a") + i % 26) for i in range(length))
    plain = final_bundle(exchange(text), "markdown")["text/plain"]
    body = plain.split("\n\n— ")[0]
    if length <= PLAIN_COPY_LIMIT:
        assert body == text
    else:
        assert body == f"{text[:100]}… ({length - 100:,} more characters in the Markdown)"
    assert final_bundle(exchange(text), "text")["text/plain"].startswith(text)  # --format text


def test_text_format_of_an_empty_reply_is_the_footer_alone():
    assert final_bundle(exchange(""), "text") == {
        "text/plain": "— m · 1.50 s · ⚠ the model sent an empty reply"
    }


def test_a_stored_turn_with_null_replies_comes_back_without_replies():
    from ofox_jupyter._conversation import Turn

    turn = Turn.from_dict(
        {"id": "t", "chat": "main", "user": {"role": "user", "content": "q"}, "replies": None}
    )
    assert turn.replies == () and turn.user.text == "q"


def test_a_non_streamed_reply_sends_the_options_and_tells_the_listener(ip, emu):
    from ofox_jupyter._session import AskOptions
    from ofox_jupyter._streaming import FinishEvent, TextDelta

    events = []
    session = _magics(ip).session
    session.ask(
        "hi",
        AskOptions(model="openai/gpt-4o", stream=False, params={"temperature": 0.3}),
        events.append,
    )
    body = [r.body for r in emu.requests if r.path.endswith("/chat/completions")][-1]
    assert body["temperature"] == 0.3 and body.get("stream") in (None, False)
    assert any(isinstance(e, TextDelta) and "hi" in e.text for e in events)
    assert any(isinstance(e, FinishEvent) for e in events)


def test_an_interrupt_while_streaming_keeps_the_partial_reply_marked(ip, emu):
    """Ctrl-C mid-stream, made deterministic: the listener raises it on the fifth piece."""
    from ofox_jupyter._session import AskOptions, Interrupted
    from ofox_jupyter._streaming import TextDelta

    seen = []

    def listener(event):
        if isinstance(event, TextDelta):
            seen.append(event.text)
            if len(seen) == 5:
                raise KeyboardInterrupt

    session = _magics(ip).session
    with pytest.raises(Interrupted) as stopped:
        session.ask("long [emulator-words: 50]", AskOptions(model="openai/gpt-4o"), listener)
    partial = stopped.value.exchange
    assert partial is not None and partial.status == "interrupted"
    turn = session.chats["main"].turns[-1]
    assert turn.status == "interrupted" and turn.text.startswith("".join(seen[:4]))


def test_a_store_error_without_a_message_is_named_by_its_kind(ip, emu, monkeypatch, capsys):
    session = _magics(ip).session

    def fails(*args, **kwargs):
        raise OSError()

    monkeypatch.setattr(session.store, "save_turn", fails)
    capsys.readouterr()
    ip.run_cell("%%ofox\nhello")
    out = capsys.readouterr().out
    assert f"cannot save to {session.store.path} (OSError)" in out


def test_the_async_path_fetches_the_catalog_once_and_tells_tool_results(ip, emu):
    import asyncio

    from ofox_jupyter._session import AskOptions
    from ofox_jupyter._tools import ToolRegistry, ToolResult

    def word_count(text: str) -> int:
        """Count the words."""
        return len(text.split())

    session = _magics(ip).session
    events = []

    async def both():
        options = AskOptions(model="openai/gpt-4o", tools=ToolRegistry([word_count]))
        await session.ask_async('count: word_count {"text": "a b"}', options, events.append)
        await session.ask_async("again", AskOptions(model="openai/gpt-4o"), events.append)

    asyncio.run(both())
    catalog_fetches = [r for r in emu.requests if r.path.endswith("/models")]
    assert len(catalog_fetches) == 1
    results = [e for e in events if isinstance(e, ToolResult)]
    assert results and results[0].content == "2"


def test_tool_rounds_sum_their_cached_and_reasoning_tokens(ip, emu):
    def word_count(text: str) -> int:
        """Count the words."""
        return len(text.split())

    ip.user_ns["word_count"] = word_count
    ip.run_cell(
        "%%ofox --tools word_count -m openai/gpt-4o\n"
        'count: word_count {"text": "a b"} [emulator-cached: 4] [emulator-reasoning: 3]'
    )
    usage = ip.user_ns["_ofox"].reply.usage
    assert ip.user_ns["_ofox"].requests == 2
    assert usage.cached_tokens == 8 and usage.reasoning_tokens == 6  # two requests, summed


def test_history_at_a_glance_cuts_each_side_at_240_characters():
    from ofox_jupyter._conversation import Conversation, Turn
    from ofox_jupyter._messages import user
    from ofox_jupyter._session import render_history

    chat = Conversation(
        "c", None, [Turn(id="t", chat="c", user=user("x" * 241), replies=(assistant("ok"),))]
    )
    _, plain = render_history(chat)
    assert f"You: {'x' * 240}… (1 more characters)" in plain


def test_every_rounds_text_keeps_its_dollars_in_plain_text():
    ex = exchange("done", replies=(assistant("First $5, then a tool."), assistant("It is $7.")))
    assert render_replies(ex, markdown=False) == "First $5, then a tool.\n\nIt is $7."
    assert render_replies(ex) == "First \\\\$5, then a tool.\n\nIt is \\\\$7."


# --------------------------------------------------------------------------------------------
# Third round: the thinking timer, a retired model, a reset while the store refuses writes
# --------------------------------------------------------------------------------------------


def test_thinking_time_runs_from_the_first_thought_to_the_first_text_or_tool_call():
    from ofox_jupyter._session import _ReasoningTimer
    from ofox_jupyter._streaming import ReasoningDelta, TextDelta, ToolCallDelta

    now = [10.0]
    timer = _ReasoningTimer(lambda: now[0])
    assert timer.seconds() is None  # no thinking at all
    timer.see(TextDelta("a plain reply"))
    assert timer.seconds() is None
    timer.see(ReasoningDelta("hmm"))
    now[0] = 12.5
    timer.see(ReasoningDelta("more"))  # still thinking: the start stays
    assert timer.seconds() == 2.5  # open: up to now
    now[0] = 13.0
    timer.see(TextDelta("answer"))
    now[0] = 20.0
    timer.see(TextDelta("more answer"))
    timer.see(ReasoningDelta("a late thought"))
    assert timer.seconds() == 3.0  # closed at the first text, whatever came after

    tool = _ReasoningTimer(lambda: now[0])
    tool.see(ReasoningDelta("plan"))
    now[0] = 20.25
    tool.see(ToolCallDelta(position=0, id="c", name="f", arguments=""))
    now[0] = 30.0
    assert tool.seconds() == 0.25

    backwards = _ReasoningTimer(lambda: now[0])
    backwards.see(ReasoningDelta("x"))
    now[0] = 29.0  # a clock that went back gives no negative time
    assert backwards.seconds() == 0.0


def test_a_retired_model_is_refused_before_anything_is_sent(ip, emu):
    with pytest.raises(UsageError) as refused:
        ip.run_cell_magic("ofox", "-m openai/gpt-4-turbo", "hello")
    assert str(refused.value) == (
        "openai/gpt-4-turbo is retired (the catalog marks it deprecated)"
        " — pick another model: %ofox models lists the current ones"
    )
    assert not [r for r in emu.requests if r.path.endswith("/chat/completions")]


def test_a_reset_chat_does_not_come_back_when_the_store_works_again(ip, emu):
    magics = _magics(ip)
    store = magics.session.store
    store._db.execute("PRAGMA query_only = ON")
    ip.run_cell("%%ofox --chat gone\nforget me")
    ip.run_cell("%%ofox --chat kept\nkeep me")
    ip.run_line_magic("ofox", "reset --chat gone")
    store._db.execute("PRAGMA query_only = OFF")
    ip.run_cell("%%ofox --chat kept\nand me")  # the store takes the waiting writes now
    chats = _reopened(ip)
    assert "gone" not in chats or chats["gone"] == []
    assert [t.user.text for t in chats["kept"]] == ["keep me", "and me"]
