"""What turns config files into rows, as one digest: the code of the pure core that parses,
validates and reduces them to essences, and the libraries it leans on.

A revision's record (`reconcile.exact_key`) is believed only under the same rules: a new default
or another way of reading a value changes the rows the same files want, even when reconciler's
version number stays the same (a development install, a patched copy).
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import pydantic
import pydantic_core
import yaml

import reconciler.core


@functools.cache
def code_digest() -> str:
    """A digest of the core's source files and of the versions of pydantic and PyYAML."""
    hashed = hashlib.sha256()
    for library in (pydantic.VERSION, pydantic_core.__version__, yaml.__version__):
        hashed.update(f"{library}\n".encode())
    core = Path(reconciler.core.__file__).parent
    for path in sorted(core.glob("*.py")):
        hashed.update(path.name.encode() + b"\0" + path.read_bytes())
    return hashed.hexdigest()
