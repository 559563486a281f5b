"""``--image last``: a small, bounded record of the images this kernel displayed most recently.

IPython computes every rich output through ``shell.display_formatter.format`` — ``display()``,
a cell's result, and the inline matplotlib backend's figures alike. We wrap that one method and
keep the PNG/JPEG bytes of the last few outputs that had one. The inline backend closes a figure
once it is shown, so ``plt.gcf()`` afterwards is a new empty figure: what was displayed is the
only faithful copy of the plot. Checking two dict keys per output costs nothing noticeable.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable
from typing import Any

__all__ = ["RecentImages"]

_IMAGE_MIMES = ("image/png", "image/jpeg")


class RecentImages:
    """Remembers the bytes of the last ``size`` images displayed in a shell."""

    def __init__(self, size: int = 4) -> None:
        self._images: deque[bytes] = deque(maxlen=size)
        self._formatter: Any = None
        self._original: Callable[..., Any] | None = None

    def install(self, shell: Any) -> None:
        formatter = shell.display_formatter
        original = formatter.format

        def format_and_record(obj: Any, *args: Any, **kwargs: Any) -> Any:
            result = original(obj, *args, **kwargs)
            try:
                self.record(result[0])
            except Exception:  # noqa: BLE001 - recording must never break a display
                pass
            return result

        formatter.format = format_and_record
        self._formatter, self._original = formatter, original

    def uninstall(self) -> None:
        if self._formatter is not None:
            # The wrapper is an instance attribute shadowing the method: removing it restores it.
            self._formatter.__dict__.pop("format", None)
        self._formatter = self._original = None

    def record(self, format_dict: Any) -> None:
        if not isinstance(format_dict, dict):
            return
        for mime in _IMAGE_MIMES:
            data = format_dict.get(mime)
            if data is None:
                continue
            if isinstance(data, str):  # some formatters hand back base64 text
                data = base64.b64decode(data)
            if isinstance(data, (bytes, bytearray)) and data:
                self._images.append(bytes(data))
                return

    def last(self) -> bytes | None:
        """The most recently displayed image, or ``None`` if nothing was displayed yet."""
        return self._images[-1] if self._images else None

    def __len__(self) -> int:
        return len(self._images)
