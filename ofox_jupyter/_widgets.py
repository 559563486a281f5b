"""Chat and comparison panels (ipywidgets), views over the notebook's :class:`NotebookSession`.

Both stream as asyncio tasks on the kernel's own event loop through the async client: while a
reply streams, the kernel keeps handling messages — so a click on Stop arrives mid-stream and
cancels the task, and the partial reply is kept and marked, as a kernel interrupt does for the
magic. The chat panel reads and writes the same named chats as ``%%ofox``; the comparison panel
asks one prompt of several models or temperatures at once and records each column as a turn of
the ``compare`` chat (as ``%ofox compare "prompt"`` does, ``_compare.py``).

The chat's log is a box of ``Output`` widgets: one for the history the panel opened with, then
one per message sent or received. A streamed update sets the reply's own ``Output`` only, so it
costs bytes of that reply, never of the whole conversation (a widget trait is always sent
whole); and the reply is re-sent no more often than :class:`UpdateThrottle` finds worth its
bytes, so all of a reply's updates together stay a small multiple of it.

The chat's input box is a small anywidget (:class:`ChatInput`): ipywidgets' ``Textarea`` has no
key events, and Enter sends, Shift+Enter starts a new line.

ipywidgets and anywidget are imported here only, and this module only when a widget is created.

CSS classes on each part (stable, for styling and for browser tests): ``ofox-chat`` with
``ofox-model``, ``ofox-chat-log`` (holding ``ofox-chat-history`` and one ``ofox-chat-message``
per message), ``ofox-chat-input``, ``ofox-chat-controls`` (``ofox-send``, ``ofox-stop``,
``ofox-attach-last``, ``ofox-upload``), ``ofox-chat-footer``; ``ofox-compare`` with
``ofox-compare-prompt``, ``ofox-compare-run``, ``ofox-compare-stop``, ``ofox-compare-column``,
``ofox-compare-output``, ``ofox-compare-footer``.
"""

from __future__ import annotations

import asyncio
import html
import time
from collections.abc import Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import anywidget
import ipywidgets as widgets
import traitlets

from ._compare import COMPARE_CHAT, grid_markdown, plain_columns
from ._display import LiveReply
from ._exceptions import OfoxError
from ._markdown import protect_currency, quoted
from ._render import footer_parts, render_replies
from ._session import AskOptions, Exchange, Interrupted
from ._throttle import UpdateThrottle
from ._transcript import chat_transcript, columns_transcript, wrap_transcript

if TYPE_CHECKING:
    from ._images import PreparedImage
    from ._magics import OfoxMagics

__all__ = ["ChatInput", "ChatWidget", "CompareWidget"]

STOPPED_LINE = "■ stopped — partial reply kept"
INPUT_PLACEHOLDER = "Ask something… Enter to send, Shift+Enter for a new line"

#: The input box in the browser. The box is emptied before the message goes to the kernel (the
#: state update first, then the message: the kernel handles them in that order), so a kernel that
#: cannot take the message (a reply still streaming) can give the text back. Keys typed here stop
#: at the box: JupyterLab's shortcuts (Shift+Enter runs the cell, Escape leaves the cell…) must
#: not act on them, as ipywidgets' own text boxes do.
_INPUT_ESM = """
export default {
  render({ model, el }) {
    const box = document.createElement("textarea");
    box.rows = 3;
    box.value = model.get("value");
    box.placeholder = model.get("placeholder");
    box.setAttribute("aria-label", "Message");
    // The value follows every keystroke, so that a click on Send (a message that the kernel
    // handles after this one) sends what the box shows.
    box.addEventListener("input", () => {
      model.set("value", box.value);
      model.save_changes();
    });
    box.addEventListener("keydown", (event) => {
      event.stopPropagation();
      // keyCode 229: a key that an input method (IME) is still composing, in older browsers.
      if (event.key !== "Enter" || event.shiftKey || event.isComposing || event.keyCode === 229) {
        return;  // other keys, and Shift+Enter: what a textarea does (a newline)
      }
      event.preventDefault();
      const text = box.value;
      if (!text.trim()) {
        return;
      }
      box.value = "";
      model.set("value", "");
      model.save_changes();
      model.send({ event: "submit", text });
    });
    const showValue = () => {
      const value = model.get("value");
      if (box.value !== value) {
        box.value = value;
      }
    };
    const showPlaceholder = () => {
      box.placeholder = model.get("placeholder");
    };
    model.on("change:value", showValue);
    model.on("change:placeholder", showPlaceholder);
    el.appendChild(box);
    return () => {
      model.off("change:value", showValue);
      model.off("change:placeholder", showPlaceholder);
    };
  },
};
"""
#: ipywidgets' look (its CSS variables), as wide as the panel and no wider: ipywidgets' Textarea
#: had ``width: 100%`` plus its 2px margins, 4px wider than the panel (a horizontal scrollbar).
#: So the box stretches to the panel minus its margins, and the textarea fills it, border and
#: padding included (border-box).
_INPUT_CSS = """
.ofox-chat .ofox-chat-input {
  box-sizing: border-box;
  align-self: stretch;
  width: auto;
  min-width: 0;
  margin: var(--jp-widgets-margin, 2px);
}
.ofox-chat .ofox-chat-input textarea {
  box-sizing: border-box;
  display: block;
  width: 100%;
  min-height: 72px;
  margin: 0;
  resize: vertical;
  font-family: var(--jp-ui-font-family);
  font-size: var(--jp-widgets-font-size, 13px);
  color: var(--jp-widgets-input-color, inherit);
  background: var(--jp-widgets-input-background-color, inherit);
  border: var(--jp-widgets-border-width, 1px) solid var(--jp-widgets-input-border-color, #9e9e9e);
  padding: var(--jp-widgets-input-padding, 4px) calc(var(--jp-widgets-input-padding, 4px) * 2);
}
.ofox-chat .ofox-chat-input textarea:focus {
  border-color: var(--jp-widgets-input-focus-border-color, #64b5f6);
  outline: none;
}
"""


def _magics() -> OfoxMagics:
    """The notebook's OfoxMagics (loading the extension if need be): one session for all."""
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None:
        raise OfoxError("the ofox widgets need IPython or Jupyter")
    magics = shell.magics_manager.registry.get("OfoxMagics")
    if magics is None:
        shell.extension_manager.load_extension("ofox_jupyter")
        magics = shell.magics_manager.registry["OfoxMagics"]
    return magics  # type: ignore[no-any-return]


def _markdown(text: str) -> dict[str, Any]:
    return {"output_type": "display_data", "data": {"text/markdown": text}, "metadata": {}}


def _start(coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
    """Run ``coroutine`` as a task on the running loop (the kernel's, in Jupyter)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    return loop.create_task(coroutine)


def _last_figure(magics: OfoxMagics) -> PreparedImage:
    """The image this kernel displayed most recently, ready to send."""
    from ._images import prepare_image

    data = magics.recent.last()
    if data is None:
        raise OfoxError("no figure has been displayed yet", hint="plot something first")
    return prepare_image(data, name="last figure")


def _chat_models(magics: OfoxMagics, default: str) -> list[str]:
    try:
        catalog = magics.session.catalog()
    except OfoxError:
        catalog = {}
    models = sorted(m.id for m in catalog.values() if m.is_chat and not m.deprecated)
    return models if default in models else [default, *models]


class _Streaming:
    """The one streaming task a panel owns: is it running, stop it, wait for it."""

    task: asyncio.Task[None] | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None and not self.task.done()

    def stop(self) -> None:
        """Stop streaming now; partial replies stay, marked."""
        if self.task is not None and not self.task.done():
            self.task.cancel()

    async def wait(self) -> None:
        """Wait until the current stream (if any) has finished or stopped."""
        if self.task is not None:
            await asyncio.wait([self.task])


class _Transcribed:
    """A panel that leaves a plain copy of its content below itself (``_transcript.py``), kept
    up to date through its display id, so the saved notebook stays readable without the
    kernel."""

    _transcripts: list[Any]

    def _transcript(self) -> dict[str, str]:
        raise NotImplementedError

    def _ipython_display_(self) -> None:
        from IPython.display import display

        bundle = self._repr_mimebundle_()  # type: ignore[attr-defined]  # ipywidgets.Widget's
        display(bundle, raw=True)
        handle = display(self._transcript(), raw=True, display_id=True)
        if handle is not None:
            self._transcripts.append(handle)

    def _refresh_transcript(self) -> None:
        if self._transcripts:
            bundle = self._transcript()
            for handle in self._transcripts:
                handle.update(bundle, raw=True)


class ChatInput(anywidget.AnyWidget):
    """The chat's input box: Enter sends (a ``submit`` message to the kernel carrying the text,
    and the box empties), Shift+Enter starts a new line. ``value`` follows the box as it is
    typed into, and setting it from Python shows in the box."""

    _esm = _INPUT_ESM
    _css = _INPUT_CSS
    value = traitlets.Unicode("").tag(sync=True)
    placeholder = traitlets.Unicode(INPUT_PLACEHOLDER).tag(sync=True)


class _LiveMessage:
    """One reply's ``Output`` while it streams. Each update re-sends the reply's whole text (an
    ``Output``'s outputs are one trait), so :class:`UpdateThrottle` decides when the newest text
    is worth its bytes — updates thin out as the reply grows, and all of them together stay a
    small multiple of the reply — and text held back is shown once it has waited ``max_gap``
    (within the throttle's budget)."""

    def __init__(self, output: widgets.Output) -> None:
        self.output = output
        self._throttle: UpdateThrottle | None = None  # None: not paced yet (the status line)
        self._pending: str | None = None
        self._shown_at = 0.0
        self._flush: asyncio.TimerHandle | None = None

    def show(self, text: str) -> None:
        """Show ``text`` now (the status line, the final reply); nothing held back stays."""
        self.close()
        self.output.outputs = (_markdown(text),)

    def pace(self) -> None:
        """From now on the reply's text arrives: pace it (its first text is shown at once)."""
        self._throttle = UpdateThrottle()

    def stream(self, bundle: dict[str, str]) -> None:
        """``LiveReply``'s sink: the reply so far, shown now or a little later."""
        text = bundle.get("text/markdown") or bundle.get("text/plain", "")
        if self._throttle is None:
            self.show(text)
            return
        now = time.monotonic()
        self._pending = text
        if self._throttle.due(now, len(text), len(text)):
            self._put(now)
        elif self._flush is None:
            # Held back: shown once it has waited max_gap even if no chunk follows (a model
            # pausing). The sink runs in the stream's task, so this is the loop's thread.
            wait = max(0.0, self._shown_at + self._throttle.max_gap - now) + 0.01
            self._flush = asyncio.get_running_loop().call_later(wait, self._flush_pending)

    def close(self) -> None:
        """Drop text held back (the final render follows, or the stream is over)."""
        self._pending = None
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None

    def _flush_pending(self) -> None:
        self._flush = None
        if self._pending is None or self._throttle is None:
            return
        size = len(self._pending)
        # Over budget, the text waits for the next chunk (or the final render) to bring it.
        now = time.monotonic()
        if self._throttle.overdue(now, size, size):
            self._put(now)

    def _put(self, now: float) -> None:
        assert self._throttle is not None and self._pending is not None
        text, self._pending = self._pending, None
        self._throttle.mark(now, len(text))
        self._throttle.spent(len(text))
        self._shown_at = now
        self.output.outputs = (_markdown(text),)


class ChatWidget(_Transcribed, _Streaming, widgets.VBox):  # type: ignore[misc]
    """A chat panel: conversation, input, Send and Stop, model picker, images, usage.

    >>> ChatWidget(chat="main")          # or: %ofox chat
    """

    def __init__(self, chat: str = "main", model: str | None = None, **kwargs: Any) -> None:
        self._magics = _magics()
        self.chat = chat
        default = model or str(self._magics.model)
        self.model = widgets.Dropdown(
            options=_chat_models(self._magics, default), value=default, description="Model"
        )
        #: The messages, oldest first: the history the panel opened with, then one Output per
        #: message. A box of its own inside the log, because the log lays its one child out in
        #: reverse (column-reverse), which keeps a scrolling log at its newest message.
        self.messages = widgets.VBox(layout=widgets.Layout(flex="0 0 auto"))
        self.view = widgets.Box(
            [self.messages],
            layout=widgets.Layout(max_height="480px", overflow="auto", flex_flow="column-reverse"),
        )
        self._history = widgets.Output()
        self.input = ChatInput()
        self.send_button = widgets.Button(
            description="Send", button_style="primary", icon="paper-plane"
        )
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.attach_last = widgets.ToggleButton(description="attach last figure", icon="image")
        self.upload = widgets.FileUpload(accept="image/*", multiple=True, description="Images")
        self.footer = widgets.HTML()
        # The buttons wrap onto a second row in a narrow panel rather than overflow it.
        controls = widgets.HBox(
            [self.send_button, self.stop_button, self.attach_last, self.upload],
            layout=widgets.Layout(flex_flow="row wrap"),
        )
        for part, name in (
            (self.model, "ofox-model"),
            (self.view, "ofox-chat-log"),
            (self._history, "ofox-chat-history"),
            (self.input, "ofox-chat-input"),
            (controls, "ofox-chat-controls"),
            (self.send_button, "ofox-send"),
            (self.stop_button, "ofox-stop"),
            (self.attach_last, "ofox-attach-last"),
            (self.upload, "ofox-upload"),
            (self.footer, "ofox-chat-footer"),
        ):
            part.add_class(name)
        self.send_button.on_click(lambda _: self.send())
        self.stop_button.on_click(lambda _: self.stop())
        self.input.on_msg(self._on_input_message)
        super().__init__([self.model, self.view, self.input, controls, self.footer], **kwargs)
        self.add_class("ofox-chat")
        self.task = None
        self.last_exchange: Exchange | None = None
        self._transcripts = []
        self._show_history()

    def __repr__(self) -> str:
        return f"<ofox ChatWidget chat={self.chat!r}>"

    def _transcript(self) -> dict[str, str]:
        return chat_transcript(self._magics.session.chats.get(self.chat), self.chat)

    # -- the conversation view

    def _show_history(self) -> None:
        """The log starts with the chat's turns so far: one Output, set once, never re-sent."""
        conversation = self._magics.session.chats.get(self.chat)
        outputs = []
        for turn in conversation.turns if conversation else ():
            outputs.append(_markdown(self._user_markdown(turn.user.text, len(turn.user.images))))
            text = protect_currency(turn.text)
            text += f"\n\n*{turn.status}*" if turn.status != "complete" else ""
            outputs.append(_markdown(text or "*(no text)*"))
        self._history.outputs = tuple(outputs)
        self.messages.children = (self._history,)
        self.footer.value = f"chat <b>{html.escape(self.chat)}</b> · {len(outputs) // 2} turns"

    @staticmethod
    def _user_markdown(text: str, images: int) -> str:
        attached = f" *(+{images} image{'s' * (images != 1)})*" if images else ""
        return f"**You**{attached}\n\n{quoted(text)}"

    @staticmethod
    def _message(text: str) -> widgets.Output:
        output = widgets.Output()
        output.add_class("ofox-chat-message")
        output.outputs = (_markdown(text),)
        return output

    # -- sending and stopping

    def send(self, text: str | None = None) -> None:
        """Send the input box's text (or ``text``) and stream the reply; ``await w.wait()``
        waits for it (``w.task`` is the task). Returns nothing, so that a cell ending in
        ``w.send("…")`` shows no task repr."""
        self._start_reply(text)
        return None

    def _on_input_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """Enter in the input box: the browser has emptied the box and sends its text."""
        if not isinstance(content, dict) or content.get("event") != "submit":
            return
        text = content.get("text")
        if isinstance(text, str) and not self._start_reply(text) and not self.input.value:
            # Not sent (a reply is still streaming, or the images failed: the footer says why):
            # the text goes back into the box rather than being lost.
            self.input.value = text

    def _start_reply(self, text: str | None) -> bool:
        """:meth:`send`; whether a reply was started."""
        prompt = (self.input.value if text is None else text).strip()
        if not prompt or self.busy:
            return False
        try:
            images = self._images()
            if images:
                self._magics.session.check_vision(str(self.model.value))
        except OfoxError as err:
            self._error(err)
            return False
        self.input.value = ""
        self.attach_last.value = False
        self.upload.value = ()
        options = AskOptions(
            model=str(self.model.value), chat=self.chat, images=tuple(i.part for i in images)
        )
        reply = self._message("…")
        # Two children more: the update names the log's children, never their contents.
        self.messages.children = (
            *self.messages.children,
            self._message(self._user_markdown(prompt, len(images))),
            reply,
        )
        # Buttons change now, not when the task first runs: a click must never find them stale.
        self.send_button.disabled, self.stop_button.disabled = True, False
        self.footer.value = "streaming…"
        self.task = _start(self._stream(prompt, options, _LiveMessage(reply)))
        return True

    def _images(self) -> list[PreparedImage]:
        from ._images import prepare_image

        images = [_last_figure(self._magics)] if self.attach_last.value else []
        for item in self.upload.value or ():
            images.append(prepare_image(bytes(item["content"]), name=str(item["name"])))
        return images

    async def _stream(self, prompt: str, options: AskOptions, reply: _LiveMessage) -> None:
        live = LiveReply(options.model, sink=reply.stream, tick_seconds=0)
        live.start()  # its status line, shown at once
        reply.pace()
        try:
            exchange = await self._magics.session.ask_async(prompt, options, live)
        except Interrupted as stop:
            if stop.exchange is not None and stop.exchange.reply.text:
                self.last_exchange = stop.exchange
                text = render_replies(stop.exchange)
                reply.show(f"{text}\n\n{STOPPED_LINE}")
            else:
                reply.show(f"*{STOPPED_LINE}*")
            self.footer.value = ""  # the log says "stopped — partial reply kept" once
        except OfoxError as err:
            reply.show("*(no reply)*")
            self._error(err)
        else:
            self.last_exchange = exchange
            # Not live.finish(): with a sink it only hands over its final render, footer
            # included. The footer goes under the panel, once; the log holds the reply alone.
            reply.show(render_replies(exchange) or "*(no text)*")
            facts, warnings = footer_parts(exchange)
            self.footer.value = html.escape(" · ".join(facts + [f"⚠ {w}" for w in warnings]))
            if exchange.error is not None:
                self._error(exchange.error)
        finally:
            reply.close()  # nothing held back may show after the final render
            self.send_button.disabled, self.stop_button.disabled = False, True
            self._store_notices()
            self._refresh_transcript()

    def _store_notices(self) -> None:
        """What the history store said during the exchange (it could not save, a re-created
        file), under the footer: the reply itself is never lost to the store."""
        session = self._magics.session
        if session.notices:
            lines = "<br>".join(html.escape(n) for n in session.notices)
            session.notices.clear()
            self.footer.value += f'<br><span style="color:#b00">{lines}</span>'

    def _error(self, err: OfoxError) -> None:
        self.footer.value = f'<span style="color:#b00">⚠ {html.escape(err.one_line())}</span>'


class _Column:
    """One model-and-temperature column of the comparison."""

    def __init__(self, model: str, temperature: float | None) -> None:
        self.model = model
        self.temperature = temperature
        label = model if temperature is None else f"{model} · t={temperature:g}"
        self.title = widgets.HTML(f"<b>{html.escape(label)}</b>")
        self.output = widgets.Output(layout=widgets.Layout(min_height="120px"))
        self.footer = widgets.HTML()
        self.output.add_class("ofox-compare-output")
        self.footer.add_class("ofox-compare-footer")
        self.box = widgets.VBox(
            [self.title, self.output, self.footer],
            layout=widgets.Layout(flex="1 1 0", min_width="220px", margin="0 8px 0 0"),
        )
        self.box.add_class("ofox-compare-column")
        self.label = label
        self.exchange: Exchange | None = None
        self.text = ""  # what the column shows now (Markdown)
        self.footer_text = ""

    def set_footer(self, text: str) -> None:
        """The footer, kept as plain text too (for the panel's plain copy)."""
        self.footer_text = text
        self.footer.value = html.escape(text)

    def show(self, bundle: dict[str, str]) -> None:
        self.text = bundle.get("text/markdown") or bundle.get("text/plain", "")
        self.output.outputs = (_markdown(self.text),)


class CompareWidget(_Transcribed, _Streaming, widgets.VBox):  # type: ignore[misc]
    """One prompt, several models or temperatures side by side, all streaming at once.

    >>> CompareWidget(models=["openai/gpt-4o", "anthropic/claude-sonnet-4.5"])
    >>> CompareWidget(temperatures=[0, 1, 2])       # or: %ofox compare -t 0,1,2
    """

    def __init__(
        self,
        models: Sequence[str] | None = None,
        temperatures: Sequence[float | None] | None = None,
        prompt: str = "",
        **kwargs: Any,
    ) -> None:
        self._magics = _magics()
        chosen = list(models or [str(self._magics.model)])
        temps = list(temperatures or [None])
        self.columns = [_Column(m, t) for m in chosen for t in temps]
        self.prompt = widgets.Textarea(
            value=prompt,
            placeholder="One prompt for every column…",
            layout=widgets.Layout(width="100%", height="64px"),
        )
        self.run_button = widgets.Button(description="Run", button_style="primary", icon="play")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.attach_last = widgets.ToggleButton(description="attach last figure", icon="image")
        self.prompt.add_class("ofox-compare-prompt")
        self.run_button.add_class("ofox-compare-run")
        self.stop_button.add_class("ofox-compare-stop")
        self.attach_last.add_class("ofox-attach-last")
        self.run_button.on_click(lambda _: self.run())
        self.stop_button.on_click(lambda _: self.stop())
        self.status = widgets.HTML()
        super().__init__(
            [
                self.prompt,
                widgets.HBox([self.run_button, self.stop_button, self.attach_last]),
                widgets.HBox([c.box for c in self.columns]),
                self.status,
            ],
            **kwargs,
        )
        self.add_class("ofox-compare")
        self.task = None
        self.total_seconds: float | None = None
        self._stopped = False
        self._transcripts = []
        self._last_prompt = ""

    def __repr__(self) -> str:
        return f"<ofox CompareWidget columns={len(self.columns)}>"

    def _transcript(self) -> dict[str, str]:
        labels = [c.label for c in self.columns]
        if not self._last_prompt:
            return wrap_transcript(
                f"comparison of {', '.join(labels)} (not run yet)", "", "(not run yet)"
            )
        bodies = [c.text for c in self.columns]
        footers = [c.footer_text for c in self.columns]
        return columns_transcript(
            self._last_prompt,
            labels,
            grid_markdown(labels, bodies, footers),
            plain_columns(labels, bodies, footers),
        )

    def run(self, prompt: str | None = None) -> None:
        """Ask every column at once; ``await w.wait()`` waits for all of them (``w.task``).
        Returns nothing, so that a cell ending in ``w.run("…")`` shows no task repr."""
        text = (self.prompt.value if prompt is None else prompt).strip()
        if not text or self.busy:
            return None
        images: tuple[dict[str, Any], ...] = ()
        if self.attach_last.value:
            try:
                images = (_last_figure(self._magics).part,)
            except OfoxError as err:
                self.status.value = f"⚠ {html.escape(err.one_line())}"
                return None
        self.run_button.disabled, self.stop_button.disabled = True, False
        self.status.value = "streaming…"
        self._stopped = False
        self._last_prompt = text
        self.task = _start(self._run_all(text, images))

    async def _run_all(self, prompt: str, images: tuple[dict[str, Any], ...]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            await asyncio.gather(*(self._run_column(c, prompt, images) for c in self.columns))
        finally:
            self.total_seconds = loop.time() - started
            self.run_button.disabled, self.stop_button.disabled = False, True
            self.status.value = (
                f"stopped after {self.total_seconds:.2f} s — partial replies kept"
                if self._stopped
                else f"all columns done in {self.total_seconds:.2f} s"
            )
            self._refresh_transcript()

    def stop(self) -> None:
        """Stop every column now; partial replies stay, marked."""
        if self.busy:
            self._stopped = True
        super().stop()

    async def _run_column(
        self, column: _Column, prompt: str, images: tuple[dict[str, Any], ...]
    ) -> None:
        params = {} if column.temperature is None else {"temperature": column.temperature}
        # Recorded in the comparisons' chat (each column asked afresh: nothing earlier is sent).
        options = AskOptions(
            model=column.model, chat=COMPARE_CHAT, context=False, images=images, params=params
        )
        live = LiveReply(column.model, sink=column.show, tick_seconds=0)
        live.start()
        column.set_footer("streaming…")
        try:
            exchange = await self._magics.session.ask_async(prompt, options, live)
        except Interrupted as stop:
            partial = stop.exchange
            text = render_replies(partial) if partial is not None else ""
            column.show({"text/markdown": f"{text}\n\n{STOPPED_LINE}" if text else STOPPED_LINE})
            column.set_footer("")  # the column says it once, under its text
            column.exchange = partial
        except OfoxError as err:
            column.show({"text/markdown": "*(no reply)*"})
            column.set_footer(f"⚠ {err.one_line()}")
        else:
            column.exchange = exchange
            column.show({"text/markdown": render_replies(exchange) or "*(no text)*"})
            facts, warnings = footer_parts(exchange)
            shown = facts[1:] + [f"⚠ {w}" for w in warnings]  # the model is the column's title
            column.set_footer(" · ".join(shown))
