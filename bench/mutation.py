"""Mutation testing of the core modules with mutmut 3 (not part of CI).

    .venv/bin/python bench/mutation.py                # full run, ~see the report at the end
    .venv/bin/python bench/mutation.py --module _render   # only one module (repeatable)
    .venv/bin/python bench/mutation.py --report-only  # re-print the last run's scores
    .venv/bin/python bench/mutation.py --rerun-survivors  # survivors again, with new tests

The repository is copied to a scratch directory (``--workdir``, default
``$TMPDIR/ofox-mutation``), never touched in place: mutmut 3 then copies that copy into its own
``mutants/`` folder, rewrites the seven core modules with trampolines, and runs, for every mutant,
only the tests that called the mutated function (with ``-x`` and a per-test timeout). The fast,
in-process tests are used; tests that start a separate Python (terminal IPython, the import-weight
check, four kernels writing one store) are deselected, since a subprocess imports the unmutated
package and cannot see a mutant.

Score = killed / (total - excluded), where killed counts mutmut's "killed" and "timeout" (as mutmut
itself does), and a "no tests" mutant (no selected test reaches the function) counts as surviving.
Mutants excluded as equivalent are listed in ``EQUIVALENT`` below with the reason; the script prints
how many each rule removed.

Requires ``mutmut`` in the venv (``.venv/bin/pip install mutmut``); needs Linux (mutmut forks).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

MODULES = ["_streaming", "_request", "_conversation", "_history", "_config", "_session", "_render"]

#: Fast tests that exercise the core modules in-process. Missing files (e.g. a test module
#: another engineer has not written yet) are skipped.
TEST_FILES = [
    "tests/test_client_unit.py",
    "tests/test_streaming.py",
    "tests/test_sse_property.py",
    "tests/test_history.py",
    "tests/test_magics.py",
    "tests/test_tools.py",
    "tests/test_review_fixes.py",
    "tests/test_client_faults.py",
    "tests/test_behaviours.py",
    "tests/test_hostile_wire.py",
    "tests/test_tools_hostile.py",
    "tests/test_markdown.py",
    "tests/test_widgets.py",  # the only callers of the async path (ask_async, _arequest, aclose)
    "tests/test_reasoning.py",
    "tests/test_compare.py",
    "tests/test_live_display.py",
    "tests/test_magic_images.py",
    "tests/test_mutants.py",
    "tests/test_mutants_history.py",
]

#: Tests that run the package in a child process (they cannot see a mutant, and they are slow),
#: and one timing-dependent test.
DESELECT = [
    "tests/test_history.py::test_a_second_terminal_ipython_in_the_same_folder_gets_the_chats",
    "tests/test_history.py::test_four_kernels_write_one_store_at_once",
    "tests/test_magics.py::test_load_ext_imports_nothing_heavy",
    "tests/test_widgets.py::test_importing_the_package_does_not_import_ipywidgets",
    # Interrupts a stream after a delay: timing-dependent, it failed once in mutmut's clean
    # stats run (a failing clean run aborts the whole mutation run).
    "tests/test_magics.py::test_interrupt_closes_the_stream_and_keeps_the_partial_reply",
]

#: Equivalent mutants, excluded from the score: (rule name, reason, predicate on the mutant's
#: removed and added source lines). Keep this list short and every rule justified.
EQUIVALENT: list[tuple[str, str, object]] = [
    (
        "float-name-case",
        'float("INF") is float("inf"): float() reads the names inf/nan in any case',
        lambda name, minus, plus: (
            len(minus) == len(plus) == 1
            and minus != plus
            and plus[0].replace('"INF"', '"inf"').replace('"-INF"', '"-inf"') == minus[0]
        ),
    ),
    (
        "unsendable-unread-path",
        "_request._unsendable returns (path, what); every caller reads the path only when `what`"
        " is non-empty, so a path changed next to an empty `what` is never seen",
        lambda name, minus, plus: (
            ".x__unsendable__mutmut_" in name
            and minus == ['return "", ""']
            and plus == ['return "XXXX", ""']
        ),
    ),
]

_SQL_WORD = re.compile(
    r"\b(?:SELECT|INSERT|INTO|UPDATE|DELETE|FROM|WHERE|VALUES|SET|ON|CONFLICT|DO|AND|OR|NOT|IN"
    r"|COALESCE|LOWER|HEX|RANDOMBLOB|ATTACH|DETACH|DATABASE|AS|BEGIN|IMMEDIATE|COMMIT|ROLLBACK"
    r"|PRAGMA|ORDER|GROUP|BY|LIMIT|COUNT|MAX|IGNORE|REPLACE|CASE|WHEN|THEN|ELSE|END|NULL|IS"
    r"|LIKE|DESC|TABLE|INDEX|IF|EXISTS|ALTER|ADD|COLUMN|TEXT|INTEGER|DEFAULT|EXCLUDED)\b"
)


_SQL_FUNCTION = re.compile(r"\b(?:lower|hex|randomblob|coalesce|typeof|count|max)\(")


def _sql_case_only(name: str, minus: list[str], plus: list[str]) -> bool:
    """A mutant that only changes the letter case of SQL text in ``_history``.

    SQLite reads keywords and table, column, schema, function, type and pragma names in any
    case. Only string literals that hold an (upper-case) SQL keyword and no quoted SQL literal
    (``typeof(x) = 'integer'``: the case of a literal matters) qualify; any other change on the
    line disqualifies the mutant."""
    if "._history." not in name or len(minus) != 1 or len(plus) != 1 or minus == plus:
        return False
    before, after = (re.findall(r'"[^"]*"', line) for line in (minus[0], plus[0]))
    if len(before) != len(after) or re.sub(r'"[^"]*"', '""', minus[0]) != re.sub(
        r'"[^"]*"', '""', plus[0]
    ):
        return False
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    return bool(changed) and all(
        a.lower() == b.lower()
        and "'" not in a
        and (
            _SQL_WORD.search(a)
            or _SQL_FUNCTION.search(a)
            # HistoryStore.match puts these column names into its WHERE clause
            or ("HistoryStoreǁmatch__" in name and a in ('"turn_id"', '"origin"', '"cell_id"'))
            # add_usage's upsert: "x = x + excluded.x" (column names and the excluded. table)
            or ("HistoryStoreǁadd_usage__" in name and "+ excluded." in a)
        )
        for a, b in changed
    )


EQUIVALENT.append(
    (
        "live-secret-redaction",
        "_streaming.StreamState._preview/broken and _request.status_error redact the key they"
        " hold, then scrub() the text;"
        " scrub() takes every live Secret out the same way (********), and the state keeps its"
        " Secret alive, so skipping the first redaction changes nothing",
        lambda name, minus, plus: (
            (
                "StreamStateǁ_preview__" in name
                or "StreamStateǁbroken__" in name
                or "._request.x_status_error__" in name
            )
            and len(minus) == len(plus) == 1
            and ("self._secret.redact(" in plus[0] or "secret.redact(" in plus[0])
            and ") and False else " in plus[0]
            and re.sub(r"[()]", "", plus[0].replace(" and False", ""))
            == re.sub(r"[()]", "", minus[0])
        ),
    )
)
EQUIVALENT.append(
    (
        "strip-images-no-op",
        "_conversation.strip_images: letting a message without images through to the rebuild"
        " (`or` -> `and` in the early return) rebuilds the same parts: an equal message",
        lambda name, minus, plus: (
            ".x_strip_images__mutmut_" in name
            and minus == ["if not message.images or not isinstance(message.content, tuple):"]
            and plus == ["if not message.images and not isinstance(message.content, tuple):"]
        ),
    )
)
EQUIVALENT.append(
    (
        "default-keyword",
        "a keyword argument removed that only repeats the field's default"
        " (_streaming.reply_from_completion: Reply(complete=True), and Reply.complete defaults"
        " to True)",
        lambda name, minus, plus: (
            ".x_reply_from_completion__mutmut_" in name and minus == ["complete=True,"] and not plus
        ),
    )
)
#: (function, removed line, added line): placeholders no later step can tell apart.
_SAME_OUTCOME = [
    # message is reassigned on every path before it is read, and `if not message` treats
    # None like "".
    ("x_status_error", 'message = ""', "message = None"),
    # payload is only read through isinstance(payload, dict).
    ("x_status_error", "payload = None", 'payload = ""'),
    # json.loads(b"") raises ValueError, which is caught and gives payload None as well.
    (
        "x_status_error",
        "payload = json.loads(body) if body else None",
        "payload = json.loads(body) if (body) or True else None",
    ),
    # a missing header defaults to "" or "XXXX": neither is "0".
    (
        "x_retry_after_seconds",
        'if value and headers.get("x-ratelimit-remaining-requests", "").strip() == "0":',
        'if value and headers.get("x-ratelimit-remaining-requests", "XXXX").strip() == "0":',
    ),
]

EQUIVALENT.append(
    (
        "same-outcome-placeholder",
        "_request: a start value or fallback replaced by one every later step treats the same"
        " (listed with the reason in _SAME_OUTCOME)",
        lambda name, minus, plus: any(
            f".{function}__mutmut_" in name and minus == [before] and plus == [after]
            for function, before, after in _SAME_OUTCOME
        ),
    )
)
EQUIVALENT.append(
    (
        "codec-name-case",
        'codec names are read in any case: bytes.decode("UTF-8") is bytes.decode("utf-8")',
        lambda name, minus, plus: (
            len(minus) == len(plus) == 1
            and plus[0] == minus[0].replace('.decode("utf-8"', '.decode("UTF-8"')
            and minus != plus
        ),
    )
)
EQUIVALENT.append(
    (
        "falsy-flag",
        "a flag only ever tested for truth, set to None instead of False"
        " (_streaming: `first` of a tool-call fragment; _history: `patient` of _transaction)",
        lambda name, minus, plus: (
            len(minus) == len(plus) == 1
            and (
                ("_tool_call_fragment__" in name and minus[0] == "first = False")
                or ("._history." in name and "patient=False" in minus[0])
            )
            and plus[0] == minus[0].replace("False", "None")
        ),
    )
)
EQUIVALENT.append(
    (
        "sql-case",
        "the case of an SQL statement's keywords and names (SQLite reads them in any case)",
        _sql_case_only,
    )
)

EQUIVALENT.append(
    (
        "store-failure-verb",
        '_session._store_failed(err, what) only asks whether `what` is "read"; any other word'
        ' (the mutants\' None, "XXwriteXX", "WRITE" for "write") gives the same notice',
        lambda name, minus, plus: (
            "NotebookSessionǁ_write__" in name
            and len(minus) == len(plus) == 1
            and '"write")' in minus[0]
            and plus[0].split("_store_failed(")[0] == minus[0].split("_store_failed(")[0]
            and re.search(r', (None|"XXwriteXX"|"WRITE")\)$', plus[0]) is not None
        ),
    )
)
EQUIVALENT.append(
    (
        "stale-pin",
        "_conversation.Conversation.record: the replaced turn's id leaves the chat, and pins are"
        " only read for ids in the chat (Conversation.pinned), so not unpinning it changes nothing",
        lambda name, minus, plus: (
            "Conversationǁrecord__" in name
            and minus == ["self._pinned.discard(old_id)"]
            and plus == ["self._pinned.discard(None)"]
        ),
    )
)
EQUIVALENT.append(
    (
        "falsy-json-flag",
        "json.dumps(..., ensure_ascii=None) is ensure_ascii=False: the flag is only tested for"
        " truth (and html.escape's quote=True is its default)",
        lambda name, minus, plus: (
            len(minus) == len(plus) == 1
            and (
                plus[0] == minus[0].replace("ensure_ascii=False", "ensure_ascii=None")
                or plus[0] == minus[0].replace(", quote=True)", ", )")
            )
            and minus != plus
        ),
    )
)
EQUIVALENT.append(
    (
        "zip-strict-twice",
        "_render.text_table checks that every row has as many cells as the header twice (the"
        " widths' zip and each line's zip are both strict); a mutant can loosen only one of them",
        lambda name, minus, plus: (
            ".x_text_table__mutmut_" in name
            and len(minus) == len(plus) == 1
            and "strict=True" in minus[0]
            and re.sub(r"strict=(None|False)|, \)", "strict=True)", plus[0]).replace("))", ")")
            in (minus[0], minus[0].replace("))", ")"))
        ),
    )
)
EQUIVALENT.append(
    (
        "mime-subtype-index",
        "_render.thumbnails_bundle: an image MIME type has exactly one slash, so its [1] and"
        " [-1] parts are the same",
        lambda name, minus, plus: (
            ".x_thumbnails_bundle__mutmut_" in name
            and len(minus) == len(plus) == 1
            and plus[0] == minus[0].replace("split('/')[-1]", "split('/')[+1]")
            and minus != plus
        ),
    )
)
EQUIVALENT.append(
    (
        "cost-of-no-usage",
        "_session._finish: ModelInfo.cost(None) is None, so looking the model up when there is"
        " no usage changes nothing",
        lambda name, minus, plus: (
            "NotebookSessionǁ_finish__" in name
            and minus == ["info = self.model_info(reply.model) if reply.usage else None"]
            and plus == ["info = self.model_info(reply.model) if (reply.usage) or True else None"]
        ),
    )
)
EQUIVALENT.append(
    (
        "budget-floor",
        "_session._budget: a budget of 1 or 2 tokens holds no earlier turn either way (a message"
        " alone is estimated at 4 tokens or more)",
        lambda name, minus, plus: (
            "NotebookSessionǁ_budget__" in name
            and minus == ["return max(limit - int(reserve), 1)"]
            and plus == ["return max(limit - int(reserve), 2)"]
        ),
    )
)

#: (function, removed line, added line) in _history whose outcome no caller can tell apart.
_HISTORY_SAME = [
    # a missing "url" read as None, nothing or "XXXX" is skipped just as "" is: none of them is a
    # data: URL or one of the store's own image references
    *[
        ("_restore_images", 'url = image.get("url", "")', f'url = image.get("url", {v})')
        for v in ("None", "", '"XXXX"')
    ],
    *[
        (
            "_store_images",
            'match = _DATA_URL.match(str(image.get("url", "")))',
            f'match = _DATA_URL.match(str(image.get("url", {v})))',
        )
        for v in ("None", "", '"XXXX"')
    ],
    # the conversation built while loading is only read for its turns (fetched by id); the
    # chats returned are keyed and named from the index
    *[
        ("load", "Conversation(index.name, index.system, loader=self.load_turns)", after)
        for after in (
            "Conversation(None, index.system, loader=self.load_turns)",
            "Conversation(index.name, None, loader=self.load_turns)",
            "Conversation(index.system, loader=self.load_turns)",
            "Conversation(index.name, loader=self.load_turns)",
        )
    ],
    # the note for a lost image: a missing "url" read as None, nothing or "XXXX" is not one of
    # the store's image references either
    *[
        (
            "_restore_images",
            'and str(part["image_url"].get("url", "")).startswith(_IMAGE_REF)',
            f'and str(part["image_url"].get("url", {v})).startswith(_IMAGE_REF)',
        )
        for v in ("None", "", '"XXXX"')
    ],
    # _sizes' fallback cannot be reached: a parsed turn's texts and tool calls are strings, so
    # turn_sizes cannot raise
    *[
        ("_sizes", "return 0, 0, 0", after)
        for after in ("return 1, 0, 0", "return 0, 1, 0", "return 0, 0, 1")
    ],
    # a cell id that is not text is only looked up by callers passing text or None, which
    # never equals bytes or a number
    (
        "into",
        "[c if isinstance(c, str) else None for c in cells],",
        "[c if (isinstance(c, str)) or True else None for c in cells],",
    ),
    # a failed ROLLBACK or DETACH only swaps one SQLite error for another, which _check_file
    # swallows; the old connection is closed right after, discarding its transaction
    ("_carry_over", 'old.execute("ROLLBACK")', 'old.execute("XXROLLBACKXX")'),
    (
        "_carry_over",
        'old.execute("DETACH DATABASE fresh")',
        'old.execute("XXDETACH DATABASE freshXX")',
    ),
    # SQLite only returns str, bytes, int, float or None; json.loads raises TypeError on the
    # others, which is caught, giving None as before
    (
        "_parse_turn",
        "payload = json.loads(data) if isinstance(data, (str, bytes)) else None",
        "payload = json.loads(data) if (isinstance(data, (str, bytes))) or True else None",
    ),
]
EQUIVALENT.append(
    (
        "history-same-outcome",
        "_history: a placeholder or a temporary object no caller reads (listed with the reason"
        " in _HISTORY_SAME)",
        lambda name, minus, plus: any(
            f"{function}__mutmut_" in name and minus == [before] and plus == [after]
            for function, before, after in _HISTORY_SAME
        ),
    )
)

EQUIVALENT.append(
    (
        "falsy-markdown-flag",
        "_render.final_bundle: render_replies(..., markdown=None) is markdown=False (tested for"
        ' truth only); _session._parse_json_reply: stripping "X" as well as backticks from a'
        " fenced reply changes nothing, since JSON text never starts or ends with an X",
        lambda name, minus, plus: (
            len(minus) == len(plus) == 1
            and (
                (
                    ".x_final_bundle__mutmut_" in name
                    and plus[0] == minus[0].replace("markdown=False", "markdown=None")
                )
                or (
                    ".x__parse_json_reply__mutmut_" in name
                    and plus[0] == minus[0].replace('strip("`")', 'strip("XX`XX")')
                )
            )
            and minus != plus
        ),
    )
)

EQUIVALENT.append(
    (
        "recorded-either-way",
        "_session._finish: a reply is recorded when it is complete or has content; a complete"
        " reply always has a message in `replies` (the tool loop appends one), and text always"
        " comes with one, so `text or replies` is `text and replies` here and the status test is"
        " implied by it",
        lambda name, minus, plus: (
            "NotebookSessionǁ_finish__" in name
            and len(minus) == len(plus) == 1
            and (
                (
                    minus[0] == "has_content = bool(reply.text or exchange.replies)"
                    and plus[0] == "has_content = bool(reply.text and exchange.replies)"
                )
                or (
                    'exchange.status == "complete" or has_content' in minus[0]
                    and plus[0]
                    in (
                        minus[0].replace('"complete"', '"XXcompleteXX"'),
                        minus[0].replace('"complete"', '"COMPLETE"'),
                    )
                )
            )
        ),
    )
)
EQUIVALENT.append(
    (
        "unread-request-base",
        "_session._prepare: the conversation a request is built from is only asked for its"
        " messages, never its name; `_store_busy` is only tested for truth (None is False)",
        lambda name, minus, plus: (
            len(minus) == len(plus) == 1
            and (
                (
                    "NotebookSessionǁ_prepare__" in name
                    and minus[0] == "base = Conversation(options.chat)"
                    and plus[0] == "base = Conversation(None)"
                )
                or (
                    ("NotebookSessionǁ_prepare__" in name or "NotebookSessionǁreset__" in name)
                    and minus[0].startswith("self._store_busy = False")
                    and plus[0] == minus[0].replace("False", "None", 1)
                )
            )
        ),
    )
)

KILLED = {"killed", "timeout"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ofox-mutation")
    p.add_argument("--module", action="append", choices=MODULES, help="mutate only these")
    p.add_argument("--max-children", type=int, default=2)
    p.add_argument("--test-timeout", type=int, default=30, help="pytest-timeout per test, s")
    p.add_argument("--report-only", action="store_true", help="print the last run's results")
    p.add_argument(
        "--rerun-survivors",
        action="store_true",
        help="run the last run's surviving mutants again with today's tests",
    )
    p.add_argument("--diffs", action="store_true", help="print the full diff of each survivor")
    return p.parse_args()


def prepare(workdir: Path, modules: list[str], test_timeout: int) -> None:
    """A fresh copy of the repository with mutmut's configuration in its pyproject."""
    if workdir.exists():
        shutil.rmtree(workdir)
    shutil.copytree(
        ROOT,
        workdir,
        ignore=shutil.ignore_patterns(
            ".venv*",
            ".git",
            "mutants",
            "test-output",
            "__pycache__",
            ".mypy_cache",
            ".ruff_cache",
            ".pytest_cache",
            "*.egg-info",
            "node_modules",
        ),
    )
    tests = [t for t in TEST_FILES if (workdir / t).exists()]
    pyproject = workdir / "pyproject.toml"
    text = pyproject.read_text("utf-8")
    # Drop the notebook (nbval) options of the normal run; keep the rest (warnings as errors).
    text, n = re.subn(r"(?m)^addopts\s*=.*$", 'addopts = ""', text)
    assert n == 1, "pyproject.toml: expected one addopts line"
    text = re.sub(r"(?m)^testpaths\s*=.*$", 'testpaths = ["tests"]', text)
    cli_args = ["-p", "no:cacheprovider", "-p", "no:nbval", f"--timeout={test_timeout}"]
    for node in DESELECT:
        cli_args += ["--deselect", node]
    text += (
        "\n[tool.mutmut]\n"
        + "\n".join(
            [
                'source_paths = ["ofox_jupyter"]',
                f"only_mutate = {json.dumps([f'ofox_jupyter/{m}.py' for m in modules])}",
                f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
                f"pytest_add_cli_args = {json.dumps(cli_args)}",
                'also_copy = ["conftest.py", "notebooks"]',
                "use_git_change_detection = false",
            ]
        )
        + "\n"
    )
    pyproject.write_text(text, "utf-8")


def run_mutmut(workdir: Path, max_children: int, names: list[str] | None = None) -> float:
    env = dict(os.environ)
    # The root conftest.py sets up an isolated environment itself; no real key or server.
    for name in ("OFOX_API_KEY", "OFOX_BASE_URL", "JPY_SESSION_NAME", "OFOX_EMULATOR_DELAY"):
        env.pop(name, None)
    start = time.monotonic()
    log = workdir / ("mutmut-rerun.log" if names else "mutmut.log")
    with open(log, "w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "mutmut", "run", "--max-children", str(max_children)]
            + (names or []),
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    elapsed = time.monotonic() - start
    if done.returncode != 0:
        print(log.read_text(errors="replace")[-4000:])
        sys.exit(f"mutmut failed (exit {done.returncode}); log: {log}")
    return elapsed


_DIFFS = """
import json, sys
from mutmut.mutation.diff_apply import get_diff_for_mutant
out = {}
for name, path in json.load(sys.stdin):
    try:
        out[name] = get_diff_for_mutant(name, path=path)
    except Exception as e:  # noqa: BLE001
        out[name] = f"(no diff: {e})"
print(json.dumps(out))
"""


def load_results(workdir: Path) -> dict[str, dict[str, object]]:
    """{module: {mutant name: status}} from mutmut's .meta files."""
    sys.path.insert(0, str(workdir))
    from mutmut.stats import status_by_exit_code

    results: dict[str, dict[str, object]] = {}
    for module in MODULES:
        meta = workdir / "mutants" / "ofox_jupyter" / f"{module}.py.meta"
        if not meta.exists():
            continue
        data = json.loads(meta.read_text())
        results[module] = {k: status_by_exit_code[v] for k, v in data["exit_code_by_key"].items()}
    return results


def diffs_for(workdir: Path, names: list[tuple[str, str]]) -> dict[str, str]:
    if not names:
        return {}
    done = subprocess.run(
        [sys.executable, "-c", _DIFFS],
        cwd=workdir,
        input=json.dumps(names),
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def changed_lines(diff: str) -> tuple[list[str], list[str]]:
    minus = [
        ln[1:].strip()
        for ln in diff.splitlines()
        if ln.startswith("-") and not ln.startswith("---")
    ]
    plus = [
        ln[1:].strip()
        for ln in diff.splitlines()
        if ln.startswith("+") and not ln.startswith("+++")
    ]
    return minus, plus


def report(workdir: Path, show_diffs: bool, elapsed: float | None) -> float:
    results = load_results(workdir)
    not_killed = [
        (name, f"ofox_jupyter/{module}.py")
        for module, statuses in results.items()
        for name, status in statuses.items()
        if status not in KILLED
    ]
    diffs = diffs_for(workdir, not_killed)
    excluded: dict[str, str] = {}
    for name, _ in not_killed:
        minus, plus = changed_lines(diffs.get(name, ""))
        for rule, _reason, predicate in EQUIVALENT:
            if predicate(name, minus, plus):  # type: ignore[operator]
                excluded[name] = rule
                break

    print()
    print(f"{'module':<16}{'killed':>8}{'total':>8}{'excl.':>7}{'score':>9}   other statuses")
    all_killed = all_total = 0
    survivors: list[tuple[str, str]] = []
    for module in MODULES:
        if module not in results:
            continue
        statuses = results[module]
        counted = {n: s for n, s in statuses.items() if n not in excluded}
        killed = sum(1 for s in counted.values() if s in KILLED)
        total = len(counted)
        other = Counter(s for s in counted.values() if s not in KILLED)
        all_killed += killed
        all_total += total
        pct = 100.0 * killed / total if total else 100.0
        n_excl = len(statuses) - total
        print(
            f"{module:<16}{killed:>8}{total:>8}{n_excl:>7}{pct:>8.1f}%   "
            + ", ".join(f"{k}: {v}" for k, v in sorted(other.items()))
        )
        survivors += [(n, s) for n, s in counted.items() if s not in KILLED]
    overall = 100.0 * all_killed / all_total if all_total else 100.0
    print(f"{'OVERALL':<16}{all_killed:>8}{all_total:>8}{len(excluded):>7}{overall:>8.1f}%")
    if excluded:
        print("\nExcluded as equivalent:")
        for rule, count in Counter(excluded.values()).items():
            reason = next(r for n, r, _ in EQUIVALENT if n == rule)
            print(f"  {rule}: {count}  ({reason})")
    if survivors:
        print(f"\nSurviving mutants ({len(survivors)}):")
        for name, status in sorted(survivors):
            diff = diffs.get(name, "")
            if show_diffs:
                print(f"--- {name} [{status}]\n{diff}")
                continue
            minus, plus = changed_lines(diff)
            pairs = [f"{a}  =>  {b}" for a, b in zip(minus, plus, strict=False) if a != b]
            if len(plus) != len(minus):
                pairs.append(f"{' / '.join(minus)}  =>  {' / '.join(plus) or '(removed)'}")
            short = pairs[0] if pairs else "(?)"
            if len(short) > 150:
                short = short[:147] + "..."
            print(f"  {name} [{status}]: {short}")
    if elapsed is not None:
        print(f"\nmutmut run: {elapsed / 60:.1f} min; work directory: {workdir}")
    return overall


def rerun_survivors(workdir: Path, max_children: int, modules: list[str]) -> float:
    """Run the mutants a finished run did not kill again, against the repository's tests as
    they are now (new tests can only kill more; a killed mutant stays killed). Only when the
    mutated modules are unchanged since that run: otherwise its mutants are not today's."""
    for module in modules:
        ours, theirs = (
            ROOT / "ofox_jupyter" / f"{module}.py",
            workdir / "ofox_jupyter" / f"{module}.py",
        )
        if theirs.exists() and ours.read_bytes() != theirs.read_bytes():
            sys.exit(f"{module}.py changed since the run in {workdir}: run again from scratch")
    # Today's package (the modules not mutated may have changed too, and today's tests expect
    # them as they are); mutmut makes a changed module's mutants again, as not checked.
    shutil.copytree(
        ROOT / "ofox_jupyter",
        workdir / "ofox_jupyter",
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("tests", "conftest.py"):
        source, target = ROOT / name, workdir / name
        if source.is_dir():
            shutil.copytree(
                source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            shutil.copy2(source, target)
    results = load_results(workdir)
    names = [
        name
        for module, statuses in results.items()
        if module in modules
        for name, status in statuses.items()
        if status not in KILLED
    ]
    print(f"Running {len(names)} surviving mutants again in {workdir} ...", flush=True)
    return run_mutmut(workdir, max_children, names) if names else 0.0


def main() -> None:
    args = parse_args()
    workdir: Path = args.workdir.resolve()
    if ROOT in workdir.parents or workdir == ROOT:
        sys.exit("--workdir must be outside the repository")
    elapsed = None
    if args.rerun_survivors:
        elapsed = rerun_survivors(workdir, args.max_children, args.module or MODULES)
    elif not args.report_only:
        prepare(workdir, args.module or MODULES, args.test_timeout)
        print(f"Mutating {', '.join(args.module or MODULES)} in {workdir} ...", flush=True)
        elapsed = run_mutmut(workdir, args.max_children)
    report(workdir, args.diffs, elapsed)


if __name__ == "__main__":
    main()
