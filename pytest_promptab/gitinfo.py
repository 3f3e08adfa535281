"""The git commit and branch of the project, for tagging MLflow runs and naming
saved sessions (a neutral module: tracking/ and report/ both read it).

Asks ``git`` itself (a few short-lived calls with a timeout) and, when git is
not installed or refuses, reads ``.git/HEAD`` and the refs directly. Never
raises: outside a repository, or on any trouble, the answer is an empty dict.
The remote URL is deliberately not read: it can hold credentials.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 2.0
_SHA_RE = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def git_info(path: Path) -> dict[str, str]:
    """``commit`` (full sha), ``branch`` (absent on a detached HEAD) and
    ``dirty`` (``"true"``/``"false"``, tracked files only) of the repository
    holding ``path``; ``{}`` outside git. Never raises."""
    try:
        info = _from_git_command(Path(path))
        if info is None:
            info = _from_git_files(Path(path))
        return info
    except Exception:  # noqa: BLE001 - tagging must never break a session
        return {}


def _run_git(path: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", GIT_TERMINAL_PROMPT="0", LC_ALL="C")
    try:
        return subprocess.run(
            ["git", *args],
            cwd=path,
            env=env,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None


def _from_git_command(path: Path) -> dict[str, str] | None:
    """None when git could not answer (not installed, timeout, refused),
    ``{}`` when ``path`` is not in a work tree."""
    inside = _run_git(path, "rev-parse", "--is-inside-work-tree")
    if inside is None:
        return None
    if inside.returncode != 0 or inside.stdout.strip() != "true":
        if "not a git repository" in inside.stderr:
            return {}
        return None  # e.g. "dubious ownership": fall back to reading the files
    info: dict[str, str] = {}
    commit = _run_git(path, "rev-parse", "--verify", "-q", "HEAD")
    if commit is not None and commit.returncode == 0 and _SHA_RE.match(commit.stdout.strip()):
        info["commit"] = commit.stdout.strip()
    branch = _run_git(path, "symbolic-ref", "--short", "-q", "HEAD")
    if branch is not None and branch.returncode == 0 and branch.stdout.strip():
        info["branch"] = branch.stdout.strip()
    if "commit" in info:
        status = _run_git(path, "status", "--porcelain", "--untracked-files=no")
        if status is not None and status.returncode == 0:
            info["dirty"] = "true" if status.stdout.strip() else "false"
    return info


def _find_git_dir(path: Path) -> Path | None:
    for folder in [path, *path.parents]:
        dot_git = folder / ".git"
        if dot_git.is_dir():
            return dot_git
        if dot_git.is_file():  # worktree or submodule: "gitdir: <path>"
            text = dot_git.read_text(encoding="utf-8", errors="replace").strip()
            if text.startswith("gitdir:"):
                target = Path(text[len("gitdir:") :].strip())
                return target if target.is_absolute() else (folder / target).resolve()
            return None
    return None


def _from_git_files(path: Path) -> dict[str, str]:
    git_dir = _find_git_dir(path.resolve())
    if git_dir is None:
        return {}
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():
        common = (git_dir / commondir.read_text(encoding="utf-8").strip()).resolve()
    head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
    info: dict[str, str] = {}
    if head.startswith("ref:"):
        ref = head[len("ref:") :].strip()
        if ref.startswith("refs/heads/"):
            info["branch"] = ref[len("refs/heads/") :]
        sha = _read_ref(common, ref)
    else:
        sha = head
    if sha and _SHA_RE.match(sha):
        info["commit"] = sha
    return info


def _read_ref(common: Path, ref: str) -> str | None:
    loose = common / ref
    if loose.is_file():
        return loose.read_text(encoding="utf-8").strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text(encoding="utf-8").splitlines():
            parts = line.split(" ", 1)
            if len(parts) == 2 and parts[1].strip() == ref:
                return parts[0].strip()
    return None
