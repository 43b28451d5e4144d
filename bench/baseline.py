"""iotmon at an older git revision, built in a place of its own, to run beside the current tree.

``python -m bench --baseline REV`` resolves REV to a commit, exports that commit's tree with
``git archive`` into ``.cache/bench/baseline-<sha>/src`` (no git worktree: nothing in the
repository changes) and pip-installs it into ``.cache/bench/baseline-<sha>/venv``. Its
dependencies are pinned to the versions installed in the current virtualenv (``pip freeze``
as a constraints file), and it is installed editable like ``make install`` installs the
current tree: a non-editable install imports without setuptools' editable finder and
started ~20 % sooner than the very same commit installed editable (``--baseline HEAD``), a
difference that is not the code's. A marker written after a successful install makes the
next run with the same commit reuse it.

Old revisions may not know flags the bench passes to the current tree; `consume_flags` reads
the flags a revision's ``iotmon consume --help`` lists, and `common_args` keeps only what
both understand.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.environment import REPO, _call

__all__ = ["Baseline", "common_args", "consume_flags", "ensure_baseline"]

Log = Callable[[str], None]
_READY = ".bench-baseline.json"
_INSTALL = "editable, dependencies pinned to the current virtualenv's"
# An option line of rich's help panels starts with its flag(s): `│ --live  --no-live  <bool> …`.
_OPTION_LINE = re.compile(r"^\W*((?:--[a-z][\w-]*\s+)+)", re.MULTILINE)
_ANY_FLAG = re.compile(r"(?<![\w-])--[a-z][\w-]*")


@dataclass(frozen=True, slots=True)
class Baseline:
    rev: str
    """As given on the command line."""
    sha: str
    python: str
    iotmon: str
    """The revision's ``iotmon`` script."""
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:7]

    @property
    def label(self) -> str:
        """The system's name in logs and results: ``iotmon@<short sha>``."""
        return f"iotmon@{self.short}"


def ensure_baseline(rev: str, cache: Path, log: Log) -> Baseline:
    """The installed baseline for ``rev``, built on first use; RuntimeError saying what to do
    if the revision is unknown or cannot be installed."""
    sha = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    if sha is None:
        raise RuntimeError(
            f"--baseline {rev}: not a commit in {REPO} (give a sha, tag or branch that "
            "`git rev-parse` knows; fetch it first if it is only on a remote)"
        )
    subject = _git("log", "-1", "--format=%s", sha) or ""
    home = cache / f"baseline-{sha}"
    venv = home / "venv"
    python, script = venv / "bin" / "python", venv / "bin" / "iotmon"
    ready = home / _READY
    baseline = Baseline(rev=rev, sha=sha, python=str(python), iotmon=str(script), subject=subject)
    if _install_of(ready) == _INSTALL and python.exists() and script.exists():
        log(f"baseline {baseline.label} ({subject}): reusing {home}")
        return baseline
    log(f"baseline {baseline.label} ({subject}): building in {home} (first use of this commit)")
    shutil.rmtree(home, ignore_errors=True)
    src = home / "src"
    src.mkdir(parents=True)
    archive = home / "src.tar"
    with archive.open("wb") as out:
        done = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", sha], stdout=out, check=False
        )
    if done.returncode != 0:
        raise RuntimeError(f"--baseline {rev}: `git archive {sha}` failed")
    with tarfile.open(archive) as tar:
        tar.extractall(src, filter="data")
    archive.unlink()
    constraints = home / "constraints.txt"
    constraints.write_text(_frozen())
    for argv, timeout in (
        ([sys.executable, "-m", "venv", str(venv)], 300),
        ([str(python), "-m", "pip", "install", "-q", "-U", "pip"], 600),
        ([str(python), "-m", "pip", "install", "-q", "-c", str(constraints), "-e", str(src)], 1200),
        # Bytecode now, not in whichever measured run imports a module first.
        ([str(python), "-m", "compileall", "-q", str(src / "iotmon")], 300),
    ):
        failed = _call(argv, log, timeout)
        if failed is not None:
            raise RuntimeError(
                f"--baseline {rev}: `{' '.join(Path(a).name for a in argv[:5])}` failed: "
                f"{failed} (see pip's message; the half-built {home} is rebuilt next time)"
            )
    if not script.exists():
        raise RuntimeError(f"--baseline {rev}: commit {sha} installs no `iotmon` command")
    ready.write_text(json.dumps({**asdict(baseline), "install": _INSTALL}, indent=2) + "\n")
    return baseline


def consume_flags(iotmon: str) -> frozenset[str]:
    """The flags ``iotmon consume --help`` of this installation lists."""
    env = {**os.environ, "COLUMNS": "240", "NO_COLOR": "1", "TERM": "dumb"}
    done = subprocess.run(
        [iotmon, "consume", "--help"], capture_output=True, text=True, env=env, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"`{iotmon} consume --help` failed: {done.stderr.strip()[-300:]}")
    flags = {flag for match in _OPTION_LINE.finditer(done.stdout) for flag in match[1].split()}
    # A help layout without rich's panels: every --flag the text mentions.
    return frozenset(flags or _ANY_FLAG.findall(done.stdout))


def common_args(args: Iterable[str], known: frozenset[str]) -> tuple[list[str], list[str]]:
    """``args`` without the flags ``known`` lacks (with the value that follows such a flag),
    and the flags dropped. A token not starting with ``--`` after a flag is its value."""
    kept: list[str] = []
    dropped: list[str] = []
    skipping = False
    for token in args:
        if token.startswith("--"):
            skipping = token.split("=", 1)[0] not in known
            if skipping:
                dropped.append(token)
                continue
        elif skipping:
            skipping = False
            continue
        kept.append(token)
    return kept, dropped


def _install_of(ready: Path) -> str | None:
    """How the cached baseline with marker ``ready`` was installed (None: not completely)."""
    try:
        found = json.loads(ready.read_text()).get("install")
    except (OSError, ValueError, AttributeError):
        return None
    return found if isinstance(found, str) else None


def _frozen() -> str:
    """The current virtualenv's packages, iotmon itself left out, as pip constraints."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--exclude-editable"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = [
        line
        for line in done.stdout.splitlines()
        if "==" in line and not line.lower().startswith("iotmon==")
    ]
    return "\n".join(lines) + "\n"


def _git(*args: str) -> str | None:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=60
    )
    return done.stdout.strip() or None if done.returncode == 0 else None
