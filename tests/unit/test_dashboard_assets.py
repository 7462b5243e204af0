"""The committed dashboard build must be the build of the committed sources.

``make run`` serves ``services/web/static/`` without Node, so a source change that was not
rebuilt (``make assets``) would ship a stale page. The manifest records a hash of every build
input; it is recomputed here the way ``web/build.mjs`` computes it. Where Node and the npm
packages are installed, the bundle is also rebuilt and compared byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "web"
STATIC = ROOT / "services" / "web" / "static"


def source_hash() -> str:
    """sha256 over the build inputs, exactly as ``sourceHash()`` in web/build.mjs."""
    files = ["build.mjs", "package.json", "package-lock.json",
             *sorted(f"src/{p.name}" for p in (WEB / "src").iterdir())]
    digest = hashlib.sha256()
    for name in files:
        digest.update(f"{name}\n".encode())
        digest.update((WEB / name).read_bytes())
        digest.update(b"\n")
    return digest.hexdigest()


def manifest() -> dict:
    return json.loads((STATIC / "manifest.json").read_text(encoding="utf-8"))


def test_committed_bundle_is_built_from_the_committed_sources() -> None:
    built = manifest()
    assert built["source_sha256"] == source_hash(), (
        "web/ changed since services/web/static/ was built: run `make assets` and commit")
    package = json.loads((WEB / "package.json").read_text(encoding="utf-8"))
    assert built["version"] == package["version"]
    lock = json.loads((WEB / "package-lock.json").read_text(encoding="utf-8"))
    assert lock["packages"][""]["devDependencies"] == package["devDependencies"]


PAGES = {"app": "index.html", "docs": "docs.html"}
"""The page that loads each bundle: the dashboard, and the OpenAPI docs (Swagger UI)."""


def test_asset_names_carry_their_content_hash_and_the_page_names_them() -> None:
    built = manifest()
    for logical, name in built["files"].items():
        stem, ext = logical.split(".")
        content = (STATIC / name).read_bytes()
        assert name == f"{stem}-{hashlib.sha256(content).hexdigest()[:12]}.{ext}"
        page = (STATIC / PAGES[stem]).read_text(encoding="utf-8")
        assert f"/dashboard/assets/{name}" in page
    served = {p.name for p in STATIC.iterdir()}
    assert served == {*PAGES.values(), "manifest.json", *built["files"].values()}, (
        "stale build outputs in services/web/static/")


def test_pages_hold_no_inline_script_or_handler() -> None:
    """The Content-Security-Policy allows scripts from the app's own files only, so the pages
    must not need more: every <script> has a src, and no element carries an on* handler."""
    for page in PAGES.values():
        html = (STATIC / page).read_text(encoding="utf-8")
        scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
        assert scripts and all('src="/dashboard/assets/' in attrs and not body.strip()
                               for attrs, body in scripts), page
        assert not re.search(r"\son[a-z]+\s*=", html, flags=re.I), page
