"""The two output streams: results on stdout, diagnostics on stderr.

Rich consoles look up sys.stdout/sys.stderr when they print, so captured streams work.
Markup is off: config text may contain square brackets.
"""

from __future__ import annotations

from rich.console import Console

out = Console(soft_wrap=True, highlight=False, markup=False, emoji=False)
err = Console(stderr=True, soft_wrap=True, highlight=False, markup=False, emoji=False)
