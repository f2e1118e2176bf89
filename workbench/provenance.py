"""Where a result came from: package version, git commit of the source tree, machine."""

from __future__ import annotations

import functools
import os
import platform
import subprocess

__all__ = ["git_commit", "provenance"]


@functools.lru_cache(maxsize=1)
def git_commit() -> str:
    """The git commit of the installed source tree (``+dirty`` if modified), or ``"unknown"``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, cwd=root, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            cwd=root,
            timeout=10,
        ).stdout.strip()
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict[str, str]:
    from workbench import __version__

    return {
        "workbench_version": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
