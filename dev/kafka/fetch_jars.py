#!/usr/bin/env python3
"""Fetch the test broker's classpath, pinned in dev/kafka/jars.lock, from Maven Central.

    python3 dev/kafka/fetch_jars.py DEST    make DEST hold exactly the locked jars (verified)
    python3 dev/kafka/fetch_jars.py --relock [--root GROUP:ARTIFACT:VERSION ...]
                                            maintainers: re-resolve the lock with Maven

Stdlib only, so a fresh clone needs neither Maven nor Java to get Kafka: every jar is checked
against the SHA-256 in the lock before it lands in DEST, jars the lock no longer names are
removed (DEST is the broker's whole classpath), and a second run downloads nothing.

Relocking (e.g. a new Kafka release: ``--root org.apache.kafka:kafka_2.13:3.9.3``) is the one
step that needs ``mvn``: Maven resolves the transitive runtime dependencies of the roots, this
script downloads each jar, checks it against Central's published ``.sha1`` and writes its
SHA-256 into the lock. Roots not given keep the lock's ``# root:`` lines.

IOTMON_MAVEN_REPO points at a Maven Central mirror instead (same layout).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
LOCK = HERE / "jars.lock"
REPO_URL = os.environ.get("IOTMON_MAVEN_REPO", "https://repo1.maven.org/maven2").rstrip("/")
STAMP = ".stamp"  # in DEST: SHA-256 of the lock DEST was last completed from
TRIES = 4
TIMEOUT_S = 60
PARALLEL = 4


@dataclass(frozen=True, slots=True)
class Jar:
    group: str
    artifact: str
    version: str
    sha256: str = ""

    @property
    def coordinate(self) -> str:
        return f"{self.group}:{self.artifact}:{self.version}"

    @property
    def filename(self) -> str:
        return f"{self.artifact}-{self.version}.jar"

    @property
    def url(self) -> str:
        group = self.group.replace(".", "/")
        return f"{REPO_URL}/{group}/{self.artifact}/{self.version}/{self.filename}"


class FetchError(Exception):
    pass


def log(message: str) -> None:
    print(f"fetch_jars: {message}", file=sys.stderr, flush=True)


def parse_coordinate(text: str, sha256: str = "") -> Jar:
    parts = text.split(":")
    if len(parts) != 3 or not all(parts):
        raise FetchError(f"bad coordinate {text!r}: expected GROUP:ARTIFACT:VERSION")
    group, artifact, version = parts
    return Jar(group, artifact, version, sha256)


def read_lock(path: Path) -> tuple[list[str], list[Jar]]:
    """The lock's roots (``# root: g:a:v``) and its jars (``g:a:v sha256`` lines)."""
    roots: list[str] = []
    jars: list[Jar] = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if line.startswith("# root:"):
            roots.append(line.removeprefix("# root:").strip())
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 2 or not re.fullmatch(r"[0-9a-f]{64}", fields[1]):
            raise FetchError(f"{path}:{number}: expected 'GROUP:ARTIFACT:VERSION SHA256'")
        jars.append(parse_coordinate(fields[0], fields[1]))
    if not jars:
        raise FetchError(f"{path} names no jars")
    return roots, jars


def sha_of(path: Path, algorithm: str = "sha256") -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, target: Path) -> None:
    """``url`` to ``target``, retrying transient failures (a 404 is final)."""
    for attempt in range(1, TRIES + 1):
        try:
            with (
                urllib.request.urlopen(url, timeout=TIMEOUT_S) as response,
                target.open("wb") as out,
            ):
                shutil.copyfileobj(response, out, 1 << 20)
            return
        except urllib.error.HTTPError as exc:
            if exc.code == 404 or attempt == TRIES:
                raise FetchError(f"{url}: HTTP {exc.code}") from None
        except (OSError, TimeoutError) as exc:
            if attempt == TRIES:
                raise FetchError(f"{url}: {exc} (network to Maven Central?)") from None
        time.sleep(2**attempt)


def fetch_one(jar: Jar, dest: Path) -> bool:
    """Make ``dest/jar.filename`` the verified jar; True if it had to be downloaded."""
    target = dest / jar.filename
    if target.is_file() and sha_of(target) == jar.sha256:
        return False
    part = dest / f".{jar.filename}.part"
    try:
        download(jar.url, part)
        got = sha_of(part)
        if got != jar.sha256:
            raise FetchError(
                f"{jar.url}: SHA-256 {got} but jars.lock pins {jar.sha256}; not using it "
                "(a corrupt download or a tampered mirror; retry, or relock if the lock is wrong)"
            )
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)
    return True


def fetch(dest: Path, lock: Path) -> int:
    _, jars = read_lock(lock)
    stamp = sha_of(lock)
    dest.mkdir(parents=True, exist_ok=True)
    stamp_file = dest / STAMP
    complete = all((dest / jar.filename).is_file() for jar in jars)
    if complete and stamp_file.is_file() and stamp_file.read_text().strip() == stamp:
        return 0
    stamp_file.unlink(missing_ok=True)
    log(f"checking {len(jars)} jars in {dest} against {lock.name}")
    with concurrent.futures.ThreadPoolExecutor(PARALLEL) as pool:
        fetched = sum(pool.map(lambda jar: fetch_one(jar, dest), jars))
    wanted = {jar.filename for jar in jars}
    for stale in dest.glob("*.jar"):
        if stale.name not in wanted:  # the directory is the classpath: nothing else may stay
            stale.unlink()
    stamp_file.write_text(stamp + "\n")
    log(f"{fetched} downloaded, {len(jars) - fetched} already there")
    return 0


# ------------------------------------------------------------------------------------- relock

POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.iotmon</groupId>
  <artifactId>iotmon-kafka-broker-relock</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
{dependencies}
  </dependencies>
</project>
"""
DEPENDENCY = """    <dependency>
      <groupId>{group}</groupId><artifactId>{artifact}</artifactId><version>{version}</version>
    </dependency>"""
# `mvn dependency:list` output: "   group:artifact:jar:version:scope -- module ..."
LISTED = re.compile(r"^\s+([\w.\-]+):([\w.\-]+):jar:([\w.\-]+):(compile|runtime)\b", re.M)


def resolve_with_maven(roots: list[Jar]) -> list[Jar]:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise FetchError("--relock needs Maven (mvn on PATH) to resolve the dependency tree")
    with tempfile.TemporaryDirectory() as tmp:
        pom = Path(tmp) / "pom.xml"
        listing = Path(tmp) / "deps.txt"
        dependencies = "\n".join(
            DEPENDENCY.format(group=r.group, artifact=r.artifact, version=r.version) for r in roots
        )
        pom.write_text(POM.format(dependencies=dependencies))
        command = [mvn, "-B", "-q", "-f", str(pom), "dependency:list"]
        command += ["-DincludeScope=runtime", f"-DoutputFile={listing}"]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise FetchError(f"mvn dependency:list failed:\n{done.stdout}{done.stderr}")
        found = [Jar(g, a, v) for g, a, v, _scope in LISTED.findall(listing.read_text())]
    if not found:
        raise FetchError("mvn listed no dependencies")
    return sorted(set(found), key=lambda jar: jar.coordinate)


def pin(jar: Jar, workdir: Path) -> Jar:
    """Download ``jar``, check it against Central's ``.sha1``, return it with its SHA-256."""
    target = workdir / jar.filename
    download(jar.url, target)
    sha1_file = workdir / f"{jar.filename}.sha1"
    download(f"{jar.url}.sha1", sha1_file)
    published = sha1_file.read_text().split()[0].lower()
    if sha_of(target, "sha1") != published:
        raise FetchError(f"{jar.url}: SHA-1 differs from the published {published}")
    return Jar(jar.group, jar.artifact, jar.version, sha_of(target))


def relock(lock: Path, root_args: list[str]) -> int:
    roots_text = root_args or (read_lock(lock)[0] if lock.exists() else [])
    if not roots_text:
        raise FetchError(f"no roots: pass --root GROUP:ARTIFACT:VERSION (none in {lock})")
    roots = [parse_coordinate(text) for text in roots_text]
    jars = resolve_with_maven(roots)
    log(f"Maven resolved {len(jars)} jars; downloading them to pin their checksums")
    with tempfile.TemporaryDirectory() as tmp, concurrent.futures.ThreadPoolExecutor(4) as pool:
        pinned = list(pool.map(lambda jar: pin(jar, Path(tmp)), jars))
    lines = [
        "# Classpath of the test broker (dev/kafka/kafka.sh), fetched by dev/kafka/fetch_jars.py.",
        "# Generated by `python3 dev/kafka/fetch_jars.py --relock` (needs mvn): every runtime jar",
        "# of the roots below, as Maven resolves them, with its SHA-256 (each checked against",
        "# Maven Central's published .sha1 when pinned). Edit a root's version and relock.",
        *(f"# root: {root.coordinate}" for root in roots),
        *(f"{jar.coordinate} {jar.sha256}" for jar in pinned),
    ]
    lock.write_text("\n".join(lines) + "\n")
    log(f"wrote {lock} ({len(pinned)} jars)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", nargs="?", type=Path, help="directory to fill with the jars")
    parser.add_argument("--lock", type=Path, default=LOCK, help=f"lock file (default {LOCK})")
    parser.add_argument("--relock", action="store_true", help="re-resolve the lock with mvn")
    parser.add_argument("--root", action="append", default=[], help="GROUP:ARTIFACT:VERSION")
    args = parser.parse_args(argv)
    try:
        if args.relock:
            return relock(args.lock, args.root)
        if args.dest is None:
            parser.error("DEST is required (or --relock)")
        return fetch(args.dest, args.lock)
    except FetchError as exc:
        log(f"error: {exc}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
