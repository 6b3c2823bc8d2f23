"""The HTML the daemon serves: its text as a reader sees it, and what would load from elsewhere."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# What makes a browser fetch from elsewhere: a script at all, or a src/href/action/url()/@import
# whose target has a scheme or starts with `//`; and the usual CDN names.
LOADS_FROM_ELSEWHERE = re.compile(
    r"<script|@import|\b(?:src|href|action|srcset)\s*=\s*[\"']?\s*(?:[a-z][a-z0-9+.-]*:)?//"
    r"|url\(\s*[\"']?\s*(?:[a-z][a-z0-9+.-]*:)?//|cdn|jsdelivr|unpkg|googleapis",
    re.IGNORECASE,
)


class TextOf(HTMLParser):
    """The text of a document, as a reader sees it (scripts and styles left out)."""

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag: str) -> None:
        self._skip -= tag in ("script", "style")

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)

    @classmethod
    def of(cls, document: str) -> str:
        parser = cls()
        parser.feed(document)
        return " ".join(" ".join(parser.parts).split())
