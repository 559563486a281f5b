"""OfoxAI chat in Jupyter.

``%load_ext ofox_jupyter`` must stay cheap, so this module imports nothing heavy: the public names
below are looked up lazily (PEP 562) from the private modules that define them, the first time
they are used. ``httpx`` is only imported with the client, Pillow only with images, ipywidgets
only with a widget.

    >>> import ofox_jupyter
    >>> client = ofox_jupyter.Client()          # no key: the offline emulator
    >>> client.chat("Hello").text               # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from ._batch import abatch, batch
    from ._batch_results import BatchPlan, BatchResult, ItemResult
    from ._catalog import ModelInfo
    from ._client import AsyncChatStream, AsyncClient, ChatStream, Client
    from ._config import Secret, Timeouts
    from ._exceptions import (
        APIConnectionError,
        APIError,
        APIStatusError,
        APITimeoutError,
        AuthenticationError,
        BadRequestError,
        ConfigError,
        ImageError,
        NotFoundError,
        OfoxError,
        PermissionDeniedError,
        RateLimitError,
        RequestValidationError,
        ServerError,
        StreamError,
        ToolArgumentsError,
        ToolError,
        UnknownToolError,
    )
    from ._extension import load_ipython_extension, unload_ipython_extension
    from ._messages import Message, ToolCall, assistant, system, tool_result, user
    from ._request import provider_options
    from ._streaming import (
        FinishEvent,
        ReasoningDelta,
        Reply,
        StreamEvent,
        TextDelta,
        ToolCallDelta,
        Usage,
        UsageEvent,
    )
    from ._tool_loop import ToolRun
    from ._tools import Tool, ToolRegistry, ToolResult, tool
    from ._widgets import ChatWidget, CompareWidget

# public name -> private module that defines it
_EXPORTS: dict[str, str] = {
    "APIConnectionError": "_exceptions",
    "APIError": "_exceptions",
    "APIStatusError": "_exceptions",
    "APITimeoutError": "_exceptions",
    "abatch": "_batch",
    "AsyncChatStream": "_client",
    "AsyncClient": "_client",
    "AuthenticationError": "_exceptions",
    "BadRequestError": "_exceptions",
    "batch": "_batch",
    "BatchPlan": "_batch_results",
    "BatchResult": "_batch_results",
    "ChatStream": "_client",
    "ChatWidget": "_widgets",
    "CompareWidget": "_widgets",
    "Client": "_client",
    "ConfigError": "_exceptions",
    "FinishEvent": "_streaming",
    "ImageError": "_exceptions",
    "ItemResult": "_batch_results",
    "Message": "_messages",
    "ModelInfo": "_catalog",
    "NotFoundError": "_exceptions",
    "OfoxError": "_exceptions",
    "PermissionDeniedError": "_exceptions",
    "RateLimitError": "_exceptions",
    "ReasoningDelta": "_streaming",
    "Reply": "_streaming",
    "RequestValidationError": "_exceptions",
    "Secret": "_config",
    "ServerError": "_exceptions",
    "StreamError": "_exceptions",
    "StreamEvent": "_streaming",
    "TextDelta": "_streaming",
    "Timeouts": "_config",
    "ToolArgumentsError": "_exceptions",
    "ToolCall": "_messages",
    "ToolCallDelta": "_streaming",
    "ToolError": "_exceptions",
    "UnknownToolError": "_exceptions",
    "Usage": "_streaming",
    "UsageEvent": "_streaming",
    "assistant": "_messages",
    "load_ipython_extension": "_extension",
    "unload_ipython_extension": "_extension",
    "provider_options": "_request",
    "system": "_messages",
    "tool": "_tools",
    "Tool": "_tools",
    "ToolRegistry": "_tools",
    "ToolResult": "_tools",
    "ToolRun": "_tool_loop",
    "tool_result": "_messages",
    "user": "_messages",
}

__all__ = [
    "__version__",
    "abatch",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "assistant",
    "AsyncChatStream",
    "AsyncClient",
    "AuthenticationError",
    "BadRequestError",
    "batch",
    "BatchPlan",
    "BatchResult",
    "ChatStream",
    "ChatWidget",
    "Client",
    "CompareWidget",
    "ConfigError",
    "FinishEvent",
    "ImageError",
    "ItemResult",
    "load_ipython_extension",
    "Message",
    "ModelInfo",
    "NotFoundError",
    "OfoxError",
    "PermissionDeniedError",
    "provider_options",
    "RateLimitError",
    "ReasoningDelta",
    "Reply",
    "RequestValidationError",
    "Secret",
    "ServerError",
    "StreamError",
    "StreamEvent",
    "system",
    "TextDelta",
    "Timeouts",
    "Tool",
    "tool",
    "tool_result",
    "ToolArgumentsError",
    "ToolCall",
    "ToolCallDelta",
    "ToolError",
    "ToolRegistry",
    "ToolResult",
    "ToolRun",
    "UnknownToolError",
    "unload_ipython_extension",
    "Usage",
    "UsageEvent",
    "user",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'ofox_jupyter' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
