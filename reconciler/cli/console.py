"""The two output streams: results on stdout, diagnostics on stderr; colour on a terminal.

Rich consoles look up sys.stdout/sys.stderr when they print, so captured streams work.
Markup is off: config text may contain square brackets.

Colour follows rich's detection (a terminal, `FORCE_COLOR`, `TERM=dumb`), and `NO_COLOR` (any
non-empty value) turns off every style, bold included. Only lines given a tone are styled.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from rich.console import Console
from rich.text import Text

out = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)

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


def colour_on(console: Console = out) -> bool:
    """True when `console` writes to a terminal that shows colour and `NO_COLOR` is not set."""
    if os.environ.get("NO_COLOR", ""):
        return False
    return console.is_terminal and not console.is_dumb_terminal and console.color_system is not None


def print_lines(lines: Iterable[tuple[str, str | None]], console: Console = out) -> None:
    """Print the lines in one write, each in the style of its tone when colour is on."""
    lines = list(lines)
    if not colour_on(console):
        console.print("\n".join(text for text, _ in lines))
        return
    styled = (Text(text, style=STYLES.get(tone or "", "")) for text, tone in lines)
    console.print(Text("\n").join(styled))
