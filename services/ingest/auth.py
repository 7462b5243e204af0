"""Per-source API keys: each sending system gets its own key, stored only as a SHA-256 hash.

A key authorises exactly one source, so a leaked web-form key cannot inject call-center
feedback. Without a keys file the API is open: that is the embedded demo's loopback setup,
and ingest logs a warning at start so a deployment cannot miss it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from pathlib import Path

import yaml
from fastapi import HTTPException

HEADER = "X-API-Key"
_HEX = re.compile(r"^[0-9a-f]{64}$")


def key_hash(key: str) -> str:
    """The hex SHA-256 that the keys file stores for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


class ApiKeys:
    """The configured keys, by source; checks a presented key against one source."""

    def __init__(self, hashes: dict[str, list[str]]) -> None:
        self._hashes = hashes

    @classmethod
    def load(cls, path: Path) -> ApiKeys:
        """Read the keys file; errors name the file and the entry to fix."""
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ValueError(f"VOC_INGEST_API_KEYS_FILE={path}: cannot read it: {exc}") from exc
        if not isinstance(document, dict) or not document:
            raise ValueError(f"VOC_INGEST_API_KEYS_FILE={path}: expected a mapping "
                             "'source: <sha256 hex of the key>'")
        hashes: dict[str, list[str]] = {}
        for source, value in document.items():
            values = value if isinstance(value, list) else [value]
            for entry in values:
                if not isinstance(entry, str) or not _HEX.match(entry.lower()):
                    raise ValueError(
                        f"VOC_INGEST_API_KEYS_FILE={path}: source {source!r} needs the sha256 "
                        "hex (64 characters) of its key, e.g. from "
                        "`printf %s \"$KEY\" | sha256sum`")
            hashes[str(source)] = [v.lower() for v in values]
        return cls(hashes)

    def source_of(self, key: str) -> str | None:
        """The source a key belongs to, or None for an unknown key."""
        presented = key_hash(key)
        for source, hashes in self._hashes.items():
            if any(hmac.compare_digest(presented, h) for h in hashes):
                return source
        return None

    def check(self, key: str | None, sources: set[str]) -> None:
        """Raise 401 without a valid key, 403 when the key belongs to another source."""
        if not key:
            raise HTTPException(status_code=401, headers={"WWW-Authenticate": HEADER},
                                detail=f"send the source's API key in the {HEADER} header")
        owner = self.source_of(key)
        if owner is None:
            raise HTTPException(status_code=401, headers={"WWW-Authenticate": HEADER},
                                detail=f"the {HEADER} is not a known key")
        others = sorted(sources - {owner})
        if others:
            raise HTTPException(status_code=403, detail=(
                f"this key belongs to source {owner!r} and may not send for {others}"))
