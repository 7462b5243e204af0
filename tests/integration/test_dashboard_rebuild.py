"""Where Node and the npm packages are installed, the dashboard bundle is rebuilt and compared
byte for byte with the committed one (the hash checks without Node are in
tests/unit/test_dashboard_assets.py). It starts a Node process, so it is not a unit test."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.unit.test_dashboard_assets import PAGES, STATIC, WEB, manifest


@pytest.mark.skipif(not shutil.which("node") or not (WEB / "node_modules" / "esbuild").exists(),
                    reason="needs Node and `npm ci` in web/ (make assets) to rebuild")
def test_rebuild_is_byte_identical(tmp_path: Path) -> None:
    subprocess.run(["node", "build.mjs", str(tmp_path)], cwd=WEB, check=True,
                   capture_output=True, timeout=300)
    for name in [*PAGES.values(), "manifest.json", *manifest()["files"].values()]:
        assert (tmp_path / name).read_bytes() == (STATIC / name).read_bytes(), name
