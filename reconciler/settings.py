"""Settings: a flag, else a RECONCILER_* environment variable, else the default.

Four values read from the environment do not need a settings framework: importing one cost about
a tenth of a second at every start, a fifth of what `validate` may take in a pre-commit hook. The
model is plain pydantic, so values are checked and converted the same way as the config files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from reconciler.errors import StateError
from reconciler.logs import LogFormat

__all__ = ["DEFAULT_DATABASE_URL", "ENV_PREFIX", "LogFormat", "Settings"]

DEFAULT_DATABASE_URL = "sqlite:///reconciler.db"
ENV_PREFIX = "RECONCILER_"


class Settings(BaseModel):
    """Process-wide settings. `RECONCILER_DATABASE_URL`, `RECONCILER_CONFIG_DIR`, ..."""

    # Built on first validation: most runs set nothing and take the defaults as they are.
    model_config = ConfigDict(frozen=True, extra="forbid", defer_build=True)

    database_url: str = DEFAULT_DATABASE_URL
    config_dir: Path = Path("config")
    log_format: LogFormat = LogFormat.text
    verbose: int = 0

    @classmethod
    def load(
        cls, given: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
    ) -> Settings:
        """Each setting from `given` (flags; None means not given), else the environment
        (`RECONCILER_<NAME>`, any case), else its default.

        A bad value is a `StateError` naming the variable or flag it came from.
        """
        environ = os.environ if environ is None else environ
        variables = {
            name.upper(): value
            for name, value in environ.items()
            if name.upper().startswith(ENV_PREFIX)
        }
        variables.update({n: v for n, v in environ.items() if n.startswith(ENV_PREFIX)})
        values: dict[str, Any] = {}
        origin: dict[str, str] = {}
        for field in cls.model_fields:
            variable = f"{ENV_PREFIX}{field.upper()}"
            flag = (given or {}).get(field)
            if flag is not None:
                values[field], origin[field] = flag, f"--{field.replace('_', '-')}"
            elif variable in variables:
                values[field], origin[field] = variables[variable], variable
        if not values:
            return cls.model_construct()
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            from reconciler.core.wording import error_message

            first = exc.errors(include_url=False)[0]
            field = str(first["loc"][0]) if first["loc"] else ""
            name = origin.get(field, "a setting")
            raise StateError(f"{name}: {error_message(first)}") from None
