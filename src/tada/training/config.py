"""Training configuration files: JSON, every key checked before hours of training rather than after."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import TadaError


def read_json(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except FileNotFoundError:
        raise TadaError(f"config file {path} does not exist") from None
    except ValueError as exc:
        raise TadaError(f"config file {path} is not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise TadaError(f"config file {path} must hold a JSON object")
    return value


def check_keys(
    config: dict[str, Any], keys: Iterable[str], source: str = "config", optional: Iterable[str] = ()
) -> dict[str, Any]:
    """Refuse missing and unknown keys (a typo would otherwise fall back to a default silently);
    ``optional`` keys may be absent."""
    keys, optional = list(keys), list(optional)
    missing = [k for k in keys if k not in config]
    unknown = [k for k in config if k not in keys and k not in optional]
    if missing or unknown:
        raise TadaError(f"{source}: missing keys {missing or 'none'}, unknown keys {unknown or 'none'}")
    return config
