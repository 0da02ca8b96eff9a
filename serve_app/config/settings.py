"""Infrastructure settings, each declared once: a pydantic-settings root of groups.

Every group is a frozen pydantic model declared here, with its bounds, defaults and
descriptions; components take their group as it is (no per-component copy). Env names are
`EMOTION_MONITOR_<GROUP>__<FIELD>` (e.g. `EMOTION_MONITOR_SYNC__CPU_THRESHOLD`), from the
environment or a `.env` file (see `.env.example`). Secrets are `SecretStr`: never defaulted,
never printed (their repr is masked). Nothing is read at import time; call `get_settings()`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from serve_app.config.defaults import REDDIT_OAUTH_URL, REDDIT_WWW_URL
from serve_app.domain.tasks import TaskName

# where posts come from: the one definition. "replay": the JSONL corpus as a live feed
# (serve_app.sources.replay, `emotion-monitor demo`).
Source = Literal["reddit", "jsonl", "replay"]

log = logging.getLogger("emotion_monitor.settings")
ENV_PREFIX = "EMOTION_MONITOR_"


class Group(BaseModel):
    # frozen: a component cannot change the settings it was handed; forbid: a nested env name
    # whose field part is misspelled fails at startup instead of being ignored.
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())


G = TypeVar("G", bound=Group)


class ModelSettings(Group):
    dir: Path = Field(
        Path("models/multitask"), description="INT8 artifact the Classifier loads (a head per task)"
    )
    data_root: Path = Field(
        Path("../shared/data"), description="labelled data sets for training and evaluation"
    )
    task_dirs: dict[TaskName, Path] = Field(
        default_factory=dict,
        description="an INT8 artifact per task instead of dir's head, as JSON: "
        '{"sentiment": "models/sentiment_multi"}',
    )
    ort_threads: int | None = Field(
        None, ge=1, le=64, description="ONNX Runtime threads per session (default: the replica's CPUs)"
    )
    max_length: int = Field(
        128, ge=8, le=512, description="tokens per text (single-process baseline; the app: the model's)"
    )
    negative_threshold: float = Field(
        0.8, ge=0.34, le=1, description="strongly-negative sentiment confidence"
    )
    lang_min_confidence: float = Field(
        0.8, gt=0, le=1, description="language-ID probability needed to exclude a post as another language"
    )
    # Registry versions are chosen per task in the app args / Classifier user_config.
    registry_dir: Path = Field(Path("registry"), description="local model registry (unless s3.bucket)")


class SourcesSettings(Group):
    default_source: Source = "reddit"
    jsonl_path: Path = Path("../shared/data/reddit_sample/posts.jsonl")
    include_nsfw: bool = Field(False, description="classify posts Reddit marks NSFW (excluded by default)")


class RedditSettings(Group):
    client_id: str | None = None
    client_secret: SecretStr | None = None
    # Reddit's API rules ask for `platform:app_id:version (by /u/username)`; the User-Agent
    # is built from these unless `user_agent` gives a whole one.
    app_id: str = Field("emotion-monitor", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    contact: str | None = Field(None, description="who runs this instance, e.g. /u/yourname")
    user_agent: str | None = Field(None, min_length=7)
    public_url: str = REDDIT_WWW_URL
    oauth_url: str = REDDIT_OAUTH_URL
    www_url: str = REDDIT_WWW_URL
    timeout_s: float = Field(10.0, gt=0, le=120)
    retries: int = Field(2, ge=0, le=10)
    # One request budget for the whole app (a token bucket in Redis), per credential.
    oauth_per_min: float = Field(100.0, gt=0, le=6000, description="Reddit's OAuth budget per client")
    public_per_min: float = Field(10.0, gt=0, le=6000, description="without OAuth credentials")
    burst: int = Field(10, ge=1, le=1000, description="requests that may go out back to back")
    background_reserve: float = Field(
        5.0, ge=0, description="tokens the warmer and monitors leave for users' requests"
    )
    # Comments (`include_comments: K` reads the top comments of the K most relevant posts):
    # each post's comment page is one request from the budget above.
    comments_per_post: int = Field(20, ge=1, le=100, description="top-level comments read per post")
    comments_total: int = Field(500, ge=1, le=10_000, description="comments one analysis may add in all")


class StoresSettings(Group):
    # Cache and history. Unset URLs start embedded servers under data_dir (if `embedded`).
    redis_url: SecretStr | None = None
    postgres_url: SecretStr | None = None
    embedded: bool = True
    data_dir: Path = Path(".emotion-monitor")
    cache_ttl_s: int = Field(3600, ge=1, description="an /analyze answer stays cached this long")
    score_ttl_s: int = Field(
        7 * 86_400,
        ge=0,
        description="per-post scores kept in Redis this long (0 disables the per-post cache)",
    )


class SyncSettings(Group):
    """The idle-time history sync (deployments/sync_actor.py)."""

    cpu_threshold: float = Field(20.0, gt=0, le=100)
    batch_size: int = Field(20, ge=1, le=1000, description="records (analyses) per PostgreSQL transaction")
    recovery_interval_s: float = Field(60.0, gt=0)


class WarmerSettings(Group):
    """The hot-keyword cache warmer (deployments/warmer_actor.py)."""

    cpu_threshold: float = Field(35.0, gt=0, le=100)
    interval_s: float = Field(30.0, gt=0)
    per_pass: int = Field(5, ge=0, le=100, description="refreshes per pass at most (0: no warmer)")
    refresh_below_s: int = Field(300, ge=0, description="refresh entries with less TTL than this (or none)")
    seeds_file: Path = Path("scripts/keywords.txt")


class MonitorSettings(Group):
    """Watchlists: the keyword monitor and its spike alerts (an alert: a bucket's share of anger
    or of negative posts above the trailing baseline, one-sided two-proportion z-test)."""

    enabled: bool = True
    interval_s: float = Field(15.0, gt=0, description="how often due watches are looked for")
    cpu_threshold: float = Field(
        50.0, gt=0, le=100, description="polls wait while the machine's CPU is above this (100: never wait)"
    )
    alert_bucket_s: int = Field(3600, ge=60, description="trend bucket the spike test compares")
    alert_z: float = Field(3.0, gt=0, description="z at or above which a rise is a spike")
    alert_min_posts: int = Field(20, ge=1, description="posts needed in the bucket and in the baseline")
    alert_baseline_buckets: int = Field(24, ge=1, description="trailing buckets pooled into the baseline")
    alert_webhook_url: SecretStr | None = Field(
        None, description="POST each alert here as JSON (may hold a token)"
    )
    alert_webhook_attempts: int = Field(8, ge=1, le=1000, description="delivery attempts before `failed`")


class DriftSettings(Group):
    """The drift watch (docs/drift.md): the last `window` scored posts per source against the
    serving model's reference profile, every `interval_s` while the CPU is idle."""

    enabled: bool = Field(True, description="record scored posts and run the drift checks")
    window: int = Field(500, ge=50, le=10_000, description="last posts per source a check reads")
    min_posts: int = Field(200, ge=20, description="posts a window needs before a verdict")
    interval_s: float = Field(300.0, ge=5, description="how often the drift checks run")
    cpu_threshold: float = Field(50.0, gt=0, le=100, description="checks wait above this CPU %")
    alpha: float = Field(
        0.001, gt=0, lt=1, description="family-wise false-alarm rate of one check (Bonferroni over its tests)"
    )
    retrain_on_drift: bool = Field(
        False, description="a drift alert submits the retraining Ray job (`emotion-monitor retrain`)"
    )


class ReplaySettings(Group):
    """The replayed feed (source "replay", `emotion-monitor demo`, serve_app/sources/replay.py):
    the JSONL corpus's posts arrive as if live, oldest first, stamped with their arrival time."""

    posts_per_s: float = Field(
        15.0, gt=0, le=10_000, description="corpus posts (all keywords) arriving each second"
    )
    backlog_s: float = Field(
        180.0, ge=0, le=86_400, description="seconds' worth of posts already there when a replay starts"
    )
    # Starts after the watch's first poll (within the monitor's interval), which so sees the
    # backlog alone, and the second (a minute later) the burst.
    burst_at_s: float = Field(
        20.0, ge=0, le=86_400, description="the planted burst of angry posts starts this long after the start"
    )
    # Past the poll after next, so the spike test finds the burst in its newest full bucket
    # even when a busy machine delays a poll.
    burst_s: float = Field(180.0, gt=0, le=86_400, description="the planted posts arrive over this long")
    # A replay runs minutes of posts where a live feed runs hours.
    bucket_s: int = Field(
        60, ge=10, le=86_400, description="trend bucket the spike test compares for watches of the replay"
    )


class TrackingSettings(Group):
    """Experiment tracking for training runs (MLflow): any tracking URI (an MLflow server, a
    database); by default a local SQLite store under runs/, read by `mlflow ui`."""

    uri: str = "sqlite:///runs/mlflow.db"
    experiment: str = "emotion-monitor"


class GateSettings(Group):
    """The promotion gate (`emotion-monitor model promote`, serve_app/lifecycle/gate.py)."""

    metric_tolerance: float = Field(
        0.005, ge=0, le=1, description="how much worse a validation figure (macro-F1, TVD) may be"
    )
    min_pairs: int = Field(200, ge=1, description="shadow pairs per head needed before a promotion")
    share_bound: float = Field(
        0.03, gt=0, le=1, description="label-share difference whose paired 95 % interval must not lie beyond"
    )


class S3Settings(Group):
    """S3 model registry (used when a bucket is set)."""

    bucket: str | None = None
    prefix: str = "models"
    endpoint_url: str | None = None
    region: str | None = None
    access_key_id: SecretStr | None = None
    secret_access_key: SecretStr | None = None


class HttpSettings(Group):
    # An API key (header X-API-Key) guards every route but /healthz when set.
    api_key: SecretStr | None = None
    # Off by default: the service binds loopback. Set it when you expose the service.
    analyze_rate_per_min: float = Field(0.0, ge=0, description="per client; 0 disables the limit")
    analyze_burst: int = Field(20, ge=1)
    # The bind address is Serve's, not ours: `http_options.host` in serve_config.yaml
    # (127.0.0.1; exposing the service means changing it there, on purpose).


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        frozen=True,
        protected_namespaces=(),
    )

    background: bool = Field(True, description="run the background actors (sync, warmer, monitor, drift)")
    model: ModelSettings = Field(default_factory=ModelSettings)
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    reddit: RedditSettings = Field(default_factory=RedditSettings)
    stores: StoresSettings = Field(default_factory=StoresSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    warmer: WarmerSettings = Field(default_factory=WarmerSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    tracking: TrackingSettings = Field(default_factory=TrackingSettings)
    gate: GateSettings = Field(default_factory=GateSettings)
    s3: S3Settings = Field(default_factory=S3Settings)
    http: HttpSettings = Field(default_factory=HttpSettings)


def reddit_user_agent(r: RedditSettings) -> str:
    from serve_app import __version__
    from serve_app.sources.reddit import user_agent

    return r.user_agent or user_agent(r.app_id, __version__, r.contact)


# Names with the prefix that are not settings: read by scripts/run.sh and the test suites.
OTHER_KNOBS = frozenset(
    {"THROUGHPUT", "RELIABILITY_REPORT", "ALLOW_LEFTOVERS", "FUZZ_EXAMPLES", "SOAK_S", "TEST_PG_URL",
     "TEST_REDIS_URL", "URL"}
)  # fmt: skip


def env_names() -> dict[str, tuple[str | None, str]]:
    """Every setting's env name -> (its group, or None at the top, and its field)."""
    out: dict[str, tuple[str | None, str]] = {}
    for name, info in Settings.model_fields.items():
        group = info.annotation
        if isinstance(group, type) and issubclass(group, Group):
            out.update({f"{ENV_PREFIX}{name}__{leaf}".upper(): (name, leaf) for leaf in group.model_fields})
        else:
            out[f"{ENV_PREFIX}{name}".upper()] = (None, name)
    return out


def stale_env_names(environ: Mapping[str, str]) -> dict[str, list[str]]:
    """Prefixed names in `environ` that name no setting (a typo, or a flat name from before the
    groups, e.g. the prefix + SYNC_CPU_THRESHOLD), each with the names it may have meant."""
    known = env_names()
    out: dict[str, list[str]] = {}
    for key in environ:
        k = key.upper()
        if not k.startswith(ENV_PREFIX) or k in known or k[len(ENV_PREFIX) :] in OTHER_KNOBS:
            continue
        rest = k[len(ENV_PREFIX) :]
        out[key] = sorted(n for n in known if n.replace("__", "_") == k or n.endswith("__" + rest))
    return out


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    # Pydantic ignores a prefixed name that matches no field: say so, or a renamed or
    # misspelled setting would be silently without effect.
    for name, meant in stale_env_names(os.environ).items():
        hint = f"; did you mean {' or '.join(meant)}?" if meant else ""
        log.warning("%s names no setting and is ignored (docs/configuration.md)%s", name, hint)
    return Settings()


def secret(value: SecretStr | None) -> str | None:
    return value.get_secret_value() if value is not None and value.get_secret_value() else None


def merged(env: G, override: G | None) -> G:
    """`env` with the fields set in `override` (a group given in the app args) in their place."""
    if override is None:
        return env
    return env.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})
