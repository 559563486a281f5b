"""Dollars and tables as JupyterLab really renders them: the DOM of a notebook in Chromium.

JupyterLab 4 renders ``text/markdown`` with marked and then typesets the rendered element with
MathJax 3 (``$…$`` and ``\\(…\\)`` inline, ``processEscapes``), which replaces each formula by an
``<mjx-container class="MathJax" jax="CHTML">`` holding the glyphs (``mjx-math``) and, for screen
readers, the formula as MathML (``mjx-assistive-mml > math``). The checks here read that DOM:

* a ``%%ofox`` reply that restates "Is $5 more than $10? And is $x^2$ math?" (the offline emulator
  restates the prompt) shows "$5 more than $10" as text, with exactly one formula, x², in it; its
  ``<sub>`` footer ("would cost $…") shows a literal dollar and no formula;
* ``%ofox models`` is a ``<table>`` (header "USD / 1M in", a row per model) with no formula, not a
  paragraph of pipes;
* ``%ofox usage`` after replies from two models (``-m openai/gpt-4o`` and the default) is a
  ``<table>`` with a row per model and a total, its dollar amounts literal, no formula.

The test writes a small notebook into the root of a JupyterLab of its own (``tests/browser_helpers
.py``: offline, the kernels on the built-in emulator, a private history database) and opens it.
MathJax is loaded lazily, by the first output that needs it; the notebook's second cell shows a
formula so that MathJax is loaded before any checked output is rendered. From then on JupyterLab
typesets an output as part of rendering it (``clear().render()`` on the element, synchronously,
once MathJax is ready), and each check further waits until the output's DOM has not changed for a
while before it counts ``mjx-container`` elements. Screenshots go to
``test-output/browser/render/``, with the page's console and the server's log.

Without Chromium (or playwright, or JupyterLab) the tests skip on a developer's machine and fail
in CI (``CI=true``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_helpers import (
    CHROMIUM_ARGS,
    IN_CI,
    JupyterLab,
    NotebookPage,
    Screenshots,
    chromium_fixture,  # noqa: F401 - a fixture
    fresh_output,
    screenshot_on_failure,
    screenshots_fixture,  # noqa: F401 - a fixture
    shots_fixture,  # noqa: F401 - a fixture
)

if not IN_CI:  # in CI a missing package fails the import below instead
    for _module, _what in (("playwright.sync_api", "playwright"), ("jupyterlab", "jupyterlab")):
        pytest.importorskip(_module, reason=f"{_what} is not installed: pip install -e '.[test]'")

from playwright.sync_api import (  # noqa: E402
    BrowserContext,
    ConsoleMessage,
    Error,
    Locator,
    Page,
    expect,
    sync_playwright,
)

OUTPUT = Path(__file__).resolve().parents[1] / "test-output" / "browser" / "render"

#: Generous, for a slow CI machine; each wait ends as soon as its condition holds.
TIMEOUT = 45.0
WAIT = TIMEOUT * 1000
#: How long an output's DOM must stay unchanged before it counts as fully rendered and typeset.
SETTLE = 0.75

NOTEBOOK = "render.ipynb"
LOAD = "%load_ext ofox_jupyter"
#: Shows a formula, so that MathJax is loaded before the checked outputs render.
MATHJAX_PROBE = 'from IPython.display import Markdown\nMarkdown("MathJax is ready: $a_1$")'
#: Money and math in one prompt; the emulator's reply restates it.
MONEY = "Is $5 more than $10? And is $x^2$ math?"
MODELS = "%ofox models"
#: Two replies from two models, for ``%ofox usage``.
GPT4O = "openai/gpt-4o"
PLUMS = f"%%ofox -m {GPT4O}\nA question for gpt-4o about plums"
FIGS = "%%ofox\nA question for the default model about figs"
USAGE = "%ofox usage"
CELLS = [LOAD, MATHJAX_PROBE, f"%%ofox\n{MONEY}", MODELS, PLUMS, FIGS, USAGE]

#: What a cell's output shows when its code failed.
FAILED = re.compile(r"Traceback|\b\w+Error\b")

#: The output's text as the page shows it, each MathJax formula as ``[math: <its MathML text>]``
#: (a formula's glyphs are CSS content, not text; its assistive MathML holds what it says).
SHOWN_TEXT = """node => {
    const copy = node.cloneNode(true);
    for (const math of copy.querySelectorAll('mjx-container')) {
        const mml = math.querySelector('mjx-assistive-mml math');
        math.replaceWith(`[math: ${mml ? mml.textContent : '(no assistive MathML)'}]`);
    }
    return copy.textContent;
}"""

#: Every MathJax formula inside the node: its MathML (or, without it, its HTML).
FORMULAS = """node => [...node.querySelectorAll('mjx-container')].map(math => {
    const mml = math.querySelector('mjx-assistive-mml math');
    return mml ? mml.outerHTML : math.outerHTML;
})"""


# -- fixtures


@pytest.fixture(scope="module")
def output_dir() -> Path:
    """``test-output/browser/render/``, emptied first: every screenshot there is from this run."""
    return fresh_output(OUTPUT)


def notebook_json(sources: list[str]) -> dict[str, Any]:
    """A notebook of code cells without outputs, on this environment's ``python3`` kernel."""
    return {
        "cells": [
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"cell-{n}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }
            for n, source in enumerate(sources)
        ],
        "metadata": {
            "kernelspec": {
                "display_name": NotebookPage.kernel_name,
                "language": "python",
                "name": "python3",
            },
            "language_info": {"name": "python"},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


@pytest.fixture(scope="module")
def lab(
    chromium: str, tmp_path_factory: pytest.TempPathFactory, output_dir: Path
) -> Iterator[JupyterLab]:
    """JupyterLab serving a folder that holds the test's notebook, with a history of its own."""
    home = tmp_path_factory.mktemp("lab-render")
    root = home / "notebooks"
    root.mkdir()
    (root / NOTEBOOK).write_text(json.dumps(notebook_json(CELLS), indent=1), encoding="utf-8")
    server = JupyterLab(root, home, output_dir / "jupyterlab.log", {})
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def page(
    chromium: str,
    lab: JupyterLab,
    tmp_path_factory: pytest.TempPathFactory,
    output_dir: Path,
) -> Iterator[Page]:
    """Headless Debian Chromium (a fresh profile), its console logged."""
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as playwright, (output_dir / "console.log").open("w") as console:
        context: BrowserContext = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            context.set_default_timeout(WAIT)
            page = context.pages[0] if context.pages else context.new_page()

            def log_message(message: ConsoleMessage) -> None:
                console.write(f"[{message.type}] {message.text}\n")

            def log_error(error: Error) -> None:
                console.write(f"[pageerror] {error}\n")

            page.on("console", log_message)
            page.on("pageerror", log_error)
            yield page
        finally:
            context.close()


@pytest.fixture(scope="module")
def notebook(page: Page, lab: JupyterLab, screenshots: Screenshots) -> NotebookPage:
    """The test's notebook open in JupyterLab, the extension loaded and MathJax ready."""
    with screenshot_on_failure(screenshots, page, "setup"):
        page.goto(lab.url(f"lab/tree/{NOTEBOOK}"))
        nb = NotebookPage(page, TIMEOUT)
        nb.wait_until_ready()
        load = run(nb, LOAD)
        expect(load.locator(".jp-Cell-outputArea")).to_contain_text("ofox: offline")
        # The first formula on the page loads MathJax (a lazy import); once it is typeset,
        # every output rendered later is typeset as part of its rendering.
        probe = run(nb, MATHJAX_PROBE)
        expect(probe.locator(".jp-Cell-outputArea mjx-container")).to_have_count(1, timeout=WAIT)
        screenshots.save(page, "mathjax-ready", probe)
    return nb


# -- steps


def run(notebook: NotebookPage, source: str) -> Locator:
    """Run the notebook's cell holding ``source`` (found by its last line), wait until the run is
    over (whatever its execution count) and check that it did not fail."""
    cell = notebook.code_cell(source.splitlines()[-1])
    notebook.run_and_wait_any(cell)
    text = cell.locator(".jp-Cell-outputArea").inner_text()
    assert not FAILED.search(text), f"the cell {source!r} failed:\n{text}"
    return cell


def markdown_output(cell: Locator) -> Locator:
    """The cell's one rendered ``text/markdown`` output (a streamed reply's final render)."""
    output = cell.locator(".jp-OutputArea-output[data-mime-type='text/markdown']")
    expect(output).to_have_count(1, timeout=WAIT)
    return output


def wait_settled(page: Page, node: Locator, quiet: float = SETTLE) -> None:
    """Wait until ``node``'s DOM (children, text, attributes, anywhere inside) has not changed for
    ``quiet`` seconds: rendered and typeset, nothing more to come."""
    handle = node.element_handle(timeout=WAIT)
    handle.evaluate(
        """node => {
            node.__ofoxChanged = performance.now();
            node.__ofoxSettle?.disconnect();
            node.__ofoxSettle = new MutationObserver(() => {
                node.__ofoxChanged = performance.now();
            });
            node.__ofoxSettle.observe(
                node, {childList: true, subtree: true, characterData: true, attributes: true});
        }"""
    )
    try:
        page.wait_for_function(
            "([node, quiet]) => performance.now() - node.__ofoxChanged >= quiet",
            arg=[handle, quiet * 1000],
            timeout=WAIT,
            polling=100,
        )
    finally:
        handle.evaluate("node => node.__ofoxSettle?.disconnect()")


def shown_text(node: Locator) -> str:
    return str(node.evaluate(SHOWN_TEXT))


def formulas(node: Locator) -> list[str]:
    return [str(formula) for formula in node.evaluate(FORMULAS)]


def collapse(text: str) -> str:
    """Runs of whitespace as one space (the page's line breaks are not the point here)."""
    return re.sub(r"\s+", " ", text).strip()


def check_table(output: Locator, header: list[str], what: str) -> list[list[str]]:
    """``output`` shows one HTML table with ``header``, and no pipes of an unrendered Markdown
    table outside it; returns the body's rows as lists of cell texts."""
    tables = output.locator("table")
    assert tables.count() == 1, (
        f"{what} shows {tables.count()} HTML tables, not one; its output is:\n{output.inner_html()}"
    )
    shown_header = [collapse(t) for t in tables.locator("thead th").all_inner_texts()]
    assert shown_header == header, f"{what}: the table's header is {shown_header}, not {header}"
    outside = output.evaluate(
        """node => {
            const copy = node.cloneNode(true);
            copy.querySelectorAll('table').forEach(table => table.remove());
            return copy.textContent;
        }"""
    )
    assert "|" not in str(outside), (
        f"{what}: Markdown table pipes outside the HTML table: {str(outside)!r}"
    )
    rows: list[list[str]] = tables.evaluate(
        """table => [...table.querySelectorAll('tbody tr')].map(
            row => [...row.querySelectorAll('td')].map(cell => cell.textContent.trim()))"""
    )
    return rows


# -- the checks


@pytest.fixture(scope="module")
def money_reply(notebook: NotebookPage, page: Page, screenshots: Screenshots) -> Locator:
    """The rendered reply to the money-and-math prompt, typeset and settled."""
    with screenshot_on_failure(screenshots, page, "money"):
        cell = run(notebook, f"%%ofox\n{MONEY}")
        reply = markdown_output(cell)
        # The one real formula, x^2, is typeset: wait for it, then for the output to settle.
        expect(reply.locator("mjx-container").first).to_be_attached(timeout=WAIT)
        wait_settled(page, reply)
        screenshots.save(page, "money-reply", cell)
    return reply


def test_currency_in_a_reply_is_text_and_math_is_typeset(money_reply: Locator) -> None:
    """The restated prompt shows "$5 more than $10" as text; x^2 is its one formula."""
    reply = money_reply
    shown = collapse(shown_text(reply))
    found = formulas(reply)
    quote = reply.locator("blockquote")
    dom = quote.inner_html() if quote.count() == 1 else reply.inner_html()
    seen = (
        f"the page shows (each MathJax formula as [math: its MathML text]):\n{shown!r}\n"
        f"its {len(found)} MathJax formula(s), as MathML:\n"
        + "\n".join(found)
        + f"\nthe restated prompt's HTML:\n{dom}"
    )
    assert "Offline emulator" in shown and "You said:" in shown, seen

    money = [f for f in found if re.search(r"<mn>(5|10)</mn>|<mi>m</mi>", f)]
    assert not money, f"the currency in the reply was typeset as math; {seen}"
    assert "Is $5 more than $10?" in shown, f"the currency is not shown literally; {seen}"

    assert len(found) == 1, f"{len(found)} MathJax formulas in the reply, not 1; {seen}"
    squared = reply.locator("mjx-container mjx-assistive-mml math msup")
    assert squared.count() == 1, f"the reply's formula is not x^2 as a superscript; {seen}"
    parts = squared.evaluate("msup => [...msup.children].map(c => [c.localName, c.textContent])")
    assert parts == [["mi", "x"], ["mn", "2"]], f"the superscript is {parts}, not x^2"
    expected = "Is $5 more than $10? And is [math: x2] math?"
    assert expected in shown, f"not {expected!r} in the reply; {seen}"


def test_footer_dollar_is_text(money_reply: Locator) -> None:
    """The reply's ``<sub>`` footer shows "would cost $…" with a literal dollar, no formula."""
    footer = money_reply.locator("sub")
    assert footer.count() == 1, f"{footer.count()} <sub> footers in: {money_reply.inner_html()}"
    footer_text = collapse(shown_text(footer))
    assert footer.locator("mjx-container").count() == 0, (
        f"a MathJax formula in the footer: {formulas(footer)}\n{footer.inner_html()}"
    )
    assert re.search(r"would cost \$\d", footer_text), (
        f"the footer does not show the cost with a literal dollar: {footer_text!r}\n"
        f"{footer.inner_html()}"
    )


def test_models_is_a_table_without_math(
    notebook: NotebookPage, page: Page, shots: Screenshots
) -> None:
    """``%ofox models`` is an HTML table, a row per model, the prices in USD, no formula."""
    with screenshot_on_failure(shots, page, "models"):
        cell = run(notebook, MODELS)
        output = markdown_output(cell)
        expect(output.locator("table")).to_have_count(1, timeout=WAIT)
        wait_settled(page, output)
        shots.save(page, "models", cell)
    rows = check_table(
        output,
        ["model", "badges", "context", "USD / 1M in", "USD / 1M out"],
        MODELS,
    )
    assert len(rows) >= 5, f"{MODELS} lists {len(rows)} models: {rows}"
    for row in rows:
        assert len(row) == 5 and "/" in row[0], f"{MODELS}: a row is not a model's: {row}"
    assert GPT4O in [row[0] for row in rows], f"{MODELS} does not list {GPT4O}: {rows}"
    assert output.locator("mjx-container").count() == 0, (
        f"MathJax formulas in {MODELS}: {formulas(output)}"
    )


def test_usage_is_a_table_with_a_row_per_model(
    notebook: NotebookPage, page: Page, shots: Screenshots
) -> None:
    """After replies from two models, ``%ofox usage`` is an HTML table with a row for each, a
    total, literal dollars and no formula."""
    with screenshot_on_failure(shots, page, "usage"):
        plums = run(notebook, PLUMS)
        figs = run(notebook, FIGS)
        models = []
        for reply in (plums, figs):
            # The reply's heading: "Offline emulator · `model` · turn N".
            heading = markdown_output(reply).locator("p em code").first
            models.append(heading.inner_text().strip())
        assert models[0] == GPT4O, f"the -m {GPT4O} reply came from {models[0]}"
        assert models[1] != GPT4O, f"the default model is {GPT4O} too: nothing to tell apart"
        cell = run(notebook, USAGE)
        output = markdown_output(cell)
        expect(output.locator("table")).to_have_count(1, timeout=WAIT)
        wait_settled(page, output)
        shots.save(page, "usage", cell)
    rows = check_table(output, ["model", "requests", "tokens in", "tokens out", "cost"], USAGE)
    names = [row[0] for row in rows]
    expected = sorted(f"{model} (offline)" for model in models)
    assert sorted(names[:-1]) == expected and names[-1:] == ["total"], (
        f"{USAGE} has the rows {names}, not one for each of {expected} and a total:\n{rows}"
    )
    for row in rows[:-1]:
        assert len(row) == 5 and int(row[1]) >= 1, f"{USAGE}: a model's row is {row}"
        assert re.fullmatch(r"\(\$[\d.]+\)", row[4]), (
            f"{USAGE}: the offline cost of {row[0]} is {row[4]!r}, not '($…)' with a literal $"
        )
    assert output.locator("mjx-container").count() == 0, (
        f"MathJax formulas in {USAGE}: {formulas(output)}"
    )
    note = collapse(shown_text(output))
    assert re.search(r"at list prices: \$\d", note), (
        f"{USAGE} does not show the list-price note with a literal dollar: {note!r}"
    )
