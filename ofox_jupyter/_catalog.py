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

__all__ = ["ModelInfo", "parse_models"]


def _price(value: Any) -> float | None:
    """USD per token as a float; ``None`` when the catalog gives no usable price."""
    if value is None or value == "":
        return None
    try:
        price = float(value)
    except (TypeError, ValueError):
        return None
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
        """USD for a request with this usage, or ``None`` when usage or prices are unknown."""
        if usage is None or self.prompt_price is None or self.completion_price is None:
            return None
        return (
            usage.prompt_tokens * self.prompt_price
            + usage.completion_tokens * self.completion_price
        )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelInfo:
        architecture = data.get("architecture") or {}
        pricing = data.get("pricing") or {}
        top = data.get("top_provider") or {}
        max_completion = top.get("max_completion_tokens")
        return cls(
            id=str(data["id"]),
            name=str(data.get("name") or data["id"]),
            context_length=int(data.get("context_length") or top.get("context_length") or 0),
            max_completion_tokens=int(max_completion) if max_completion else None,
            input_modalities=tuple(architecture.get("input_modalities") or ("text",)),
            output_modalities=tuple(architecture.get("output_modalities") or ("text",)),
            prompt_price=_price(pricing.get("prompt")),
            completion_price=_price(pricing.get("completion")),
            supported_parameters=tuple(data.get("supported_parameters") or ()),
            supported_endpoints=tuple(data.get("supported_endpoints") or ()),
            deprecated=bool(data.get("is_deprecated")),
            raw=data,
        )


def parse_models(body: Any) -> list[ModelInfo]:
    """The models of a ``{"object": "list", "data": [...]}`` body; malformed entries skipped."""
    entries = body.get("data") if isinstance(body, Mapping) else body
    models: list[ModelInfo] = []
    for entry in entries or ():
        if isinstance(entry, Mapping) and entry.get("id"):
            models.append(ModelInfo.from_dict(entry))
    return models
