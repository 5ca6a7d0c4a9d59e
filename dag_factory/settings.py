"""Every `DAG_FACTORY_*` environment variable, read in one place with one meaning of "off".

- `DAG_FACTORY_ENV`: the platform environment DAG files build for (dag_factory.airflow.environment);
- `DAG_FACTORY_PLATFORM`: the platform file, instead of the nearest `platform.yaml`;
- `DAG_FACTORY_CACHE_DIR`: where the caches live (plans, notebooks, shared environments, a migrated
  local Airflow metadata DB); off (or 0/false/no/empty) disables them all;
- `DAG_FACTORY_KEEP_WORKDIRS`: local backend, keep work directories after the run (`run --keep`);
- `DAG_FACTORY_LOCAL_API_IDLE_MINUTES`: local backend, how long the Execution API of a local Airflow
  home stays up without requests, for the next run (default 10; 0 or off: it stops after each run);
- `DAG_FACTORY_DEBUG`: show the traceback of an internal error;
- `DAG_FACTORY_AIRFLOW_TOKEN`: bearer token `dag-factory gc` sends to the environment's Airflow REST API
  (its `airflow_url`) to ask which runs are live; unset for an api-server that needs none.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV = "DAG_FACTORY_ENV"
PLATFORM = "DAG_FACTORY_PLATFORM"
CACHE_DIR = "DAG_FACTORY_CACHE_DIR"
KEEP_WORKDIRS = "DAG_FACTORY_KEEP_WORKDIRS"
DEBUG = "DAG_FACTORY_DEBUG"
LOCAL_API_IDLE_MINUTES = "DAG_FACTORY_LOCAL_API_IDLE_MINUTES"
DEFAULT_LOCAL_API_IDLE_MINUTES = 10.0
AIRFLOW_TOKEN = "DAG_FACTORY_AIRFLOW_TOKEN"

_OFF = ("", "0", "off", "false", "no")


def _text(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def is_on(name: str) -> bool:
    """A flag: set to anything but off/0/false/no/empty."""
    value = _text(name)
    return value is not None and value.lower() not in _OFF


def environment() -> str | None:
    """$DAG_FACTORY_ENV, or None when unset or empty."""
    return _text(ENV) or None


def platform_file() -> Path | None:
    """$DAG_FACTORY_PLATFORM, or None when unset or empty."""
    value = _text(PLATFORM)
    return Path(value) if value else None


def cache_root() -> Path | None:
    """$DAG_FACTORY_CACHE_DIR when set and not off."""
    value = _text(CACHE_DIR)
    return None if value is None or value.lower() in _OFF else Path(value)


def cache_dir(kind: str, default: Path) -> Path | None:
    """The folder of one cache (`plans`, `notebooks`): under $DAG_FACTORY_CACHE_DIR when set, None when
    that is off, else ``default``."""
    value = _text(CACHE_DIR)
    if value is None:
        return default
    if value.lower() in _OFF:
        return None
    return Path(value) / kind


def user_cache_dir(kind: str) -> Path | None:
    """:func:`cache_dir` with the user's cache as the default: $XDG_CACHE_HOME (or ~/.cache)/dag-factory."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return cache_dir(kind, Path(base) / "dag-factory")


def keep_workdirs() -> bool:
    return is_on(KEEP_WORKDIRS)


def debug() -> bool:
    return is_on(DEBUG)


def local_api_idle_seconds() -> float:
    """$DAG_FACTORY_LOCAL_API_IDLE_MINUTES in seconds (0 when off, the default when unset).

    Raises ValueError, naming the variable and what it takes, for anything else than a number."""
    value = _text(LOCAL_API_IDLE_MINUTES)
    if value is None or value == "":
        return DEFAULT_LOCAL_API_IDLE_MINUTES * 60
    if value.lower() in _OFF:
        return 0.0
    try:
        minutes = float(value)
    except ValueError:
        minutes = -1.0
    if not 0 <= minutes < float("inf"):
        raise ValueError(
            f"{LOCAL_API_IDLE_MINUTES}={value!r}: not a number of minutes (e.g. 10, or 0 to stop the "
            "local Execution API after each run)"
        )
    return minutes * 60


def airflow_token() -> str | None:
    """$DAG_FACTORY_AIRFLOW_TOKEN, or None when unset or empty."""
    return _text(AIRFLOW_TOKEN) or None
