"""The emulator's model catalog: a few real OfoxAI model ids with their capabilities and prices.

Entries follow the OpenRouter-style objects of ``GET /v1/models`` (ofox-api.md §10): prices are USD
per token as strings, ``architecture.input_modalities`` says which inputs a model accepts,
non-chat models show ``context_length`` 0 and ``max_completion_tokens`` null, and a retired model
has ``is_deprecated`` true with an ``expiration_date`` in the past.  :func:`catalog` returns fresh
dicts every call, so callers (and tests comparing prices) may mutate what they get.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = [
    "REASONING_MODELS",
    "accepts_images",
    "catalog",
    "find_model",
    "is_chat_model",
    "is_retired",
]

#: Models that stream ``delta.reasoning_content`` before their answer.
REASONING_MODELS = frozenset({"deepseek/deepseek-v4-pro"})

_CHAT_ENDPOINTS = ["/v1/chat/completions", "/v1/responses"]
_BASE_PARAMS = [
    "temperature",
    "top_p",
    "max_tokens",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "seed",
]


def _model(
    *,
    id: str,
    created: int,
    owned_by: str,
    slug: str,
    name: str,
    description: str,
    context: int,
    inputs: list[str],
    outputs: list[str],
    tokenizer: str,
    pricing: dict[str, str],
    max_completion: int | None,
    params: list[str],
    endpoints: list[str],
    expiration_date: str | None = None,
    deprecated: bool = False,
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "model",
        "created": created,
        "owned_by": owned_by,
        "canonical_slug": slug,
        "name": name,
        "description": description,
        "context_length": context,
        "architecture": {
            "modality": f"{'+'.join(inputs)}->{'+'.join(outputs)}",
            "input_modalities": inputs,
            "output_modalities": outputs,
            "tokenizer": tokenizer,
            "instruct_type": None,
        },
        "pricing": pricing,
        "top_provider": {
            "context_length": context,
            "max_completion_tokens": max_completion,
            "is_moderated": False,
        },
        "per_request_limits": None,
        "supported_parameters": params,
        "default_parameters": None,
        "expiration_date": expiration_date,
        "is_deprecated": deprecated,
        "supported_endpoints": endpoints,
    }


_CATALOG: tuple[dict[str, Any], ...] = (
    _model(
        id="openai/gpt-4o",
        created=1715558400,
        owned_by="openai",
        slug="gpt-4o-2024-11-20",
        name="OpenAI: GPT-4o",
        description="GPT-4o, OpenAI's multimodal flagship model: text and image in, text out.",
        context=128000,
        inputs=["text", "image"],
        outputs=["text"],
        tokenizer="GPT",
        pricing={"prompt": "0.0000025", "completion": "0.00001", "input_cache_read": "0.00000125"},
        max_completion=16384,
        params=[*_BASE_PARAMS, "tools", "tool_choice", "response_format"],
        endpoints=_CHAT_ENDPOINTS,
    ),
    _model(
        id="openai/gpt-4o-mini",
        created=1721260800,
        owned_by="openai",
        slug="gpt-4o-mini-2024-07-18",
        name="OpenAI: GPT-4o-mini",
        description="GPT-4o mini, a small, fast and cheap multimodal model.",
        context=128000,
        inputs=["text", "image"],
        outputs=["text"],
        tokenizer="GPT",
        pricing={"prompt": "0.00000015", "completion": "0.0000006"},
        max_completion=16384,
        params=[*_BASE_PARAMS, "tools", "tool_choice", "response_format"],
        endpoints=_CHAT_ENDPOINTS,
    ),
    _model(
        id="anthropic/claude-sonnet-4.5",
        created=1759104000,
        owned_by="bedrock",
        slug="claude-sonnet-4-5-20250929",
        name="Anthropic: Claude Sonnet 4.5",
        description="Claude Sonnet 4.5, Anthropic's model for coding, agents and long tasks.",
        context=200000,
        inputs=["text", "image", "file"],
        outputs=["text"],
        tokenizer="claude",
        pricing={
            "prompt": "0.000003",
            "completion": "0.000015",
            "input_cache_read": "0.0000003",
            "input_cache_write_5m": "0.00000375",
            "input_cache_write_1h": "0.000006",
        },
        max_completion=16384,
        params=[
            "temperature",
            "top_p",
            "max_tokens",
            "stop",
            "tools",
            "tool_choice",
            "response_format",
            "reasoning",
        ],
        endpoints=_CHAT_ENDPOINTS,
    ),
    _model(
        id="google/gemini-2.5-flash",
        created=1750118400,
        owned_by="vertex",
        slug="gemini-2.5-flash",
        name="Google: Gemini 2.5 Flash",
        description="Gemini 2.5 Flash, Google's fast multimodal model with a 1M-token context.",
        context=1048576,
        inputs=["text", "image", "audio", "file"],
        outputs=["text"],
        tokenizer="Gemini",
        pricing={"prompt": "0.0000003", "completion": "0.0000025"},
        max_completion=65535,
        params=[*_BASE_PARAMS, "tools", "tool_choice", "response_format"],
        endpoints=_CHAT_ENDPOINTS,
    ),
    _model(
        id="deepseek/deepseek-v3.2",
        created=1759190400,
        owned_by="deepseek",
        slug="deepseek-v3.2",
        name="DeepSeek: DeepSeek V3.2",
        description="DeepSeek V3.2, a text-only chat model (no image input).",
        context=128000,
        inputs=["text"],
        outputs=["text"],
        tokenizer="DeepSeek",
        pricing={"prompt": "0.00000028", "completion": "0.00000042"},
        max_completion=8192,
        params=[*_BASE_PARAMS, "tools", "tool_choice", "response_format"],
        endpoints=_CHAT_ENDPOINTS,
    ),
    _model(
        id="deepseek/deepseek-v4-pro",
        created=1776643200,
        owned_by="deepseek",
        slug="deepseek-v4-pro",
        name="DeepSeek: DeepSeek V4 Pro",
        description="DeepSeek V4 Pro, a text-only reasoning model that thinks before it answers.",
        context=128000,
        inputs=["text"],
        outputs=["text"],
        tokenizer="DeepSeek",
        pricing={"prompt": "0.0000005", "completion": "0.000002"},
        max_completion=32768,
        params=[*_BASE_PARAMS, "tools", "tool_choice", "response_format", "reasoning"],
        endpoints=_CHAT_ENDPOINTS,
    ),
    _model(
        id="openai/text-embedding-3-small",
        created=1705953600,
        owned_by="openai",
        slug="text-embedding-3-small",
        name="OpenAI: Text Embedding 3 Small",
        description="An embedding model (1536 dimensions); not a chat model.",
        context=0,
        inputs=["text"],
        outputs=["embeddings"],
        tokenizer="GPT",
        pricing={"prompt": "0.00000002", "completion": "0"},
        max_completion=None,
        params=[],
        endpoints=["/v1/embeddings"],
    ),
    _model(
        id="openai/gpt-4-turbo",
        created=1712620800,
        owned_by="openai",
        slug="gpt-4-turbo-2024-04-09",
        name="OpenAI: GPT-4 Turbo",
        description="GPT-4 Turbo, retired: requests fail with 503 model_unavailable.",
        context=128000,
        inputs=["text", "image"],
        outputs=["text"],
        tokenizer="GPT",
        pricing={"prompt": "0.00001", "completion": "0.00003"},
        max_completion=4096,
        params=[*_BASE_PARAMS, "tools", "tool_choice", "response_format"],
        endpoints=_CHAT_ENDPOINTS,
        expiration_date="2026-01-01",
        deprecated=True,
    ),
)

_BY_ID = {entry["id"]: entry for entry in _CATALOG}


def catalog() -> list[dict[str, Any]]:
    """Every model object, as fresh dicts in catalog order."""
    return copy.deepcopy(list(_CATALOG))


def find_model(model_id: str) -> dict[str, Any] | None:
    """A fresh copy of one model object, or ``None`` for an unknown id."""
    entry = _BY_ID.get(model_id)
    return copy.deepcopy(entry) if entry is not None else None


def is_chat_model(model: dict[str, Any]) -> bool:
    """Whether the model serves ``/v1/chat/completions``."""
    return "/v1/chat/completions" in model["supported_endpoints"]


def is_retired(model: dict[str, Any]) -> bool:
    """Whether the model is retired (deprecated with a past expiration date)."""
    return bool(model["is_deprecated"])


def accepts_images(model: dict[str, Any]) -> bool:
    """Whether ``architecture.input_modalities`` contains ``"image"``."""
    return "image" in model["architecture"]["input_modalities"]
