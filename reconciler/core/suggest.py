"""'did you mean X?' for a misspelt name, at a bounded cost per problem. Pure.

`difflib` compares a word with every candidate. That is cheap for the fields of a model, but a
config may declare thousands of providers and name a missing one from thousands of routes: the
work would grow with both. So a word is compared with at most MAX_COMPARED candidates, the ones
nearest to it in sorted order from the front and from the back (a typo keeps a prefix or a
suffix), each answer is remembered, and the list of valid names shown is cut to MAX_LISTED.
"""

from __future__ import annotations

import difflib
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from functools import lru_cache

MAX_COMPARED = 200
MAX_LISTED = 10
MAX_REMEMBERED = 10_000  # answers kept per set of names (a daemon runs for months)
_CUTOFF = 0.6


class Suggester:
    """Suggestions among one fixed set of names, each word's answer computed once."""

    def __init__(self, candidates: Iterable[str]) -> None:
        self._names = sorted(set(candidates))
        self._backwards = sorted(name[::-1] for name in self._names)
        self._answers: dict[str, str] = {}
        self.compared = 0  # candidates compared with a word, over every word asked about

    def __call__(self, word: str) -> str:
        """'did you mean X?' when a candidate is close, else some valid names, else ''."""
        answer = self._answers.get(word)
        if answer is None:
            pool = self._pool(word)
            self.compared += len(pool)
            close = difflib.get_close_matches(word, pool, n=1, cutoff=_CUTOFF)
            answer = f"did you mean {close[0]!r}?" if close else listed(self._names)
            if len(self._answers) >= MAX_REMEMBERED:
                self._answers.clear()
            self._answers[word] = answer
        return answer

    def _pool(self, word: str) -> Sequence[str]:
        if len(self._names) <= MAX_COMPARED:
            return self._names
        half = MAX_COMPARED // 4
        pool = set(_around(self._names, word, half))
        pool.update(name[::-1] for name in _around(self._backwards, word[::-1], half))
        return sorted(pool)


def _around(names: Sequence[str], word: str, count: int) -> Sequence[str]:
    """The `count` names before and after the place `word` would take in sorted `names`."""
    at = bisect_left(names, word)
    return names[max(0, at - count) : at + count]


def listed(names: Sequence[str]) -> str:
    """'valid names: a, b, c' with at most MAX_LISTED of the sorted `names`; '' when none."""
    if not names:
        return ""
    shown = ", ".join(names[:MAX_LISTED])
    more = len(names) - MAX_LISTED
    return f"valid names: {shown}" + (f", … ({more} more)" if more > 0 else "")


def suggest(word: str, candidates: Sequence[str]) -> str:
    """'did you mean X?' when a candidate is close, else the valid names (see `Suggester`)."""
    return _small(tuple(candidates))(word)


@lru_cache(maxsize=64)
def _small(candidates: tuple[str, ...]) -> Suggester:
    """One `Suggester` per set of candidates met often (a model's fields, the provider types)."""
    return Suggester(candidates)
