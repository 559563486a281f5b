"""Function calling, JSON mode, failover, models and cost — unit level and through the magic."""

from __future__ import annotations

import asyncio
import enum
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, Union

import pytest
from conftest import TEST_KEY, restart
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.error import UsageError

from ofox_jupyter import Client, ToolCall
from ofox_jupyter._render import format_cost
from ofox_jupyter._tools import MAX_RESULT_CHARS, Tool, ToolRegistry, schema_for, serialise, tool
from ofox_jupyter.emulator import catalog


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@pytest.mark.parametrize(
    "annotation, schema",
    [
        (str, {"type": "string"}),
        (int, {"type": "integer"}),
        (float, {"type": "number"}),
        (bool, {"type": "boolean"}),
        (list, {"type": "array"}),
        (list[int], {"type": "array", "items": {"type": "integer"}}),
        (tuple[str, ...], {"type": "array", "items": {"type": "string"}}),
        (dict, {"type": "object"}),
        (dict[str, float], {"type": "object", "additionalProperties": {"type": "number"}}),
        (Literal["a", "b"], {"type": "string", "enum": ["a", "b"]}),
        (Literal[1, 2], {"type": "integer", "enum": [1, 2]}),
        (Colour, {"type": "string", "enum": ["red", "blue"]}),
        (Optional[int], {"anyOf": [{"type": "integer"}, {"type": "null"}]}),  # noqa: UP045
        (int | None, {"anyOf": [{"type": "integer"}, {"type": "null"}]}),
        (Union[int, str], {"anyOf": [{"type": "integer"}, {"type": "string"}]}),  # noqa: UP007
        (Annotated[str, "a city"], {"type": "string", "description": "a city"}),
        (Any, {}),
    ],
)
def test_schema_for_every_supported_annotation(annotation, schema):
    assert schema_for(annotation) == schema


def test_schema_from_a_whole_function():
    def forecast(
        city: str,
        days: int = 3,
        unit: Literal["C", "F"] = "C",
        colour: Colour = Colour.RED,
        note: str | None = None,
    ) -> dict:
        """Weather forecast for a city.

        More detail that is not the description.

        Args:
            city: The city, e.g. Paris.
            days: How many days ahead.
        """

    spec = Tool.from_function(forecast)
    assert spec.name == "forecast" and spec.description == "Weather forecast for a city."
    props = spec.parameters["properties"]
    assert spec.parameters["required"] == ["city"]
    assert props["city"] == {"type": "string", "description": "The city, e.g. Paris."}
    assert props["days"] == {"type": "integer", "description": "How many days ahead.", "default": 3}
    assert props["unit"] == {"type": "string", "enum": ["C", "F"], "default": "C"}
    assert props["colour"] == {"type": "string", "enum": ["red", "blue"], "default": "red"}
    assert props["note"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None}


def test_tool_decorator_and_sphinx_params():
    @tool(name="lookup", params={"key": "What to look up"})
    def find(key: str, limit: int = 5) -> list:
        """Find things.

        :param limit: at most this many
        """

    spec = Tool.from_function(find)
    assert spec.name == "lookup"
    assert spec.parameters["properties"]["key"]["description"] == "What to look up"
    assert spec.parameters["properties"]["limit"]["description"] == "at most this many"
    assert find("x") is None  # still an ordinary function


def test_refusals():
    from ofox_jupyter import ToolError

    with pytest.raises(ToolError, match="lambda"):
        Tool.from_function(lambda x: x)

    def positional(a, /, b):  # noqa: ANN001
        """."""

    with pytest.raises(ToolError, match="positional-only"):
        Tool.from_function(positional)

    @tool(name="same")
    def one() -> None:
        """One."""

    @tool(name="same")
    def two() -> None:
        """Two."""

    with pytest.raises(ToolError, match="two tools are named 'same'"):
        ToolRegistry([one, two])


def call(registry: ToolRegistry, name: str, arguments: str) -> Any:
    return registry.call(ToolCall(id="c1", name=name, arguments=arguments))


def test_registry_runs_only_what_was_offered_and_reports_every_failure():
    def add(a: int, b: int = 1) -> int:
        """Add."""
        return a + b

    def fails() -> None:
        """Fails."""
        raise RuntimeError("broken tool")

    def colour(c: Colour) -> str:
        """Colour name."""
        return c.name

    registry = ToolRegistry([add, fails, colour])
    ok = call(registry, "add", '{"a": 2, "b": 3}')
    assert ok.ok and ok.content == "5" and ok.value == 5
    assert call(registry, "colour", '{"c": "blue"}').content == '"BLUE"'
    for name, arguments, fragment in [
        ("add", '{"a": 2,', "not valid JSON"),
        ("add", "[1, 2]", "must be a JSON object"),
        ("add", '{"b": 2}', "missing a required argument: 'a'"),
        ("add", '{"a": 1, "z": 2}', "unexpected keyword argument 'z'"),
        ("colour", '{"c": "green"}', "'green' is not a valid c"),
        ("nope", "{}", "no tool named 'nope' (offered: add, fails, colour)"),
        ("fails", "{}", "RuntimeError: broken tool"),
    ]:
        result = call(registry, name, arguments)
        assert not result.ok and fragment in result.error, (name, arguments, result)
        assert json.loads(result.content) == {"error": result.error}


def test_coroutine_tools_are_awaited_even_inside_a_running_loop():
    async def slow_double(x: int) -> int:
        """Double, slowly."""
        await asyncio.sleep(0.01)
        return 2 * x

    registry = ToolRegistry([slow_double])
    assert call(registry, "slow_double", '{"x": 4}').value == 8

    async def inside_a_loop() -> int:
        return call(registry, "slow_double", '{"x": 5}').value

    assert asyncio.run(inside_a_loop()) == 10


def test_results_are_json_with_fallbacks_and_a_size_cap():
    @dataclass
    class Point:
        x: int
        y: int

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque thing>"

    class Friendly:
        def _repr_llm_(self) -> str:
            return "a friendly summary"

    assert json.loads(serialise(Point(1, 2))) == {"x": 1, "y": 2}
    assert json.loads(serialise({"o": Opaque()})) == {"o": "<opaque thing>"}
    assert json.loads(serialise(Friendly())) == "a friendly summary"
    assert json.loads(serialise({1, 2})) in ([1, 2], [2, 1])
    huge = serialise("x" * (MAX_RESULT_CHARS * 2))
    assert len(huge) <= MAX_RESULT_CHARS and json.loads(huge)["truncated"] is True


# -- through the client and the magic, against the emulator


def test_python_functions_as_tools_in_the_client(emu):
    def get_weather(city: str) -> str:
        """Weather for a city."""
        return "sunny"

    with Client(TEST_KEY, base_url=emu.base_url) as client:
        reply = client.chat("call get_weather please", tools=[get_weather])
    assert reply.tool_calls[0].name == "get_weather"
    sent = emu.requests[-1].body["tools"][0]["function"]
    assert sent["name"] == "get_weather" and sent["parameters"]["required"] == ["city"]


@pytest.fixture
def functions(ip):
    ip.run_cell(
        "def mean(numbers: list[float]) -> float:\n"
        "    '''Arithmetic mean.'''\n"
        "    return sum(numbers) / len(numbers)\n"
        "def largest(numbers: list[float]) -> float:\n"
        "    '''The largest number.'''\n"
        "    return max(numbers)\n"
        "def explode(x: int) -> int:\n"
        "    '''Always fails.'''\n"
        "    raise ValueError('no luck')\n"
    )
    yield
    for name in ("mean", "largest", "explode"):
        ip.user_ns.pop(name, None)


def chat_bodies(emu) -> list[dict]:
    return [r.body for r in emu.requests if r.path.endswith("/chat/completions")]


def magics(ip):
    return ip.magics_manager.registry["OfoxMagics"]


def test_two_round_tool_loop_with_parallel_calls(ip, emu, functions):
    ip.run_cell_magic(
        "ofox",
        "--tools mean,largest",
        'Use mean {"numbers": [1, 2, 3]} and largest {"numbers": [1, 2, 3]}',
    )
    first, second = chat_bodies(emu)[-2:]
    assert [t["function"]["name"] for t in first["tools"]] == ["mean", "largest"]
    tool_messages = [m for m in second["messages"] if m["role"] == "tool"]
    assert [json.loads(m["content"]) for m in tool_messages] == [2.0, 3]
    calls = second["messages"][-3]["tool_calls"]
    assert [c["id"] for c in calls] == [m["tool_call_id"] for m in tool_messages]
    exchange = ip.user_ns["_ofox"]
    assert exchange.tool_rounds == 1 and [r.ok for r in exchange.tool_results] == [True, True]
    assert "- mean: 2.0" in exchange.text and "- largest: 3" in exchange.text
    turn = exchange.turn
    assert [m.role for m in turn.replies] == ["assistant", "tool", "tool", "assistant"]


def test_upstream_reusing_index_zero_still_gives_two_calls(ip, emu, functions):
    ip.run_cell_magic("ofox", "--tools mean,largest", "mean and largest [emulator-index-zero]")
    assert [r.call.name for r in ip.user_ns["_ofox"].tool_results] == ["mean", "largest"]


def test_failing_tool_and_bad_arguments_go_back_to_the_model(ip, emu, functions):
    ip.run_cell_magic("ofox", "--tools explode", 'explode {"x": 1}')
    result = ip.user_ns["_ofox"].tool_results[0]
    assert not result.ok and result.error == "ValueError: no luck"
    assert '"error": "ValueError: no luck"' in ip.user_ns["_ofox"].text
    ip.run_cell_magic("ofox", "--tools mean", "mean please [emulator-bad-args]")
    result = ip.user_ns["_ofox"].tool_results[0]
    assert not result.ok and "not valid JSON" in result.error
    tool_message = [m for m in chat_bodies(emu)[-1]["messages"] if m["role"] == "tool"][-1]
    assert "not valid JSON" in tool_message["content"]


def test_round_limit(ip, emu, functions, capsys):
    magics(ip).max_tool_rounds = 2
    ip.run_cell_magic("ofox", "--tools mean", 'mean {"numbers": [1]} [emulator-tool-loop]')
    exchange = ip.user_ns["_ofox"]
    assert exchange.round_limit_hit and exchange.tool_rounds == 2
    assert len(chat_bodies(emu)) >= 3
    assert "stopped after 2 tool rounds" in capsys.readouterr().out
    # The history stays valid for the API: no tool calls left without results.
    assert not exchange.turn.replies[-1].tool_calls


def test_tool_choice_is_forced_once(ip, emu, functions):
    ip.run_cell_magic("ofox", "--tools mean,largest --tool-choice largest", "anything")
    first, second = chat_bodies(emu)[-2:]
    assert first["tool_choice"] == {"type": "function", "function": {"name": "largest"}}
    assert second["tool_choice"] == "auto"


def test_tool_messages_survive_a_restart(ip, emu, functions):
    ip.run_cell_magic("ofox", "--tools mean", 'mean {"numbers": [4, 6]}')
    restart(ip)
    ip.run_cell_magic("ofox", "", "and now?")
    roles = [m["role"] for m in chat_bodies(emu)[-1]["messages"]]
    assert roles == ["user", "assistant", "tool", "assistant", "user"]


@pytest.mark.parametrize(
    "line, fragment",
    [
        ("--tools nothing", "no function named 'nothing'"),
        ("--tools answer_is", "'answer_is' is a int, not a function"),
        ("--tool-choice auto", "--tool-choice needs --tools"),
        ("--tools mean --tool-choice largest", "is not auto, none, required or one of the --tools"),
        ("--json --schema s", "not both"),
        ("--schema missing_schema", "expected a JSON-schema dict, found nothing"),
    ],
)
def test_tool_and_json_mistakes_are_one_line(ip, functions, line, fragment):
    ip.user_ns["answer_is"] = 42
    with pytest.raises(UsageError, match=fragment):
        ip.run_cell_magic("ofox", line, "go")


def test_json_mode_and_schema_values_go_to_out(ip, emu):
    ip.run_cell_magic("ofox", "--json -o data", "Give me a summary as JSON")
    assert emu.requests[-1].body["response_format"] == {"type": "json_object"}
    assert ip.user_ns["data"]["reply"] == "Give me a summary as JSON"
    ip.user_ns["person"] = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    ip.run_cell_magic("ofox", "--schema person -o who", "Ada Lovelace, 36")
    sent = emu.requests[-1].body["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"]["required"] == [
        "name",
        "age",
    ]
    assert ip.user_ns["who"] == {"name": "example", "age": 1}
    assert ip.user_ns["_ofox"].value == ip.user_ns["who"]
    assert "(Reply in JSON.)" in emu.requests[-1].body["messages"][-1]["content"]


def test_invalid_json_is_a_clear_error_that_keeps_the_text(ip):
    with pytest.raises(UsageError, match="the reply is not valid JSON"):
        ip.run_cell_magic("ofox", "--json --max-tokens 3 -o data", "json please")
    exchange = ip.user_ns["_ofox"]
    assert exchange.text.startswith("{") and exchange.value is None
    assert exchange.turn is not None and exchange.turn.text == exchange.text


def test_fallback_names_the_model_that_answered(ip, emu, capsys):
    ip.run_cell_magic(
        "ofox", "-m openai/gpt-4-turbo --fallback openai/gpt-4o --routing latency", "hello"
    )
    assert "answered by openai/gpt-4o (fallback from openai/gpt-4-turbo)" in capsys.readouterr().out
    assert emu.requests[-1].body["provider"] == {
        "routing": "latency",
        "fallback": ["openai/gpt-4o"],
    }


def test_models_badges(ip):
    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        ip.run_line_magic("ofox", "models")
        ip.run_line_magic("ofox", "models --all")
    finally:
        ip.display_pub = pub
    table, everything = (o["data"]["text/markdown"] for o in capture.outputs)
    rows = {line.split("|")[1].strip(" `"): line for line in table.splitlines()[2:]}
    assert "vision tools json" in rows["openai/gpt-4o"]
    assert (
        "vision" not in rows["deepseek/deepseek-v3.2"]
        and "tools json" in rows["deepseek/deepseek-v3.2"]
    )
    assert "| 128,000 | 2.5 | 10 |" in rows["openai/gpt-4o"]
    assert "openai/text-embedding-3-small" not in rows and "text-embedding" in everything
    assert "retired" in rows["openai/gpt-4-turbo"]


def test_cost_is_usage_times_catalog_prices_summed_over_tool_rounds(ip, emu, functions, capsys):
    prices = {m["id"]: m["pricing"] for m in catalog()}
    ip.run_cell_magic("ofox", "-m openai/gpt-4o --tools mean", 'mean {"numbers": [1, 3]}')
    exchange = ip.user_ns["_ofox"]
    usages = [r.body for r in emu.requests if r.path.endswith("/chat/completions")]
    assert len(usages) >= 2
    usage = exchange.reply.usage
    p = prices["openai/gpt-4o"]
    expected = usage.prompt_tokens * float(p["prompt"]) + usage.completion_tokens * float(
        p["completion"]
    )
    assert exchange.cost == pytest.approx(expected)
    assert format_cost(expected) in capsys.readouterr().out
    assert exchange.tool_rounds == 1  # the usage above is both requests', summed


def test_tool_blocks_in_the_rich_output(ip, functions):
    magics(ip).display_mode = "rich"
    pub = ip.display_pub
    ip.display_pub = capture = CapturingDisplayPublisher()
    try:
        ip.run_cell_magic("ofox", "--tools mean", 'mean {"numbers": [2, 4]}')
    finally:
        ip.display_pub = pub
    final = capture.outputs[-1]["data"]["text/markdown"]
    assert '<details><summary>tool mean({"numbers": [2, 4]}) ✓</summary>' in final
    assert "result:\n\n```\n3.0\n```" in final
    live = [o["data"].get("text/markdown", "") for o in capture.outputs if o["update"]]
    assert any("tool mean" in text for text in live), "the call was shown while it ran"
