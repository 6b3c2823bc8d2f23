"""The two output streams: results on stdout, diagnostics on stderr; colour on a terminal.

Plain text is written straight to the stream, so the commands that print only text (`validate`
in a pre-commit hook, say) never import rich; a styled line, a table or a progress bar goes
through a rich console made on first use. Both look up sys.stdout/sys.stderr when they print, so
captured streams work. Markup is off: config text may contain square brackets.

Colour follows rich's detection (a terminal, `FORCE_COLOR`, `TERM=dumb`), and `NO_COLOR` (any
non-empty value) turns off every style, bold included. Only lines given a tone are styled.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

# What rich drops from plain text (bell, backspace, vertical tab, form feed, carriage return), so
# that a line reads the same whichever way it is written.
_DROPPED = dict.fromkeys((7, 8, 11, 12, 13))


class Stream:
    """stdout or stderr: `print` like rich's `Console.print`, rich itself only when needed."""

    def __init__(self, *, stderr: bool) -> None:
        self._stderr = stderr
        self._rich: Console | None = None

    @property
    def file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    @property
    def rich(self) -> Console:
        """The rich console for this stream (styles, tables, progress bars)."""
        if self._rich is None:
            from rich.console import Console

            self._rich = Console(
                stderr=self._stderr, soft_wrap=True, highlight=False, markup=False, emoji=False
            )
        return self._rich

    def print(self, *objects: Any, style: str | None = None, end: str = "\n") -> None:
        """Print text as is (tabs expanded, as rich does); anything else, or a style, via rich."""
        if style is None and all(isinstance(o, str) for o in objects):
            text = " ".join(objects).translate(_DROPPED).expandtabs(8)
            self.file.write(text + end)
            self.file.flush()
            return
        self.rich.print(*objects, style=style, end=end)


out = Stream(stderr=False)
err = Stream(stderr=True)

# A tone (see `reconciler.render.Tone`) -> a rich style.
STYLES = {
    "create": "green",
    "update": "yellow",
    "delete": "red",
    "adopt": "cyan",
    "refusal": "red",
    "summary": "bold",
    "done": "bold green",
    "ask": "bold",
}


# What makes rich colour a stream that is not a terminal.
_FORCING = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")


def colour_on(stream: Stream = out) -> bool:
    """True when `stream` writes to a terminal that shows colour and `NO_COLOR` is not set."""
    if os.environ.get("NO_COLOR", ""):
        return False
    if not any(name in os.environ for name in _FORCING) and not _is_tty(stream.file):
        return False  # a pipe or a file, as in CI: no need to load rich to know
    console = stream.rich
    return console.is_terminal and not console.is_dumb_terminal and console.color_system is not None


def _is_tty(file: TextIO) -> bool:
    try:
        return file.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


def print_lines(lines: Iterable[tuple[str, str | None]], stream: Stream = out) -> None:
    """Print the lines in one write, each in the style of its tone when colour is on."""
    lines = list(lines)
    if not colour_on(stream):
        stream.print("\n".join(text for text, _ in lines))
        return
    from rich.text import Text

    styled = (Text(text, style=STYLES.get(tone or "", "")) for text, tone in lines)
    stream.print(Text("\n").join(styled))
