"""Build hook: the JupyterLab panel is built with Node.js when it is there, skipped when not.

`pip install .` or `pip install -e .` from a source tree runs `npm install && npm run build`
in ``labextension/`` (through hatch-jupyter-builder's npm builder), which writes the prebuilt
extension to ``durable_nb/labextension``; the wheel ships it as shared data. Without
Node.js 20+ and npm the install still succeeds, without the panel, and says so in one line
(pip shows it with ``-v``; the server extension says it again at start).

A non-editable build reuses an existing build (e.g. from an sdist) without Node.
``HATCH_JUPYTER_BUILDER_SKIP_NPM=1`` skips the npm build on request;
``DURABLE_NB_REQUIRE_LABEXTENSION=1`` makes a missing panel an error (release builds).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

NODE_MAJOR = 20
SOURCE = "labextension"
OUTPUT = "durable_nb/labextension"
BUILT = ("package.json", "static/style.js")
SHARED = "share/jupyter/labextensions/durable_nb"
PANEL = 'the JupyterLab "Durable runs" panel (live runs and approvals in the sidebar)'
GET_NODE = "install Node.js 20+ with npm (https://nodejs.org) and reinstall"


def node_problem() -> str | None:
    """Why the panel cannot be built here (no npm, no or too old Node.js), or None."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        missing = " and ".join(n for n, p in (("Node.js", node), ("npm", npm)) if not p)
        return f"{missing} not found on PATH"
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`node --version` failed ({exc})"
    found = re.match(r"v?(\d+)", out.stdout.strip())
    if not found:
        return f"`node --version` printed {out.stdout.strip()!r}, not a version"
    if int(found.group(1)) < NODE_MAJOR:
        return f"Node.js {out.stdout.strip()} found, {NODE_MAJOR} or newer needed"
    return None


class LabExtensionBuildHook(BuildHookInterface):
    """Builds the Lab panel when Node.js allows and ships it only when it exists."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name not in ("wheel", "sdist"):
            return
        root = Path(self.root)
        output = root / OUTPUT
        built = all((output / f).is_file() for f in BUILT)
        if not (built and version == "standard"):
            built = self._build(version, root, built)
        if built and self.target_name == "wheel":
            build_data["shared_data"][str(output)] = SHARED
            build_data["shared_data"][str(root / SOURCE / "install.json")] = (
                f"{SHARED}/install.json")

    def _build(self, version: str, root: Path, built: bool) -> bool:
        """Run the npm build if Node.js is there; say what is skipped if not."""
        skip = os.environ.get("HATCH_JUPYTER_BUILDER_SKIP_NPM") == "1"
        problem = "the npm build is skipped on request" if skip else node_problem()
        if problem is None:
            from hatch_jupyter_builder.utils import npm_builder

            try:
                npm_builder(self.target_name, version, path=str(root / SOURCE),
                            build_cmd="build", npm=["npm"])
            except Exception as exc:
                raise RuntimeError(
                    f"durable_nb: building {PANEL} with npm in {SOURCE}/ failed ({exc}; its "
                    "output is above). Fix that, or set HATCH_JUPYTER_BUILDER_SKIP_NPM=1 to "
                    "install without the panel.") from exc
            missing = [f for f in BUILT if not (root / OUTPUT / f).is_file()]
            if missing:
                raise RuntimeError(
                    f"durable_nb: the npm build in {SOURCE}/ did not write "
                    f"{', '.join(f'{OUTPUT}/{f}' for f in missing)}; check its output above.")
            return True
        if os.environ.get("DURABLE_NB_REQUIRE_LABEXTENSION") == "1":
            raise RuntimeError(
                f"durable_nb: {PANEL} cannot be built: {problem}; {GET_NODE} "
                "(DURABLE_NB_REQUIRE_LABEXTENSION=1 makes this an error).")
        if built:
            self.app.display_warning(
                f"durable_nb: {problem}: {PANEL} is the existing build in {OUTPUT}, which may "
                f"be out of date; to rebuild it, {GET_NODE}.")
            return True
        self.app.display_warning(
            f"durable_nb: {problem}: installing without {PANEL}; everything else works. "
            f"To get the panel, {GET_NODE}.")
        return False
