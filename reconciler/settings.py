"""Settings: a flag, else a RECONCILER_* environment variable, else the default."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings, SettingsConfigDict

from reconciler.logs import LogFormat

__all__ = ["DEFAULT_DATABASE_URL", "LogFormat", "Settings"]

DEFAULT_DATABASE_URL = "sqlite:///reconciler.db"


class Settings(BaseSettings):
    """Process-wide settings. `RECONCILER_DATABASE_URL`, `RECONCILER_CONFIG_DIR`, ..."""

    model_config = SettingsConfigDict(env_prefix="RECONCILER_", extra="ignore", frozen=True)

    database_url: str = DEFAULT_DATABASE_URL
    config_dir: Path = Path("config")
    log_format: LogFormat = LogFormat.text
    verbose: int = 0
