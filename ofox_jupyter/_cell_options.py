"""The options of a ``%%ofox`` cell, checked before anything is sent: each bad one is one line
(IPython's ``UsageError``, see :func:`fail`), never a traceback."""

from __future__ import annotations

import keyword
import os
from collections import ChainMap
from typing import TYPE_CHECKING, Any

from IPython.core.error import UsageError

from ._exceptions import ImageError, OfoxError, ToolError
from ._messages import utf8_safe
from ._request import check_ranges, provider_options
from ._session import AskOptions
from ._template import interpolate

if TYPE_CHECKING:
    from ._images import PreparedImage
    from ._magics import OfoxMagics
    from ._tools import ToolRegistry

__all__ = ["DETAILS", "ask_options", "fail", "function_named"]

DETAILS = ("auto", "low", "high")  # as in _images, which is not imported until an image is sent


def ask_options(
    magics: OfoxMagics, args: Any, cell: str
) -> tuple[AskOptions, str, list[PreparedImage]]:
    """Check every option before anything is sent; a bad one is a one-line UsageError."""
    prompt = cell.strip("\n")
    if not prompt.strip():
        raise fail("the cell is empty: write your prompt below %%ofox")
    if args.out is not None and (not args.out.isidentifier() or keyword.iskeyword(args.out)):
        raise fail(f"-o needs a variable name, not {args.out!r}")
    if not args.chat or not args.chat.strip():
        raise fail("--chat needs a name")
    ns = magics.shell.user_ns if magics.shell is not None else {}
    try:
        if args.vars or args.context is not None:
            # The client holds the key as a live secret from here on, so that what a value
            # brings in is scrubbed before it is cut to its budget (a cut key would keep its
            # first characters).
            magics.session.client  # noqa: B018
        if args.vars:
            from ._assist import raw_inputs

            # {In[n]} is the cell as typed, not as IPython translated it.
            raw = raw_inputs(magics.shell) if magics.shell is not None else None
            names = ChainMap({"In": raw}, ns) if raw is not None else ns
            prompt = utf8_safe(interpolate(prompt, names, {"Err": lambda: _last_error(magics)}))
        if args.context is not None and magics.shell is not None:
            from ._assist import recent_cells

            context = recent_cells(magics.shell, args.context)
            if context:
                prompt = utf8_safe(f"{context}\n\nMy question:\n\n{prompt}")
        fallback = [m for m in (args.fallback or "").split(",") if m.strip()]
        params: dict[str, Any] = {
            "temperature": args.temperature,
            "max_tokens": args.max_tokens,
            "top_p": args.top_p,
            "frequency_penalty": args.frequency_penalty,
            "presence_penalty": args.presence_penalty,
            "provider": provider_options(args.routing, fallback),
            "stop": args.stop,
            "seed": args.seed,
        }
        params = {k: v for k, v in params.items() if v is not None}
        check_ranges(params)  # the same checks the client applies, before anything is sent
        images = [_image(magics, name, args.detail) for name in args.image]
        if images:
            magics.session.check_vision(args.model or str(magics.model))
        tools, tool_choice = _tools(args.tools, args.tool_choice, ns, args.chat.strip())
        response_format = _response_format(args.json, args.schema, ns)
    except OfoxError as err:
        raise fail(err) from None
    if response_format is not None:
        params["response_format"] = response_format
        if "json" not in prompt.lower():
            # OpenAI-family models refuse JSON mode unless the messages mention JSON.
            prompt += "\n\n(Reply in JSON.)"
    options = AskOptions(
        model=args.model or str(magics.model),
        chat=args.chat.strip(),
        system=args.system,
        new=args.new,
        history=not args.no_history,
        stream=not args.no_stream,
        cell_id=magics._cell_id,
        images=tuple(image.part for image in images),
        params=params,
        tools=tools,
        tool_choice=tool_choice,
        max_tool_rounds=magics.max_tool_rounds,
        expect_json=response_format is not None,
    )
    return options, prompt, images


def _tools(
    names: str | None, choice: str | None, ns: dict[str, Any], chat: str
) -> tuple[ToolRegistry | None, str | None]:
    """The chat's standing tools (``%ofox tools add``, ``@tool``) and ``--tools a,b``; only
    these can be called. ``--tool-choice`` checked."""
    from ._tools import Tool, ToolRegistry, standing_tools

    functions = standing_tools(chat)
    for name in (n.strip() for n in (names or "").split(",") if n.strip()):
        spec = Tool.from_function(function_named(ns, name, "--tools"))
        functions[spec.name] = spec.function  # named in the cell: that definition wins
    if choice is not None and not functions:
        raise ToolError("--tool-choice needs --tools (or tools added with %ofox tools add)")
    if not functions:
        return None, None
    registry = ToolRegistry(functions.values())
    if choice is not None and choice not in ("auto", "none", "required", *registry.tools):
        raise ToolError(
            f"--tool-choice {choice!r} is not auto, none, required or one of the --tools"
        )
    return registry, choice


def _response_format(
    json_mode: bool, schema_name: str | None, ns: dict[str, Any]
) -> dict[str, Any] | None:
    if json_mode and schema_name:
        raise OfoxError("use --json or --schema, not both")
    if json_mode:
        return {"type": "json_object"}
    if schema_name is None:
        return None
    schema = ns.get(schema_name)
    if not isinstance(schema, dict):
        what = "nothing" if schema_name not in ns else f"a {type(schema).__name__}"
        raise OfoxError(
            f"--schema {schema_name}: expected a JSON-schema dict, found {what}",
            hint='e.g. schema = {"type": "object", "properties": {...}}',
        )
    return {
        "type": "json_schema",
        # Strict mode is only valid for schemas that follow its rules (OpenAI answers 400
        # otherwise); any other schema is still sent, as a non-strict guide.
        "json_schema": {"name": schema_name, "schema": schema, "strict": _strict_ok(schema)},
    }


def _image(magics: OfoxMagics, name: str, detail: str | None) -> PreparedImage:
    """``--image NAME``: a variable, ``last``, or (as a convenience) a literal URL or path."""
    from ._images import prepare_image  # Pillow is imported only when an image is sent

    ns = magics.shell.user_ns if magics.shell is not None else {}
    if name == "last" and "last" not in ns:
        data = magics.recent.last()
        if data is None:
            raise ImageError(
                "--image last: no image has been displayed in this kernel yet",
                hint="plot or display an image first, or name a variable",
            )
        return prepare_image(data, detail, name="last")
    if name in ns:
        return prepare_image(ns[name], detail, name=name)
    if name.startswith("data:"):
        return prepare_image(name, detail, name="the data: URL")
    if name.startswith(("http://", "https://")) or _looks_like_path(name):
        return prepare_image(name, detail, name=os.path.basename(name) or name)
    raise ImageError(
        f"--image: no variable named {name!r}",
        hint="assign the image to a variable first, or use --image last",
    )


def _last_error(magics: OfoxMagics) -> str:
    """``{Err}``: the last error of this kernel, as ``%ofox explain`` sends it."""
    from ._assist import last_error_report

    if magics.shell is None:
        raise OfoxError("{Err} needs IPython")
    return last_error_report(magics.shell, magics.last_error)


def fail(error: OfoxError | str) -> UsageError:
    """IPython shows exactly ``UsageError`` (not a subclass) as one line without a traceback;
    a message that quotes something multi-line (a value, a server's text) is flattened."""
    text = error.one_line() if isinstance(error, OfoxError) else error
    return UsageError(" ".join(text.split()) if "\n" in text or "\r" in text else text)


def function_named(ns: dict[str, Any], name: str, where: str) -> Any:
    """The notebook's function ``name``, or one line saying why there is none."""
    if name not in ns:
        raise ToolError(f"{where}: no function named {name!r}", hint="define it first")
    if not callable(ns[name]):
        raise ToolError(f"{where}: {name!r} is a {type(ns[name]).__name__}, not a function")
    return ns[name]


def _looks_like_path(name: str) -> bool:
    """``-i`` with a word that is no variable: a path when it says so (a folder, an image file
    ending), so that a missing file is reported as one, not as an unknown variable."""
    return (
        "/" in name
        or os.sep in name
        or name.startswith("~")
        or name.lower().endswith(
            (".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp", ".tif", ".tiff")
        )
    )


def _strict_ok(schema: Any, depth: int = 0) -> bool:
    """Whether a JSON schema meets structured-output strict mode: every object closes its
    properties (``additionalProperties: false``) and requires all of them."""
    if depth > 64:
        return False  # a cycle, or nesting no model's strict mode takes: send it as a guide
    if isinstance(schema, list):
        return all(_strict_ok(item, depth + 1) for item in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        properties = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(properties):
            return False
    return all(_strict_ok(v, depth + 1) for k, v in schema.items() if k not in ("required", "enum"))
