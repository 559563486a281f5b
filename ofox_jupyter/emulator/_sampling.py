"""A small word model, so that the emulator's sampling parameters do what a real model's do.

A trigram model over :data:`._corpus.CORPUS` (built once, in a few milliseconds, on first use)
continues the prompt's last known word. Each next word is drawn the way a real model draws its
next token:

* the candidates' scores are log counts, lowered by ``frequency_penalty`` for every time the word
  was already generated and by ``presence_penalty`` once it has appeared at all;
* ``temperature`` 0 takes the best candidate every time (deterministic); above 0 the scores are
  divided by the temperature and turned into chances (softmax), so higher temperatures spread
  the chances over more words and the text varies more;
* ``top_p`` keeps the most likely candidates whose chances add up to ``top_p``;
* ``seed`` seeds the draw. Without one, the seed is derived from the request itself, so a
  re-run cell gets the same answer (a real model's would vary) while two different requests
  (another temperature, another prompt) are drawn differently.

What it cannot show: meaning. It knows a few thousand words of text about notebooks, data and
models, and strings them together plausibly, not correctly.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import Counter
from collections.abc import Mapping
from functools import cache
from typing import Any

from ._corpus import CORPUS

__all__ = ["SAMPLING_KEYS", "WordModel", "sampled_text", "word_model"]

#: A request that sets any of these gets a sampled continuation.
SAMPLING_KEYS = ("temperature", "top_p", "seed")
_TOKEN = re.compile(r"[A-Za-z']+|[.,;:!?]")
_END = frozenset(".!?")
#: Words generated when the request does not say (max_tokens still cuts the reply).
DEFAULT_WORDS = 60


class WordModel:
    """Trigram counts with bigram and unigram fallbacks, and a sampler over them."""

    def __init__(self, text: str) -> None:
        tokens = [t.lower() for t in _TOKEN.findall(text)]
        self.unigrams: Counter[str] = Counter(tokens)
        self.bigrams: dict[str, Counter[str]] = {}
        self.trigrams: dict[tuple[str, str], Counter[str]] = {}
        for a, b in zip(tokens, tokens[1:], strict=False):
            self.bigrams.setdefault(a, Counter())[b] += 1
        for a, b, c in zip(tokens, tokens[1:], tokens[2:], strict=False):
            self.trigrams.setdefault((a, b), Counter())[c] += 1

        self._ranked: dict[tuple[str | None, str], list[tuple[float, str]]] = {}

    def candidates(self, before: str | None, last: str) -> Counter[str]:
        if before is not None and (before, last) in self.trigrams:
            return self.trigrams[(before, last)]
        return self.bigrams.get(last) or self.unigrams

    def ranked(self, before: str | None, last: str) -> list[tuple[float, str]]:
        """The candidates after ``before last``: (log count, word), best first, ties by the
        word (computed once per context)."""
        key = (before, last)
        ranked = self._ranked.get(key)
        if ranked is None:
            counts = self.candidates(before, last)
            ranked = sorted(((math.log(n), w) for w, n in counts.items()), key=_best_first)
            self._ranked[key] = ranked
        return ranked

    def generate(
        self,
        start: str,
        words: int,
        rng: random.Random,
        *,
        temperature: float = 1.0,
        top_p: float = 1.0,
        presence_penalty: float = 0.0,
        frequency_penalty: float = 0.0,
    ) -> list[str]:
        """``words`` tokens after ``start`` (then on to the end of the sentence, 20 at most)."""
        before: str | None = None
        last = start if start in self.unigrams else "the"
        out: list[str] = []
        used: Counter[str] = Counter()
        while len(out) < words or (out[-1] not in _END and len(out) < words + 20):
            scored = ranked = self.ranked(before, last)
            if (frequency_penalty or presence_penalty) and used:
                scored = sorted(
                    (
                        (s - frequency_penalty * used[w] - presence_penalty * (w in used), w)
                        for s, w in scored
                    ),
                    key=_best_first,
                )
            word = _draw(scored, rng, temperature, top_p, keep=scored is ranked)
            out.append(word)
            if frequency_penalty or presence_penalty:
                used[word] += 1
            before, last = last, word
        return out


def _best_first(pair: tuple[float, str]) -> tuple[float, str]:
    return -pair[0], pair[1]


def _draw(
    scored: list[tuple[float, str]],
    rng: random.Random,
    temperature: float,
    top_p: float,
    *,
    keep: bool = False,
) -> str:
    """One word of ``scored`` (best first); ``keep``: ``scored`` is a context's own ranked list,
    whose nucleus may be kept for its next draw."""
    if temperature <= 0 or len(scored) == 1:
        return scored[0][1]
    weights, words, total = _nucleus(scored, temperature, top_p, keep)
    pick = rng.random() * total
    for weight, word in zip(weights, words, strict=True):
        pick -= weight
        if pick <= 0:
            return word
    return words[-1]


def _nucleus(
    scored: list[tuple[float, str]], temperature: float, top_p: float, keep: bool
) -> tuple[list[float], list[str], float]:
    """The candidates ``top_p`` keeps, their softmax weights at ``temperature`` and the weights'
    sum: the same for every draw in one context, so computed once per context (the exp of
    every candidate was most of a word's cost). A penalised list is new each time: not kept."""
    key = (id(scored), temperature, top_p)
    found = _NUCLEI.get(key) if keep else None
    if found is not None and found[0] is scored:
        return found[1]
    best = scored[0][0]
    all_weights = [math.exp((score - best) / temperature) for score, _ in scored]
    whole = sum(all_weights)
    weights: list[float] = []
    words: list[str] = []
    mass = 0.0
    for weight, (_, word) in zip(all_weights, scored, strict=True):
        weights.append(weight)
        words.append(word)
        mass += weight / whole
        if mass >= top_p:
            break
    nucleus = (weights, words, sum(weights))
    if keep:
        if len(_NUCLEI) >= _NUCLEI_KEPT:
            _NUCLEI.clear()
        _NUCLEI[key] = (scored, nucleus)
    return nucleus


#: Nuclei by (ranked list, temperature, top_p); the list itself is kept with its nucleus, so an
#: id reused by a later list never matches. Emptied when full (a few thousand contexts).
_NUCLEI: dict[
    tuple[int, float, float],
    tuple[list[tuple[float, str]], tuple[list[float], list[str], float]],
] = {}
_NUCLEI_KEPT = 4096


@cache
def word_model() -> WordModel:
    return WordModel(CORPUS)


def _number(body: Mapping[str, Any], key: str, default: float) -> float:
    value = body.get(key)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return default


def _seed(body: Mapping[str, Any]) -> int:
    seed = body.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool):
        return seed
    # No seed: one derived from the request (its messages and parameters), so the same request
    # is answered the same way and a different one differently.
    text = json.dumps(body, sort_keys=True, default=str, ensure_ascii=False)
    return int.from_bytes(hashlib.sha256(text.encode("utf-8", "replace")).digest()[:8], "big")


def _join(tokens: list[str]) -> str:
    text = ""
    capital = True
    for token in tokens:
        word = token.capitalize() if capital and token not in _END else token
        if token in ".,;:!?":
            text += token
        else:
            text += (" " if text else "") + word
        capital = token in _END
    return text


def sampled_text(prompt: str, body: Mapping[str, Any], words: int = DEFAULT_WORDS) -> str:
    """The continuation of ``prompt`` under the request's sampling parameters."""
    model = word_model()
    known = [t.lower() for t in _TOKEN.findall(prompt) if t.lower() in model.bigrams]
    tokens = model.generate(
        known[-1] if known else "the",
        words,
        random.Random(_seed(body)),
        temperature=_number(body, "temperature", 1.0),
        top_p=_number(body, "top_p", 1.0),
        presence_penalty=_number(body, "presence_penalty", 0.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0),
    )
    return _join(tokens)
