"""The model registry on a local directory and on a real S3-compatible server (moto)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from serve_app.config.settings import S3Settings
from serve_app.model.registry import LocalRegistry, RegistryError, RegistrySpec, S3Registry, resolve_version
from tooling.net import free_port

pytestmark = pytest.mark.integration


def fake_artifact(root: Path, tag: str) -> Path:
    d = root / f"art-{tag}"
    (d / "sub").mkdir(parents=True)
    (d / "model.onnx").write_bytes(b"onnx-" + tag.encode())
    (d / "labels.json").write_text('{"labels": ["a"]}')
    (d / "sub" / "extra.txt").write_text(tag)
    return d


@pytest.mark.unit
def test_local_registry_push_pull_latest(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    reg.push("emotion", "v1", fake_artifact(tmp_path, "v1"))
    reg.push("emotion", "v2", fake_artifact(tmp_path, "v2"))
    assert reg.versions("emotion") == ["v1", "v2"]
    assert reg.latest("emotion") == "v2"
    out = reg.pull("emotion", "v1", tmp_path / "pulled")
    assert (out / "model.onnx").read_bytes() == b"onnx-v1"
    assert (out / "sub" / "extra.txt").read_text() == "v1"
    assert reg.path("emotion").name == "v2"


@pytest.mark.unit
@pytest.mark.parametrize("version", ["../escape", "", "a/b", ".hidden"])
def test_registry_rejects_unsafe_versions(tmp_path: Path, version: str) -> None:
    with pytest.raises(RegistryError):
        LocalRegistry(tmp_path).push("emotion", version, fake_artifact(tmp_path, "x"))


@pytest.mark.unit
def test_registry_refuses_a_directory_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match=r"no model\.onnx"):
        LocalRegistry(tmp_path / "r").push("emotion", "v1", tmp_path / "empty")
    with pytest.raises(RegistryError, match="not in"):
        LocalRegistry(tmp_path / "r").pull("emotion", "v9", tmp_path / "x")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("moto", reason="moto[server] is in the dev extra")
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("moto S3 server did not start")
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture(scope="module")
def s3_client(s3_endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.mark.integration
def test_s3_registry_round_trip(tmp_path: Path, s3_client: Any) -> None:
    client = s3_client
    client.create_bucket(Bucket="models")
    reg = S3Registry("models", "registry", client=client)
    with pytest.raises(RegistryError):
        reg.latest("emotion")
    reg.push("emotion", "v1", fake_artifact(tmp_path, "v1"))
    reg.push("emotion", "v2", fake_artifact(tmp_path, "v2"))
    assert reg.versions("emotion") == ["v1", "v2"]
    assert reg.latest("emotion") == "v2"
    out = reg.pull("emotion", "latest", tmp_path / "pulled")
    assert (out / "model.onnx").read_bytes() == b"onnx-v2"
    assert (out / "sub" / "extra.txt").read_text() == "v2"
    with pytest.raises(RegistryError, match="not in s3"):
        reg.pull("emotion", "v3", tmp_path / "nothing")
    # A retrained candidate (training/retrain.py) is stored without moving LATEST.
    reg.push("emotion", "v3-candidate", fake_artifact(tmp_path, "v3-candidate"), latest=False)
    assert reg.latest("emotion") == "v2" and "v3-candidate" in reg.versions("emotion")


@pytest.mark.unit
def test_resolve_version_on_a_local_registry_is_its_own_directory(tmp_path: Path) -> None:
    reg = LocalRegistry(tmp_path / "reg")
    reg.push("emotion", "v1", fake_artifact(tmp_path, "v1"))
    reg.push("emotion", "v2", fake_artifact(tmp_path, "v2"))
    assert resolve_version(reg, "emotion", "latest", tmp_path / "cache") == (
        "v2",
        tmp_path / "reg" / "emotion" / "v2",
    )
    assert resolve_version(reg, "emotion", "v1", tmp_path / "cache")[1].name == "v1"
    assert not (tmp_path / "cache").exists()  # nothing copied
    with pytest.raises(RegistryError, match="not in"):
        resolve_version(reg, "emotion", "v9", tmp_path / "cache")


@pytest.mark.unit
def test_registry_spec_hides_credentials_and_picks_the_backend(tmp_path: Path) -> None:
    s3 = {"bucket": "b", "access_key_id": "AKIA-TEST-ID", "secret_access_key": "s3cr3t-value"}
    spec = RegistrySpec(s3=S3Settings.model_validate(s3))
    assert "s3cr3t-value" not in repr(spec) and "AKIA-TEST-ID" not in repr(spec)
    assert spec.where() == "s3://b/models"
    assert isinstance(RegistrySpec(local_dir=str(tmp_path)).open(), LocalRegistry)
    with pytest.raises(RegistryError, match="REGISTRY_DIR"):
        RegistrySpec().open()


@pytest.mark.integration
def test_resolve_version_downloads_an_s3_version_once(tmp_path: Path, s3_client: Any) -> None:
    client = s3_client
    client.create_bucket(Bucket="resolve")
    reg = S3Registry("resolve", "registry", client=client)
    reg.push("sentiment", "s1", fake_artifact(tmp_path, "s1"))
    version, path = resolve_version(reg, "sentiment", "latest", tmp_path / "cache")
    assert version == "s1" and path == tmp_path / "cache" / "sentiment" / "s1"
    assert (path / "model.onnx").read_bytes() == b"onnx-s1"
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no temp copy left
    # The second resolve is served from the cache: it works with the bucket's copy gone.
    client.delete_object(Bucket="resolve", Key="registry/sentiment/s1/model.onnx")
    assert resolve_version(reg, "sentiment", "s1", tmp_path / "cache") == ("s1", path)
