"""Candidate versions: the shadow and canary configuration, sticky sampling, and the edit of
serve_config.yaml that promotion, rollback and retraining make.

The Classifier's user_config carries `candidate: {version, shadow_share, canary_share}`;
`serve deploy` with a changed one calls `reconfigure()`, which loads (or drops) the
candidate beside the live model without a restart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from serve_app.model.preprocess import normalize_keyword
from serve_app.model.registry import RegistryError, check_version


class CandidateConfig(BaseModel):
    """A registry version run beside the live one: `shadow_share` of the scored posts are
    also scored by it (stored as pairs, never answered), `canary_share` of the keywords are
    answered by it. No version: off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: str | None = None
    shadow_share: float = Field(0.1, ge=0.0, le=1.0)
    canary_share: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("version")
    @classmethod
    def version_well_formed(cls, v: str | None) -> str | None:
        if v:
            try:
                check_version("candidate", v)
            except RegistryError as exc:  # pydantic reports ValueErrors with the field's name
                raise ValueError(str(exc)) from None
        return v or None

    @property
    def active(self) -> bool:
        return self.version is not None

    @classmethod
    def from_user_config(cls, raw: object) -> CandidateConfig:
        """The user_config's `candidate` value; absent, null or {} means off."""
        if raw is None or raw == {}:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValueError(
                "candidate must be a mapping like {version: v2, shadow_share: 0.1, canary_share: 0}"
            )
        return cls.model_validate(dict(raw))


def share_point(key: str) -> float:
    """A stable point in [0, 1) for a key (a post id, a normalized keyword): the same key
    always lands on the same side of a share, in every replica and process (no PYTHONHASHSEED)."""
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def sampled(key: str, share: float) -> bool:
    return share > 0 and share_point(key) < share


def keyword_in_canary(keyword: str, canary_share: float) -> bool:
    """Whether this keyword is answered by the candidate (sticky by its normalized form)."""
    return sampled("canary:" + normalize_keyword(keyword), canary_share)


def in_canary(keyword: str, cfg: CandidateConfig) -> bool:
    return cfg.active and keyword_in_canary(keyword, cfg.canary_share)


def in_shadow(post_id: str, cfg: CandidateConfig) -> bool:
    return cfg.active and sampled("shadow:" + post_id, cfg.shadow_share)


class ServeConfigEditError(ValueError):
    """serve_config.yaml does not have the Classifier user_config shape this edit expects."""


def _flow(value: Mapping[str, Any]) -> str:
    # One-line flow mapping: keeps the surrounding comments and layout untouched.
    return yaml.safe_dump(dict(value), default_flow_style=True, sort_keys=False).strip()


def _classifier_user_config(text: str) -> tuple[int, int, str]:
    """(start, end) line indices of the Classifier's user_config block and its keys' indent."""
    lines = text.splitlines()
    start = None
    for i, line in enumerate(lines):
        if re.match(r"^\s*-?\s*name:\s*Classifier\s*$", line):
            for j in range(i + 1, len(lines)):
                if re.match(r"^\s*user_config:\s*$", lines[j]):
                    start = j
                    break
            break
    if start is None:
        raise ServeConfigEditError("no `user_config:` under the Classifier deployment in the Serve config")
    base = len(lines[start]) - len(lines[start].lstrip())
    end, indent = start + 1, ""
    while end < len(lines):
        stripped = lines[end].strip()
        if stripped and not stripped.startswith("#"):
            ind = len(lines[end]) - len(lines[end].lstrip())
            if ind <= base:
                break
            indent = indent or lines[end][:ind]
        end += 1
    return start, end, indent or " " * (base + 2)


def _set_key(lines: list[str], start: int, end: int, indent: str, key: str, value: str) -> int:
    """Replace `key:` (one line) inside lines[start:end], or append it there; the new end."""
    for i in range(start + 1, end):
        if re.match(rf"^{re.escape(indent)}{key}:", lines[i]):
            lines[i] = f"{indent}{key}: {value}"
            return end
    # After the last non-blank line of the block, so a comment below it stays below.
    at = end
    while at > start + 1 and not lines[at - 1].strip():
        at -= 1
    lines.insert(at, f"{indent}{key}: {value}")
    return end + 1


def rewrite_serve_config(
    path: Path,
    *,
    model_versions: Mapping[str, str] | None = None,
    candidate: CandidateConfig | None = None,
) -> dict[str, Any]:
    """Set the Classifier's `model_versions` and/or `candidate` in a Serve config file,
    keeping every comment and other line as it was (a text edit of those keys' lines;
    ruamel.yaml is not a dependency). An inactive candidate is written as `{}`.
    Returns the Classifier's user_config as parsed back from the new text."""
    text = path.read_text()
    lines = text.splitlines()
    start, end, indent = _classifier_user_config(text)
    if model_versions is not None:
        end = _set_key(lines, start, end, indent, "model_versions", _flow(model_versions))
    if candidate is not None:
        value = _flow(candidate.model_dump()) if candidate.active else "{}"
        end = _set_key(lines, start, end, indent, "candidate", value)
    new_text = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
    user_config = classifier_user_config(yaml.safe_load(new_text))
    if model_versions is not None and dict(user_config.get("model_versions") or {}) != dict(model_versions):
        raise ServeConfigEditError(f"rewriting model_versions in {path} did not round-trip")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new_text)
    tmp.replace(path)  # readers (serve deploy) never see a half-written file
    return user_config


def classifier_user_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The Classifier deployment's user_config in a parsed Serve config ({} if none)."""
    for app in config.get("applications") or []:
        for dep in app.get("deployments") or []:
            if dep.get("name") == "Classifier":
                return dict(dep.get("user_config") or {})
    return {}


def read_rollout(path: Path) -> tuple[dict[str, str], CandidateConfig]:
    """(model_versions, candidate) as a Serve config file sets them."""
    uc = classifier_user_config(yaml.safe_load(path.read_text()) or {})
    versions = {str(k): str(v) for k, v in (uc.get("model_versions") or {}).items() if v}
    return versions, CandidateConfig.from_user_config(uc.get("candidate"))
