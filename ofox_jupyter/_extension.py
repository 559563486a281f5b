"""``%load_ext ofox_jupyter`` and ``%unload_ext ofox_jupyter``: register :class:`OfoxMagics`
with a shell (and its cell-id hook and image watcher), and undo exactly that."""

from __future__ import annotations

from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from ._magics import OfoxMagics
from ._messages import utf8_safe

__all__ = ["load_ipython_extension", "unload_ipython_extension"]

_LOADED: dict[int, OfoxMagics] = {}


def load_ipython_extension(ip: InteractiveShell) -> None:
    """``%load_ext ofox_jupyter``: register the magics and the cell-id hook; say what's loaded."""
    magics = OfoxMagics(shell=ip)
    ip.register_magics(magics)
    ip.events.register("pre_run_cell", magics.pre_run_cell)
    magics.recent.install(ip)
    _LOADED[id(ip)] = magics
    for notice in magics.notices():
        print(utf8_safe(notice))


def unload_ipython_extension(ip: InteractiveShell) -> None:
    """Undo exactly what :func:`load_ipython_extension` did."""
    magics = _LOADED.pop(id(ip), None)
    if magics is not None:
        _unregister(ip, magics)


def _unregister(ip: InteractiveShell, magics: OfoxMagics) -> None:
    ip.events.unregister("pre_run_cell", magics.pre_run_cell)
    magics.recent.uninstall()
    for kind in ("line", "cell"):
        table = ip.magics_manager.magics[kind]
        if getattr(table.get("ofox"), "__self__", None) is magics:
            del table["ofox"]
    if ip.magics_manager.registry.get(type(magics).__name__) is magics:
        del ip.magics_manager.registry[type(magics).__name__]
    configurables: list[Any] = ip.configurables
    configurables[:] = [c for c in configurables if c is not magics]
    magics._close_session()
