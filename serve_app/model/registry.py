"""Model registry: versions of artifact directories, on local disk or in S3.

Layout (both back ends): `<root>/<name>/<version>/<files>` plus `<root>/<name>/LATEST`
holding the newest pushed version. The local directory is the default; S3 (or any
S3-compatible store through `endpoint_url`) is used when a bucket is configured.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from serve_app.config.settings import S3Settings, secret

if TYPE_CHECKING:
    from serve_app.config.settings import Settings

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class RegistryError(RuntimeError):
    """A model name or version is unknown or malformed."""


def check_version(name: str, version: str) -> None:
    for what, value in (("name", name), ("version", version)):
        if not _VERSION.match(value):
            raise RegistryError(f"model {what} {value!r} must match {_VERSION.pattern}")


class LocalRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def push(self, name: str, version: str, src: Path, *, latest: bool = True) -> str:
        """Store `src` as `version`; `latest=False` (a retrained candidate) leaves LATEST,
        which `--version latest` pulls at start-up, where it was: pushing never promotes."""
        check_version(name, version)
        if not (src / "model.onnx").is_file():
            raise RegistryError(f"{src} has no model.onnx; it is not a model artifact")
        dest = self.root / name / version
        tmp = dest.with_name(f".{version}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(src, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)  # readers never see a half-copied version
        if latest:
            (self.root / name / "LATEST").write_text(version)
        return version

    def versions(self, name: str) -> list[str]:
        d = self.root / name
        if not d.is_dir():
            return []
        return sorted(p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith("."))

    def latest(self, name: str) -> str:
        marker = self.root / name / "LATEST"
        if marker.is_file():
            return marker.read_text().strip()
        found = self.versions(name)
        if not found:
            raise RegistryError(f"no versions of model {name!r} under {self.root}")
        return found[-1]

    def pull(self, name: str, version: str, dest: Path) -> Path:
        version = self.latest(name) if version == "latest" else version
        check_version(name, version)
        src = self.root / name / version
        if not src.is_dir():
            raise RegistryError(
                f"model {name!r} version {version!r} not in {self.root}; have {self.versions(name)}"
            )
        shutil.copytree(src, dest, dirs_exist_ok=True)
        return dest

    def path(self, name: str, version: str = "latest") -> Path:
        """The version's directory itself (no copy): what a local Classifier loads."""
        version = self.latest(name) if version == "latest" else version
        p = self.root / name / version
        if not (p / "model.onnx").is_file():
            raise RegistryError(f"model {name!r} version {version!r} not in {self.root}")
        return p


class S3Registry:
    def __init__(self, bucket: str, prefix: str = "models", client: Any = None, **client_kwargs: Any):
        if client is None:
            import boto3

            client = boto3.client("s3", **{k: v for k, v in client_kwargs.items() if v is not None})
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")

    def _key(self, *parts: str) -> str:
        return "/".join(p for p in (self.prefix, *parts) if p)

    def push(self, name: str, version: str, src: Path, *, latest: bool = True) -> str:
        check_version(name, version)
        if not (src / "model.onnx").is_file():
            raise RegistryError(f"{src} has no model.onnx; it is not a model artifact")
        for f in sorted(src.rglob("*")):
            if f.is_file():
                self.client.upload_file(
                    str(f), self.bucket, self._key(name, version, f.relative_to(src).as_posix())
                )
        # LATEST is written last, so a reader never pulls a version still uploading.
        if latest:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name, "LATEST"), Body=version.encode())
        return version

    def versions(self, name: str) -> list[str]:
        found: set[str] = set()
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self._key(name) + "/", Delimiter="/"):
            for cp in page.get("CommonPrefixes", []):
                found.add(cp["Prefix"].rstrip("/").rsplit("/", 1)[-1])
        return sorted(found)

    def latest(self, name: str) -> str:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name, "LATEST"))["Body"]
            return str(body.read().decode().strip())
        except self.client.exceptions.NoSuchKey:
            found = self.versions(name)
            if not found:
                raise RegistryError(
                    f"no versions of model {name!r} in s3://{self.bucket}/{self.prefix}"
                ) from None
            return found[-1]

    def pull(self, name: str, version: str, dest: Path) -> Path:
        version = self.latest(name) if version == "latest" else version
        check_version(name, version)
        base = self._key(name, version) + "/"
        paginator = self.client.get_paginator("list_objects_v2")
        n = 0
        for page in paginator.paginate(Bucket=self.bucket, Prefix=base):
            for obj in page.get("Contents", []):
                target = dest / obj["Key"][len(base) :]
                target.parent.mkdir(parents=True, exist_ok=True)
                self.client.download_file(self.bucket, obj["Key"], str(target))
                n += 1
        if n == 0:
            raise RegistryError(f"model {name!r} version {version!r} not in s3://{self.bucket}/{self.prefix}")
        return dest


@dataclass(frozen=True)
class RegistrySpec:
    """Where the registry is, in a form that travels to Ray replicas (plain, picklable).

    S3 when the `s3` settings name a bucket, else the local directory. Credentials are
    optional (boto3 also reads the usual AWS variables and instance roles) and never shown in
    a repr (they are `SecretStr`).
    """

    local_dir: str | None = None  # the model settings' registry_dir, made absolute
    s3: S3Settings = field(default_factory=S3Settings)

    def open(self) -> LocalRegistry | S3Registry:
        s3 = self.s3
        if s3.bucket:
            return S3Registry(
                s3.bucket,
                s3.prefix,
                endpoint_url=s3.endpoint_url,
                region_name=s3.region,
                aws_access_key_id=secret(s3.access_key_id),
                aws_secret_access_key=secret(s3.secret_access_key),
            )
        if not self.local_dir:
            raise RegistryError(
                "no model registry configured: set EMOTION_MONITOR_MODEL__REGISTRY_DIR or "
                "EMOTION_MONITOR_S3__BUCKET"
            )
        return LocalRegistry(self.local_dir)

    def where(self) -> str:
        return f"s3://{self.s3.bucket}/{self.s3.prefix}" if self.s3.bucket else str(self.local_dir)


def registry_spec(s: Settings) -> RegistrySpec:
    return RegistrySpec(local_dir=str(Path(s.model.registry_dir).expanduser().resolve()), s3=s.s3)


def resolve_version(
    registry: LocalRegistry | S3Registry, name: str, version: str, cache_dir: Path
) -> tuple[str, Path]:
    """(exact version, local directory holding it): a local registry's own directory, or an
    S3 version downloaded once into `cache_dir` (renamed into place, so a half-downloaded
    copy is never loaded, also when several replicas on a node pull at once)."""
    exact = registry.latest(name) if version == "latest" else version
    check_version(name, exact)
    if isinstance(registry, LocalRegistry):
        return exact, registry.path(name, exact)
    dest = cache_dir / name / exact
    if (dest / "model.onnx").is_file():
        return exact, dest
    tmp = dest.with_name(f".{exact}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    registry.pull(name, exact, tmp)
    try:
        tmp.rename(dest)
    except OSError:  # another replica won the race; its copy is complete
        shutil.rmtree(tmp, ignore_errors=True)
    return exact, dest
