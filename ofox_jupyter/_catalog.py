"""The model catalog (``GET /models``) as typed values, with prices as numbers.

OfoxAI's catalog follows OpenRouter: prices are strings in USD per token (``"0"`` is free),
``architecture.input_modalities`` says whether a model takes images, and non-chat models
(embeddings, video) are mixed into the same list (ofox-api.md §10).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ._streaming import Usage

__all__ = ["ModelInfo", "ModelList", "parse_models"]


def _price(value: Any) -> float | None:
    """USD per token as a float; ``None`` when the catalog gives no usable price."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        price = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    if price != price or price in (float("inf"), float("-inf")):
        return None  # NaN or infinite: no usable price
    return price if price >= 0 else None  # OpenRouter uses "-1" for "varies"


@dataclass(frozen=True)
class ModelInfo:
    """One catalog entry."""

    id: str
    name: str = ""
    context_length: int = 0
    max_completion_tokens: int | None = None
    input_modalities: tuple[str, ...] = ("text",)
    output_modalities: tuple[str, ...] = ("text",)
    prompt_price: float | None = None
    completion_price: float | None = None
    #: USD per prompt token read from the provider's prompt cache (``pricing.input_cache_read``).
    cache_read_price: float | None = None
    supported_parameters: tuple[str, ...] = ()
    supported_endpoints: tuple[str, ...] = ()
    deprecated: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def vision(self) -> bool:
        return "image" in self.input_modalities

    @property
    def tools(self) -> bool:
        return "tools" in self.supported_parameters

    @property
    def json_mode(self) -> bool:
        return "response_format" in self.supported_parameters

    @property
    def is_chat(self) -> bool:
        """Whether the model answers chat completions (not an embeddings or video model)."""
        if self.supported_endpoints:
            return "/v1/chat/completions" in self.supported_endpoints
        return "text" in self.output_modalities and self.context_length > 0

    def cost(self, usage: Usage | None) -> float | None:
        """USD for a request with this usage, or ``None`` when usage or prices are unknown.

        Cached prompt tokens cost the cache-read price when the catalog has one (ofox-api.md
        §10, §14); without it they are charged as ordinary prompt tokens."""
        if usage is None or self.prompt_price is None or self.completion_price is None:
            return None
        cached = min(usage.cached_tokens, usage.prompt_tokens)
        if self.cache_read_price is None:
            cached = 0
        return (
            (usage.prompt_tokens - cached) * self.prompt_price
            + cached * (self.cache_read_price or 0.0)
            + usage.completion_tokens * self.completion_price
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        """An entry of the catalog; ``ValueError`` naming the field when one has a type no
        reading of it can use (entries are untrusted: another gateway, a newer format)."""
        model_id = data.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise ValueError("an entry without an id")
        architecture = _object(data, "architecture")
        pricing = _object(data, "pricing")
        top = _object(data, "top_provider")
        max_completion = _count(top.get("max_completion_tokens"), "max_completion_tokens")
        name = data.get("name")
        return cls(
            id=model_id,
            name=name if isinstance(name, str) and name else model_id,
            context_length=_count(data.get("context_length"), "context_length")
            or _count(top.get("context_length"), "top_provider.context_length")
            or 0,
            max_completion_tokens=max_completion or None,
            input_modalities=_words(architecture.get("input_modalities"), ("text",)),
            output_modalities=_words(architecture.get("output_modalities"), ("text",)),
            prompt_price=_price(pricing.get("prompt")),
            completion_price=_price(pricing.get("completion")),
            cache_read_price=_price(pricing.get("input_cache_read")),
            supported_parameters=_words(data.get("supported_parameters"), ()),
            supported_endpoints=_words(data.get("supported_endpoints"), ()),
            deprecated=data.get("is_deprecated") is True,
            raw=data,
        )


def _object(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{name} is not an object")
    return value


def _count(value: Any, name: str) -> int:
    """A whole number ≥ 0 (or 0 when absent); numbers sent as text are read as numbers."""
    if value is None or value == "":
        return 0
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**53:
        raise ValueError(f"{name} is not a number of tokens")
    return value


def _words(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    """A list of strings (anything else in it is dropped); the default when absent."""
    if value is None:
        return default
    if not isinstance(value, list):
        raise ValueError("a list field is not a list")
    return tuple(v for v in value if isinstance(v, str))


class ModelList(list[ModelInfo]):
    """The usable models of a catalog; ``skipped`` counts the entries left out as malformed."""

    skipped: int = 0


def parse_models(body: Any) -> ModelList:
    """The models of a ``{"object": "list", "data": [...]}`` body; malformed entries are
    skipped and counted (``.skipped``)."""
    entries = body.get("data") if isinstance(body, Mapping) else body
    models = ModelList()
    skipped = 0
    for entry in entries if isinstance(entries, list) else ():
        try:
            if not isinstance(entry, Mapping):
                raise ValueError("not an object")
            models.append(ModelInfo.from_dict(entry))
        except (ValueError, TypeError, OverflowError):
            skipped += 1
    models.skipped = skipped
    return models
