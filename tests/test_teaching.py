"""Teaching offline: the emulator's word model makes temperature, top_p, seed and the penalties
behave as they do on a real model."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ofox_jupyter.emulator._sampling import sampled_text, word_model

PROMPT = "Explain what a data frame is."

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["method", "path", "request", "status", "headers", "chunks", "x"]),
            inner,
            max_size=7,
        )
    ),
    max_leaves=20,
)


def draws(temperature: float, seeds: range = range(12), **extra: float) -> list[str]:
    return [
        sampled_text(PROMPT, {"temperature": temperature, "seed": seed, **extra}, 40)
        for seed in seeds
    ]


def test_temperature_zero_is_deterministic_and_higher_varies_more():
    variety = {t: len(set(draws(t))) for t in (0, 0.3, 0.8, 1.5)}
    assert variety[0] == 1  # the best word every time, whatever the seed
    assert variety[0] < variety[0.3] <= variety[0.8] <= variety[1.5] == 12, variety
    assert draws(1.5, range(3)) == draws(1.5, range(3))  # a seed repeats its draw


def test_top_p_keeps_only_the_likeliest_words():
    assert set(draws(1.5, top_p=1e-9)) == set(draws(0))  # only the best word survives
    narrow = len(set(draws(1.5, top_p=0.5)))
    assert narrow < len(set(draws(1.5))), "a smaller top_p should leave fewer ways to go"


def repeats(texts: list[str]) -> int:
    """Word pairs that come back within a text."""
    total = 0
    for text in texts:
        words = text.lower().split()
        pairs = list(zip(words, words[1:], strict=False))
        total += len(pairs) - len(set(pairs))
    return total


def test_penalties_lower_repetition():
    plain = repeats(draws(0.7, range(30)))
    assert repeats(draws(0.7, range(30), frequency_penalty=2.0)) < plain
    assert repeats(draws(0.7, range(30), presence_penalty=2.0)) < plain


def test_the_model_is_built_from_the_shipped_text():
    model = word_model()
    assert len(model.unigrams) > 250 and ("a", "model") in model.trigrams


# -- through the emulator and the magic


def chat(emu, **body) -> dict:
    from conftest import TEST_KEY

    request = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": PROMPT}]}
    response = httpx.post(
        f"{emu.base_url}/chat/completions",
        json={**request, **body},
        headers={"Authorization": f"Bearer {TEST_KEY}"},
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_the_emulator_samples_when_asked(emu):
    plain = chat(emu)["choices"][0]["message"]["content"]
    cold = [chat(emu, temperature=0, seed=s)["choices"][0]["message"]["content"] for s in (1, 2)]
    hot = [chat(emu, temperature=1.5, seed=s)["choices"][0]["message"]["content"] for s in (1, 2)]
    assert cold[0] == cold[1] and hot[0] != hot[1]
    assert plain.startswith(cold[0].split("\n\n")[0])  # header and restated prompt stay
    assert len(cold[0]) > len(plain)  # plus the sampled continuation
    # Without a seed, the same request gets the same draw (lessons re-run the same way).
    same = [chat(emu, temperature=1.2)["choices"][0]["message"]["content"] for _ in range(2)]
    assert same[0] == same[1]
    cut = chat(emu, temperature=1.0, seed=3, max_tokens=12)["choices"][0]
    assert cut["finish_reason"] == "length"


def test_compare_shows_temperature_offline(ip, emu, capsys):
    line = 'compare "Explain what a data frame is." -t 0,1.5 --chat lesson'
    ip.run_line_magic("ofox", line)
    cold, hot = ip.user_ns["_ofox_compare"].values()
    assert cold != hot  # a column per temperature, and they differ
    ip.run_line_magic("ofox", line)  # run again: the same columns (the draw follows the request)
    assert list(ip.user_ns["_ofox_compare"].values()) == [cold, hot]


@pytest.mark.parametrize("seed", [1, 2])
def test_seed_from_the_magic_repeats_the_draw(ip, emu, seed):
    ip.run_cell_magic("ofox", f"-t 1.3 --seed {seed} --no-history -o first", PROMPT)
    ip.run_cell_magic("ofox", f"-t 1.3 --seed {seed} --no-history -o second", PROMPT)
    assert ip.user_ns["first"] == ip.user_ns["second"]


# -- a classroom budget


def test_a_budget_refuses_what_could_exceed_it(ip, emu, capsys, monkeypatch):
    from IPython.core.error import UsageError

    ip.run_line_magic("config", "OfoxMagics.max_cost = 0.0005")
    # gpt-4o-mini: $0.60 per million reply tokens; with no --max-tokens, 1,024 are assumed.
    with pytest.raises(
        UsageError, match=r"could cost up to \$0\.0006\d+, and the budget has \$0\.0005 of"
    ):
        ip.run_cell_magic("ofox", "--chat budget", "Hello")
    ip.run_cell_magic("ofox", "--chat budget --max-tokens 100", "Hello")  # ≈ $0.00006: sent
    budget = ip.magics_manager.registry["OfoxMagics"].session.budget
    assert 0 < budget.spent < 0.0001 and budget.left == pytest.approx(0.0005 - budget.spent)
    capsys.readouterr()
    ip.run_line_magic("ofox", "usage")
    assert "Budget of this kernel session: $0.0000" in capsys.readouterr().out
    with pytest.raises(UsageError, match="no price in the catalog"):
        ip.run_cell_magic("ofox", "--chat budget -m someone/unpriced-model --max-tokens 5", "Hi")
    assert len([r for r in emu.requests if r.path.endswith("/chat/completions")]) == 1
    ip.run_line_magic("config", "OfoxMagics.max_cost = 0.0")
    ip.run_cell_magic("ofox", "--chat budget", "Hello")  # no cap: sent


def test_the_budget_can_come_from_the_environment(monkeypatch):
    from ofox_jupyter._budget import cost_cap

    monkeypatch.setenv("OFOX_MAX_COST", "0.5")
    assert cost_cap(0) == 0.5 and cost_cap(2.0) == 2.0
    for bad in ("nope", "-1", "inf", "nan"):
        monkeypatch.setenv("OFOX_MAX_COST", bad)
        assert cost_cap(0) == 0.0


# -- record once, replay anywhere


def test_a_lesson_recorded_replays_without_the_network(ip, emu, tmp_path, capsys):
    from conftest import TEST_KEY
    from IPython.core.error import UsageError

    tape = tmp_path / "lesson.jsonl"
    ip.run_line_magic("ofox", f"record {tape}")
    ip.run_cell_magic("ofox", "--chat lesson -o first", "Say hello.")
    ip.run_cell_magic("ofox", "--chat lesson -t 1.2 -o second", "Now sample something.")
    ip.run_line_magic("ofox", "record stop")
    recorded = tape.read_text()
    assert TEST_KEY not in recorded and recorded.count("\n") >= 2
    first, second = ip.user_ns["first"], ip.user_ns["second"]

    sent = len(emu.requests)
    ip.run_line_magic("ofox", "reset --chat lesson")
    ip.run_line_magic("ofox", f"replay {tape} --fast")
    capsys.readouterr()
    ip.run_cell_magic("ofox", "--chat lesson -o again", "Say hello.")
    ip.run_cell_magic("ofox", "--chat lesson -t 1.2 -o again2", "Now sample something.")
    assert (ip.user_ns["again"], ip.user_ns["again2"]) == (first, second)
    assert f"replayed from {tape.name}" in capsys.readouterr().out
    assert len(emu.requests) == sent  # nothing reached the emulator

    with pytest.raises(UsageError, match="not in the recording lesson.jsonl"):
        ip.run_cell_magic("ofox", "--chat lesson", "An edited cell.")
    ip.run_line_magic("ofox", f"replay {tape} --fast --fallback-emulator")
    ip.run_cell_magic("ofox", "--chat lesson2 -o fell", "An edited cell.")
    # Answered by the built-in emulator (not this test's, which saw nothing).
    assert "An edited cell." in ip.user_ns["fell"] and len(emu.requests) == sent
    ip.run_line_magic("ofox", "replay stop")
    with pytest.raises(UsageError, match="cannot read"):
        ip.run_line_magic("ofox", f"replay {tmp_path / 'missing.jsonl'}")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), st.builds(json.dumps, json_values)), max_size=5))
def test_any_recording_file_is_read_or_refused_in_one_line(tmp_path_factory, lines):
    from ofox_jupyter._recording import ReplayTransport

    path = tmp_path_factory.mktemp("tape") / "lesson.jsonl"
    path.write_text("\n".join(lines), encoding="utf-8", errors="surrogatepass")
    try:
        replay = ReplayTransport(path, fast=True)
    except ValueError as err:
        assert str(err).startswith("lesson.jsonl, line ") and "\n" not in str(err)
        return
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions", json={"x": 1})
    response = replay.handle_request(request)
    response.read()  # a recorded answer, or the "not in the recording" one
    assert 100 <= response.status_code <= 599


def test_recordings_keep_any_text_and_refuse_what_cannot_be_replayed(tmp_path):
    from ofox_jupyter._recording import Recording, RecordingFile

    tape = tmp_path / "t.jsonl"
    entry = {
        "method": "POST",
        "path": "/chat/completions",
        "request": {"q": "日本"},
        "status": 200,
        "headers": {"content-type": "text/event-stream"},
        "chunks": [[0.0, "data: \xe6\x97"], [0.01, "\udce6 half a character\n\n"]],
    }
    RecordingFile(tape).write(entry)  # a piece cut inside a character is still written
    assert (
        Recording(tape).find(
            httpx.Request("POST", "http://x/v1/chat/completions", json={"q": "日本"})
        )
        == entry
    )
    for bad in (
        {**entry, "headers": {"content-type": "tëxt"}},
        {**entry, "chunks": [[1e308, "x"]]},
        {**entry, "chunks": [[0.5, "x"], [0.1, "y"]]},
        {**entry, "chunks": [[0.0, "\ud800"]]},
    ):
        tape.write_text(json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=r"^t\.jsonl, line 1: not a recorded exchange$"):
            Recording(tape)
