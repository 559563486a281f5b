"""Long, structured Markdown replies for streaming tests and benchmarks.

``[emulator-prose: N]`` and ``[emulator-code: N]`` append about N words of Markdown shaped like a
real long answer, deterministic like everything the emulator says:

* **prose**: paragraphs of 40 to 110 words, a ``##`` heading every fifth paragraph, a bulleted
  list every seventh, a small table every eleventh, and now and then money (``$5``) and math
  (``$x^2$``), so a renderer meets every kind of block boundary;
* **code**: a sentence or two, then a fenced Python block of 12 to 40 lines, again and again.

``[emulator-words: N]`` stays what it was (one long paragraph): the worst case for anything
that splits a reply at paragraph boundaries.
"""

from __future__ import annotations

__all__ = ["code_document", "prose_document"]

_WORDS = (
    "alpha bravo charlie delta echo foxtrot golf hotel india juliett kilo lima mike november "
    "oscar papa quebec romeo sierra tango uniform victor whiskey xray yankee zulu"
).split()
_PARAGRAPH_WORDS = (64, 40, 97, 72, 110, 55, 83)
_CODE_LINES = (18, 12, 40, 25, 31)


class _Words:
    """An endless, deterministic supply of filler words, counting what it hands out."""

    def __init__(self) -> None:
        self.used = 0

    def take(self, n: int) -> list[str]:
        start, self.used = self.used, self.used + n
        return [_WORDS[i % len(_WORDS)] for i in range(start, start + n)]

    def sentence(self, n: int) -> str:
        words = self.take(n)
        return " ".join([words[0].capitalize(), *words[1:]]) + "."


def prose_document(target: int) -> str:
    """About ``target`` words of prose with headings, lists, tables, money and math."""
    words = _Words()
    blocks: list[str] = []
    paragraph = 0
    while words.used < target:
        paragraph += 1
        if paragraph % 5 == 1:
            blocks.append("## " + words.sentence(3).rstrip("."))
        if paragraph % 7 == 0:
            blocks.append("\n".join(f"- {words.sentence(6)}" for _ in range(4)))
        if paragraph % 11 == 0:
            rows = [f"| {' | '.join(words.take(3))} |" for _ in range(3)]
            blocks.append("\n".join(["| item | kind | note |", "|---|---|---|", *rows]))
        size = _PARAGRAPH_WORDS[paragraph % len(_PARAGRAPH_WORDS)]
        sentences = [words.sentence(n) for n in (size // 3, size // 3, size - 2 * (size // 3))]
        if paragraph % 4 == 0:
            sentences.append("It costs $5 where $x^2$ grows.")
        blocks.append(" ".join(sentences))
    return "\n\n".join(blocks)


def code_document(target: int) -> str:
    """About ``target`` words: short explanations between fenced Python blocks."""
    words = _Words()
    blocks: list[str] = []
    part = 0
    while words.used < target:
        lines = []
        for line in range(_CODE_LINES[part % len(_CODE_LINES)]):
            a, b, c = words.take(3)
            lines.append(f"    {a}_{line} = {b}({c}, {line})" if line else f"def {a}_{part}():")
        lines.append(f"    return {words.take(1)[0]}_1")
        blocks.append(words.sentence(12 + part % 9))
        blocks.append("```python\n" + "\n".join(lines) + "\n```")
        part += 1
    return "\n\n".join(blocks)
