"""A provider plugin as pip would install it: the plugin site, and the model of a good plugin."""

from __future__ import annotations

from pathlib import Path

PLUGIN_SITE = Path(__file__).resolve().parent / "plugin_pkg"

GOOD_MODEL = """\
from typing import Literal
from reconciler.core.registry import ProviderType
from reconciler.core.spec import ProviderSpec

class Acme(ProviderSpec):
    type: Literal["acme"] = "acme"
"""


def install_plugin(site: Path, source: str) -> Path:
    """Write `acme_broken.py` and its dist-info, as `pip install acme-broken` would."""
    info = site / "acme_broken-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-broken\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        "[reconciler.providers]\nacme = acme_broken:PROVIDER_TYPE\n"
    )
    (site / "acme_broken.py").write_text(source)
    return site
