"""The notebook as context: the last error explained or fixed, a reply's code as a new cell."""

from __future__ import annotations

import json
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from IPython.core.error import UsageError

from ofox_jupyter._context import (
    CELL_BUDGET,
    CodeBlock,
    code_blocks,
    code_for_cell,
    error_report,
)
from ofox_jupyter._exceptions import OfoxError

# -- code out of a reply


def test_code_blocks_are_the_top_level_fences():
    reply = (
        "Try this:\n\n```python\nx = 1\n```\n\n"
        "> ```python\n> quoted = True\n> ```\n\n"  # in a quote: the model quoting, not code to run
        "```\n\n```\n\n"  # empty
        "~~~bash\npip install x\n~~~\n\n"
        "```py\ncut = 'short'"  # a reply cut short: what arrived is still code
    )
    assert code_blocks(reply) == [
        CodeBlock("python", "x = 1"),
        CodeBlock("bash", "pip install x"),
        CodeBlock("py", "cut = 'short'"),
    ]


def test_one_block_goes_in_as_it_is_several_under_comments():
    assert code_for_cell([CodeBlock("python", "x = 1")]) == "x = 1"
    assert code_for_cell([CodeBlock("", "x = 1")]) == "x = 1"
    cell = code_for_cell(
        [CodeBlock("python", "x = 1"), CodeBlock("bash", "pip install x\n\nls"), CodeBlock("", "y")]
    )
    assert cell == (
        "# --- block 1 (python) ---\nx = 1\n\n"
        "# --- block 2 (bash), not Python ---\n# pip install x\n#\n# ls\n\n"
        "# --- block 3 ---\ny"
    )
    compile(cell, "<cell>", "exec")  # still runs as Python


# -- the last error, as a model sees it


def raise_through_a_library(source: str, filename: str) -> BaseException:
    try:
        exec(compile(source, filename, "exec"), {"json": json})
    except Exception as err:  # noqa: BLE001 - the error is the point
        return err
    raise AssertionError("it did not fail")


def test_the_report_keeps_the_users_frames_and_the_call_into_a_library():
    source = "def load(text):\n    return json.loads(text)\n\nload('{bad')\n"
    error = raise_through_a_library(source, "<cell-7>")
    names = {"<cell-7>": "In[7]"}
    report = error_report(error, error.__traceback__, names.get, {"<cell-7>": source}.get)
    assert report.startswith("**json.decoder.JSONDecodeError**: Expecting property name")
    assert "In[7], line 4, in <module>" in report and "load('{bad')" in report
    assert "In[7], line 2, in load" in report
    assert "json/__init__.py" in report  # the user's call into json
    assert "decoder.py" not in report and "… 2 library frames" in report  # its insides: counted
    assert sys.prefix not in report  # no machine paths
    assert f"The cell that failed (In[7]):\n\n```python\n{source.strip()}\n```" in report


def test_the_report_is_bounded():
    source = "x = 1\n" * 2_000 + "1 / 0\n"
    error = raise_through_a_library(source, "<cell-2>")
    report = error_report(error, error.__traceback__, {"<cell-2>": "In[2]"}.get, lambda f: source)
    assert f"(truncated, {len(source.strip()) - CELL_BUDGET:,} more characters)" in report
    assert len(report) < CELL_BUDGET + 1_000
    huge = ValueError("v" * 100_000)
    assert "(truncated, 98,000 more characters)" in error_report(huge, None, str, str)


def test_a_syntax_error_names_its_line():
    try:
        compile("x = (1,\n", "<cell-3>", "exec")
    except SyntaxError as err:
        report = error_report(err, None, {"<cell-3>": "In[3]"}.get, lambda f: "x = (1,\n")
    assert report.startswith("**SyntaxError**") and "At In[3], line 1" in report
    assert "```python\nx = (1,\n```" in report


# -- in IPython


@pytest.fixture
def no_error(monkeypatch):
    for name in ("last_exc", "last_value", "last_type", "last_traceback"):
        monkeypatch.delattr(sys, name, raising=False)


def test_explain_without_an_error_is_one_line(ip, no_error):
    with pytest.raises(UsageError, match="no error yet in this kernel"):
        ip.run_line_magic("ofox", "explain")


def test_explain_sends_the_error_as_a_turn_of_the_chat(ip, no_error, capsys):
    ip.run_cell("def mean(xs):\n    return sum(xs) / len(xs)\n", store_history=True)
    ip.run_cell("mean([])\n", store_history=True)
    capsys.readouterr()
    ip.run_line_magic("ofox", "explain is it the empty list?")
    exchange = ip.user_ns["_ofox"]
    prompt = exchange.turn.user.text
    assert "is it the empty list?" in prompt and "**ZeroDivisionError**: division by zero" in prompt
    assert "line 2, in mean" in prompt and "The cell that failed (In[" in prompt
    assert "is it the empty list?" in capsys.readouterr().out  # streamed like any reply
    assert exchange.chat == "main"


def test_fix_puts_the_answered_code_in_the_next_cell(ip, no_error, capsys):
    ip.rl_next_input = None
    ip.run_cell("import json\njson.loads('{bad')\n", store_history=True)
    ip.run_line_magic("ofox", "fix --chat fixes")
    # The emulator answers with the code it was sent, as a block: that is what goes in.
    assert ip.rl_next_input == "import json\njson.loads('{bad')"
    assert "1 code block (2 lines) put" in capsys.readouterr().out
    assert ip.user_ns["_ofox"].chat == "fixes"


def test_code_out_of_a_cell_and_of_the_last_reply(ip, capsys):
    ip.rl_next_input = None
    ip.run_cell_magic("ofox", "--code -o snippet", "Write this:\n\n```python\nprint('hi')\n```")
    assert ip.user_ns["snippet"] == "print('hi')" == ip.rl_next_input
    ip.rl_next_input = None
    ip.run_line_magic("ofox", "code -o again")
    assert ip.user_ns["again"] == "print('hi')" == ip.rl_next_input
    ip.run_cell_magic("ofox", "--code", "No code here.")
    assert "The reply has no code block: no cell was added." in capsys.readouterr().out


def test_code_without_a_reply_is_one_line(ip):
    ip.user_ns.pop("_ofox", None)
    with pytest.raises(UsageError, match="no reply yet"):
        ip.run_line_magic("ofox", "code")
    with pytest.raises(UsageError, match="unexpected"):
        ip.run_line_magic("ofox", "code now")


# -- values, cells and errors in prompts, within budgets


def test_values_are_described_within_a_budget():
    import numpy as np
    import pandas as pd

    from ofox_jupyter._context import PREVIEW_ROWS, VALUE_BUDGET, describe

    frame = pd.DataFrame({"city": ["Oslo", "Lima|Peru"] * 500, "t": np.arange(1000.0)})
    text = describe(frame)
    assert text.startswith("pandas DataFrame, 1,000 rows × 2 columns\ndtypes: city: ")
    assert "| 1 | Lima\\|Peru | 1.0 |" in text  # a pipe in a cell does not break the table
    assert text.count("\n| ") == PREVIEW_ROWS + 1 and text.endswith(
        "(first 10 of 1,000 rows shown)"
    )
    series = describe(frame["t"])
    assert series.startswith("pandas Series t, 1,000 rows, dtype float64")
    array = describe(np.zeros((300, 400)))
    assert array.startswith("numpy array, shape 300×400, dtype float64:\narray([[0., 0.,")
    assert "..." in array and len(array) < 1_000  # numpy's own summary
    assert describe("x" * 10_000) == "x" * VALUE_BUDGET + "… (truncated, 6,000 more characters)"
    assert "| 0 | 1 | 0.5 |" in describe(pd.DataFrame({"a": [1], "b": [0.5]}))  # ints stay ints
    assert describe(list(range(5))) == "[0, 1, 2, 3, 4]"
    assert len(describe(list(range(100_000)))) < VALUE_BUDGET + 50


def sent_prompt(emu) -> str:
    return [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body["messages"][
        -1
    ]["content"]


def test_history_fields_and_the_last_error_in_a_prompt(ip, emu, no_error):
    ip.run_cell("rows = 41 + 1", store_history=True)
    ip.run_cell("rows * 2", store_history=True)
    ip.run_cell("undefined_name", store_history=True)
    number = ip.execution_count - 2  # the cell "rows * 2"
    ip.run_cell(
        f"%%ofox --vars\nIn {{In[{number}]}} gave {{Out[{number}]}}; then {{Err}}. {{{{Err}}}}",
        store_history=True,
    )
    prompt = sent_prompt(emu)
    assert prompt.startswith("In rows * 2 gave 84; then **NameError**: name 'undefined_name'")
    assert prompt.endswith(". {Err}")
    ip.run_cell("%%capture\nprint('quiet')", store_history=True)
    # The cell as typed, not as IPython translated it (In[-1] is this cell).
    ip.run_cell("%%ofox --vars\nTyped: {In[-2]}", store_history=True)
    assert sent_prompt(emu) == "Typed: %%capture\nprint('quiet')"
    with pytest.raises(UsageError, match=r"\{Out\[999\]\} does not exist"):
        ip.run_cell_magic("ofox", "--vars", "{Out[999]}")


def test_context_sends_the_last_cells(ip, emu):
    ip.run_cell("data = [3, 1, 2]", store_history=True)
    ip.run_cell("sorted(data)", store_history=True)
    ip.run_cell("%%ofox --context 2\nWhat did I do?", store_history=True)
    prompt = sent_prompt(emu)
    first = ip.execution_count - 3
    assert prompt == (
        "The notebook's last 2 cells before this question:\n\n"
        f"In[{first}]:\n```python\ndata = [3, 1, 2]\n```\n\n"
        f"In[{first + 1}]:\n```python\nsorted(data)\n```\n\n"
        f"Out[{first + 1}]:\n```\n[1, 2, 3]\n```\n\n"
        "My question:\n\nWhat did I do?"
    )
    with pytest.raises(UsageError, match="--context takes 1 to 50 cells, not 0"):
        ip.run_cell_magic("ofox", "--context 0", "x")


def test_the_api_key_never_goes_out_in_a_prompt(ip, emu, capsys):
    from conftest import TEST_KEY

    ip.user_ns["leaky"] = f"config: key={TEST_KEY}"
    ip.run_cell_magic("ofox", f"--vars -s 'Key {TEST_KEY}' --chat leak", "Check {leaky}")
    request = [r for r in emu.requests if r.path.endswith("/chat/completions")][-1].body
    assert TEST_KEY not in json.dumps(request)
    assert request["messages"][-1]["content"] == "Check config: key=********"
    shown = capsys.readouterr().out
    assert "⚠ the API key was in the prompt: taken out before sending" in shown
    assert TEST_KEY not in shown
    turn = ip.user_ns["_ofox"].turn
    assert TEST_KEY not in turn.user.text and TEST_KEY not in (
        ip.magics_manager.registry["OfoxMagics"].session.chats["leak"].system or ""
    )


def test_pandas_is_not_imported_by_us():
    import subprocess

    code = (
        "from IPython.testing.globalipapp import start_ipython; ip = start_ipython();"
        "ip.run_line_magic('load_ext', 'ofox_jupyter');"
        "ip.user_ns['n'] = 3;"
        "ip.run_cell_magic('ofox', '--vars --no-history', 'n is {n}');"
        "import sys; print('pandas' in sys.modules)"
    )
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OFOX_")}
    env["OFOX_EMULATOR_DELAY"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip().endswith("False")  # pandas is installed here: we did not import it


# -- tools that stay


def chat_requests(emu) -> list[dict]:
    return [r.body for r in emu.requests if r.path.endswith("/chat/completions")]


def test_tools_added_once_are_offered_in_every_later_cell_of_the_chat(ip, emu, capsys):
    ip.run_cell(
        "def word_count(text: str) -> int:\n"
        '    """Count the words of a text."""\n'
        "    return len(text.split())\n"
    )
    ip.run_line_magic("ofox", "tools add word_count")
    assert "chat main: word_count offered in every later cell" in capsys.readouterr().out
    ip.run_cell_magic("ofox", "", 'Use word_count {"text": "one two three"}')
    first, second = chat_requests(emu)[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["word_count"]
    assert second["messages"][-1] == {
        "role": "tool",
        "tool_call_id": second["messages"][-2]["tool_calls"][0]["id"],
        "content": "3",
    }
    ip.run_cell_magic("ofox", "--chat other", "word_count is not offered here")
    assert "tools" not in chat_requests(emu)[-1]  # another chat: not offered

    ip.run_line_magic("ofox", "tools")
    listing = capsys.readouterr().out
    assert "word_count(text): Count the words of a text." in listing
    ip.run_line_magic("ofox", "tools remove word_count")
    ip.run_cell_magic("ofox", "--chat other2", "plain")
    assert "tools" not in chat_requests(emu)[-1]
    with pytest.raises(UsageError, match="chat main has no tool named 'word_count'"):
        ip.run_line_magic("ofox", "tools remove word_count")
    with pytest.raises(UsageError, match="no function named 'nothing'"):
        ip.run_line_magic("ofox", "tools add nothing")
    with pytest.raises(UsageError, match="usage: %ofox tools"):
        ip.run_line_magic("ofox", "tools drop word_count")


def test_the_tool_decorator_offers_a_function_in_its_chat(ip, emu):
    ip.run_cell(
        "import ofox_jupyter\n"
        '@ofox_jupyter.tool(chat="data")\n'
        "def mean(values: list[float]) -> float:\n"
        '    """The mean of some numbers."""\n'
        "    return sum(values) / len(values)\n"
    )
    ip.run_cell_magic("ofox", "--chat data", 'mean {"values": [1, 2, 6]}')
    assert chat_requests(emu)[-1]["messages"][-1]["content"] == "3.0"
    assert ip.user_ns["mean"]([2, 4]) == 3.0  # still the function it was


def test_a_chat_with_tool_calls_in_its_history_defines_them(ip, emu):
    ip.run_cell("def shout(text: str) -> str:\n    return text.upper()\n")
    ip.run_cell_magic("ofox", "--tools shout --chat loud", 'shout {"text": "hi"}')
    ip.run_cell_magic("ofox", "--chat loud", "And now without tools.")
    later = chat_requests(emu)[-1]
    assert any(m.get("role") == "tool" for m in later["messages"])
    assert [t["function"]["name"] for t in later["tools"]] == ["shout"]
    assert later["tools"][0]["function"]["parameters"] == {"type": "object", "properties": {}}
    assert later["tool_choice"] == "none"  # defined for the history, not to be called


# -- the Python API runs the tools too


def test_client_run_calls_the_tools_and_returns_every_step(emu):
    import asyncio

    from conftest import TEST_KEY

    from ofox_jupyter import AsyncClient, Client

    calls = []

    def add(a: int, b: int) -> int:
        """Add two numbers."""
        calls.append((a, b))
        return a + b

    prompt = 'add {"a": 2, "b": 3}'
    with Client(api_key=TEST_KEY, base_url=emu.base_url) as client:
        run = client.run(prompt, tools=[add], model="openai/gpt-4o")
    assert calls == [(2, 3)]
    assert [r.content for r in run.results] == ["5"] and run.rounds == 1
    assert [m.role for m in run.replies] == ["assistant", "tool", "assistant"]
    assert "add: 5" in run.text and run.status == "complete"
    sent = chat_requests(emu)[-1]
    assert sent["messages"][-1] == {
        "role": "tool",
        "tool_call_id": run.results[0].call.id,
        "content": "5",
    }

    async def run_async():
        async with AsyncClient(api_key=TEST_KEY, base_url=emu.base_url) as client:
            return await client.run([{"role": "user", "content": prompt}], tools=[add])

    assert asyncio.run(run_async()).results[0].content == "5" and len(calls) == 2
    with Client(api_key=TEST_KEY, base_url=emu.base_url) as client:
        with pytest.raises(OfoxError, match="needs at least one tool"):
            client.run("hi", tools=[])


# -- every parameter of the API, from Python and from the magic


def test_the_python_api_takes_every_parameter(emu):
    from conftest import TEST_KEY

    from ofox_jupyter import Client
    from ofox_jupyter._exceptions import RequestValidationError

    with Client(api_key=TEST_KEY, base_url=emu.base_url) as client:
        reply = client.chat("Pick one. [emulator-words: 5]", n=3, user="student-7", seed=42)
        assert [c.text.endswith(f"*Choice {i}.*") for i, c in enumerate(reply.choices, 1)] == [
            False,
            True,
            True,
        ]
        body = chat_requests(emu)[-1]
        assert (body["n"], body["user"], body["seed"]) == (3, "student-7", 42)

        cut = client.chat("one two three charlie four", stop=["charlie"], extra_body={"x_k": 1})
        assert "charlie" not in cut.text and "one two three" in cut.text
        assert chat_requests(emu)[-1]["x_k"] == 1

        with client.stream("hi", stream_options={"include_usage": False}) as stream:
            assert stream.reply.usage is None
        assert chat_requests(emu)[-1]["stream_options"] == {"include_usage": False}

        with pytest.raises(TypeError, match=r"call stream\(\) for a streamed reply"):
            client.chat("hi", stream=True)
        with pytest.raises(RequestValidationError, match="n > 1 is not streamed"):
            client.stream("hi", n=2)
        with pytest.raises(RequestValidationError, match="seed must be an integer"):
            client.chat("hi", seed="7")


def test_stop_and_seed_from_the_magic(ip, emu):
    ip.run_cell_magic("ofox", "--stop charlie --stop zulu --seed 7 -o cut", "alpha bravo charlie")
    body = chat_requests(emu)[-1]
    assert body["stop"] == ["charlie", "zulu"] and body["seed"] == 7
    assert "alpha bravo" in ip.user_ns["cut"] and "charlie" not in ip.user_ns["cut"]


# -- anything a reply or a notebook holds


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="`~ \npy#x=\t>", max_size=120))
def test_code_out_of_any_reply(text):
    blocks = code_blocks(text)
    cell = code_for_cell(blocks) if blocks else ""
    for block in blocks:
        assert block.code.strip()
        for line in block.code.split("\n"):
            assert line in cell or f"# {line}" in cell


values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=30) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=200,
)


@settings(max_examples=200, deadline=None)
@given(values, st.integers(min_value=1, max_value=300))
def test_any_value_is_described_within_its_budget(value, budget):
    from ofox_jupyter._context import describe

    text = describe(value, budget)
    assert len(text) <= budget + len(f"… (truncated, {10**9:,} more characters)")


# -- found in review


def test_explain_skips_our_own_one_line_errors(ip, no_error):
    ip.run_cell("{}['missing']", store_history=True)
    with pytest.raises(UsageError):
        ip.run_cell_magic("ofox", "--vars", "{nobody}")  # a UsageError of ours
    ip.run_cell("pass", store_history=True)  # the next cell: the KeyError is remembered
    ip.run_line_magic("ofox", "explain")
    assert "**KeyError**: 'missing'" in ip.user_ns["_ofox"].turn.user.text


def test_out_counts_back_like_in(ip, emu):
    ip.run_cell("6 * 7", store_history=True)
    ip.run_cell("%%ofox --vars\n{In[-2]} gave {Out[-2]}", store_history=True)
    assert sent_prompt(emu) == "6 * 7 gave 42"


def test_a_key_is_taken_out_before_a_value_is_cut(ip, emu):
    from conftest import TEST_KEY

    from ofox_jupyter._context import VALUE_BUDGET

    ip.user_ns["leaky"] = "x" * (VALUE_BUDGET - 10) + TEST_KEY
    ip.run_cell_magic("ofox", "--vars --chat leak2", "{leaky}")
    assert TEST_KEY[:8] not in json.dumps(chat_requests(emu)[-1])


def test_an_exception_whose_message_fails_is_still_reported():
    class Odd(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    report = error_report(Odd(), None, lambda f: None, lambda f: None)
    assert report.startswith("**") and "could not be read: RuntimeError" in report


def test_choices_come_in_the_order_of_their_index():
    from ofox_jupyter._streaming import reply_from_completion

    body = {
        "choices": [
            {"index": 1, "message": {"role": "assistant", "content": "second"}},
            {"index": 0, "message": {"role": "assistant", "content": "first"}},
        ]
    }
    assert [c.text for c in reply_from_completion(body, "m").choices] == ["first", "second"]


def test_run_passes_ctrl_c_on(emu):
    from conftest import TEST_KEY

    from ofox_jupyter import Client

    def stop(a: int) -> int:
        raise KeyboardInterrupt

    with Client(api_key=TEST_KEY, base_url=emu.base_url) as client:
        with pytest.raises(KeyboardInterrupt):
            client.run('stop {"a": 1}', tools=[stop])
