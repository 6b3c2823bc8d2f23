"""The rules of the config's fields below the models: the patterns of names, environment
variables and header names, which headers hold credentials, which control characters a text may
hold, and how a character is named in a message. Pure; `spec` builds its models on them.
"""

from __future__ import annotations

import re
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import StringConstraints

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9._-]{0,62})$"
NAME_HINT = (
    "use lowercase letters, digits, '-', '_' and '.', starting with a letter or digit, "
    "at most 63 characters"
)
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
# A header name is one HTTP token (RFC 9110, section 5.6.2): no spaces, no separators.
HEADER_NAME_PATTERN = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$"
HEALTH_PATH_PATTERN = r"^/[^?#]*$"
# Header names whose value is a credential, compared case-insensitively.
SECRET_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "x-goog-api-key",
        "ocp-apim-subscription-key",
        "x-auth-token",
        "x-access-token",
        "private-token",
        "x-amz-security-token",
        "cookie",
    }
)
# The same names as a JSON Schema pattern: ECMA-262 has no flag for case in a schema.
SECRET_HEADER_PATTERN = "^(?:{})$".format(
    "|".join(
        "".join(f"[{c.upper()}{c}]" if c.isalpha() else c for c in name)
        for name in sorted(SECRET_HEADERS)
    )
)
# Fields whose text may span lines: tabs and line breaks are allowed in their string values
# (not in their keys). Every other string, key or value, holds no control character at all.
MULTILINE_FIELDS = frozenset({"prompt", "params", "output_schema"})
_TOKEN = re.compile(HEADER_NAME_PATTERN.strip("^$"))
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_CONTROL_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f]")
_CHAR_NAMES = {0: "NUL", 9: "tab", 10: "line feed", 13: "carriage return", 27: "ESC", 127: "DEL"}
SECRET_LITERAL = "a credential must be a reference, not a literal value (the value is not shown)"
SECRET_HINT = "write {env: NAME} and export NAME where reconciler runs"
HEADER_NAME_HINT = (
    "a header name is one HTTP token: letters, digits and !#$%&'*+-.^_`|~, without spaces "
    "(`Authorization`, not `Authorization `)"
)
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
# No control character, as the loader checks apart (`forbidden_control`), for the JSON Schema.
NO_CONTROL_PATTERN = r"^[^\x00-\x1f\x7f]*$"


def describe_char(char: str) -> str:
    """A character named so that a message can show it: `U+0000 (NUL)`, `a space`, `':'`."""
    code = ord(char)
    if char == " ":
        return "a space"
    if code < 0x20 or code == 0x7F:
        return f"the control character U+{code:04X} ({_CHAR_NAMES.get(code, 'C0')})"
    if code < 0x7F:
        return f"the character {char!r}"
    return f"the character U+{code:04X}"


def forbidden_control(text: str, multiline: bool) -> int | None:
    """The index of the first control character `text` may not hold, or None.

    No string holds C0 controls or DEL (PostgreSQL refuses NUL in text and JSON); the text of a
    MULTILINE_FIELDS field may hold tabs and line feeds.
    """
    found = (_CONTROL_IN_TEXT if multiline else _CONTROL).search(text)
    return found.start() if found else None


def header_name_defect(name: str) -> str | None:
    """What keeps `name` from being one HTTP token, in words that do not show it; else None."""
    if _TOKEN.fullmatch(name):
        return None
    if not name:
        return "it is empty"
    if not _TOKEN.fullmatch(name[-1]):
        return f"it ends with {describe_char(name[-1])}"
    if not _TOKEN.fullmatch(name[0]):
        return f"it begins with {describe_char(name[0])}"
    bad = next(char for char in name if not _TOKEN.fullmatch(char))
    return f"it holds {describe_char(bad)}"


def is_secret_header(name: str) -> bool:
    """True for a header whose value is a credential, however its name is spelled or padded."""
    return name.strip().lower() in SECRET_HEADERS


# Words that make a field's or a header's value a credential, in any provider type's config
# (`api_key`, `accessToken`, `X-Custom-Token`, `clientSecret`); `max_tokens` is not one.
_CREDENTIAL_WORDS = frozenset(
    {"key", "apikey", "token", "secret", "password", "passwd", "passphrase", "pass", "pwd"}
    | {"credential", "credentials", "auth", "authorization", "bearer", "cookie", "signature"}
)
_CREDENTIAL_ENDINGS = ("token", "secret", "password", "passphrase", "apikey", "credential")
_WORD = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")


def is_credential_name(name: str) -> bool:
    """True for a field or header name whose value is a credential, however it is spelled:
    snake_case, camelCase or kebab-case, or a known secret header."""
    if is_secret_header(name):
        return True
    words = [word.lower() for word in _WORD.findall(name)]
    joined = "".join(words)
    return bool(_CREDENTIAL_WORDS.intersection(words)) or joined.endswith(_CREDENTIAL_ENDINGS)


NOT_SHOWN = "(a literal credential, not shown)"


def masked(value: Any, name: str = "") -> Any:
    """`value`, held under the field `name`, as it may be shown: a credential only as its
    `{env: NAME}` reference or NOT_SHOWN, at any depth, and a URL without user info or query.

    Rows may be written by hand, so nothing here trusts their shape.
    """
    if isinstance(value, dict) and set(value) == {"env"} and isinstance(value["env"], str):
        return {"env": value["env"]}
    if value is not None and is_credential_name(name):
        return NOT_SHOWN
    if isinstance(value, dict):
        return {str(key): masked(item, str(key)) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return _bare_url(value)
    return value


def _bare_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return text
    if not (parts.username or parts.password or parts.query):
        return text
    netloc = f"[{host}]{port}" if ":" in host else f"{host}{port}"
    hidden = urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return f"{hidden} (user info and query not shown)"
