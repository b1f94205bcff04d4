"""Replays a Dockerfile's build without a Docker daemon: the build context
after .dockerignore, each stage's COPY lines copying exactly what BuildKit
would (wildcards that match nothing copy nothing, a directory's contents go
into the destination, `--from=stage` reads an earlier stage), RUN lines run
by /bin/sh in the stage's WORKDIR. Each stage's filesystem is a directory;
absolute paths in COPY and WORKDIR are taken inside it. Only the
instructions the generated Dockerfiles use are understood (ARG, FROM ... AS,
WORKDIR, COPY, RUN, USER, EXPOSE, ENTRYPOINT in exec form); any other is an
error, so a template change cannot slip past the replay."""

import fnmatch
import json
import os
import pathlib
import re
import shutil
import subprocess


class Stage:
    def __init__(self, name, base, root):
        self.name, self.base, self.root = name, base, root
        self.workdir = "/"
        self.user = None
        self.entrypoint = None
        self.expose = []

    def path(self, p):
        """A path of the stage's filesystem, on this machine."""
        absolute = p if p.startswith("/") else os.path.join(self.workdir, p)
        return self.root / os.path.normpath(absolute).lstrip("/")


def instructions(text):
    """(keyword, argument) per instruction, continuation lines joined,
    comments and blank lines dropped."""
    out, pending = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, arg = line.partition(" ")
        out.append((keyword.upper(), arg.strip()))
    return out


def ignore_patterns(context):
    path = context / ".dockerignore"
    if not path.exists():
        return []
    patterns = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").strip().strip("/")
        patterns.append((negate, _pattern_regex(pattern)))
    return patterns


def _pattern_regex(pattern):
    """Docker's .dockerignore matching (Go filepath.Match plus `**`)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pattern.startswith("**", i):
            out += ".*"
            i += 2
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def ignored(rel, patterns):
    """Whether context path `rel` is left out: a pattern matching it or one
    of its parent directories; the last matching pattern decides."""
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for negate, regex in patterns:
        if any(regex.match(c) for c in candidates):
            verdict = not negate
    return verdict


def build_context(context, into):
    """The files Docker sends: the context minus .dockerignore's matches."""
    patterns = ignore_patterns(context)
    for path in sorted(context.rglob("*")):
        rel = path.relative_to(context).as_posix()
        if path.is_dir() or ignored(rel, patterns):
            continue
        target = into / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    return into


def _copy(sources_root, sources, dest_path, dest_is_dir):
    """COPY semantics for paths under sources_root."""
    matched = []
    for src in sources:
        pattern = src.strip("/") or "."
        if any(ch in pattern for ch in "*?["):
            matched += [p for p in sorted(sources_root.glob(pattern)) if fnmatch.fnmatch(p.relative_to(sources_root).as_posix(), pattern)]
        elif (sources_root / pattern).exists():
            matched.append(sources_root / pattern)
        else:
            raise AssertionError(f"COPY: {src} is not in the build context")
    for src in matched:
        if src.is_dir():
            shutil.copytree(src, dest_path, dirs_exist_ok=True, symlinks=True)
        else:
            target = dest_path / src.name if dest_is_dir or len(matched) > 1 else dest_path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target)


def replay(dockerfile, context, workspace, env, run_timeout=3600):
    """Runs the build; returns the stages by name (the last also as
    stages["final"])."""
    context_copy = build_context(pathlib.Path(context), workspace / "context")
    stages, stage = {}, None
    for keyword, arg in instructions(pathlib.Path(dockerfile).read_text()):
        if keyword == "ARG" and stage is None:
            continue
        if keyword == "FROM":
            m = re.match(r"(\S+)(?:\s+AS\s+(\S+))?$", arg, re.IGNORECASE)
            name = m.group(2) or f"stage{len(stages)}"
            stage = Stage(name, m.group(1), workspace / "stages" / name)
            stage.root.mkdir(parents=True)
            stages[name] = stage
        elif keyword == "WORKDIR":
            stage.workdir = os.path.join(stage.workdir, arg)
            stage.path(".").mkdir(parents=True, exist_ok=True)
        elif keyword == "COPY":
            words = arg.split()
            source_root = context_copy
            while words[0].startswith("--"):
                flag, _, value = words.pop(0)[2:].partition("=")
                if flag != "from":
                    raise AssertionError(f"COPY --{flag} is not replayed")
                source_root = stages[value].root
            *sources, dest = words
            if source_root is not context_copy:
                sources = [s.lstrip("/") for s in sources]
            _copy(source_root, sources, stage.path(dest), dest.endswith("/") or dest in (".", "./"))
        elif keyword == "RUN":
            r = subprocess.run(["/bin/sh", "-c", arg], cwd=stage.path("."), env=env, capture_output=True,
                               text=True, timeout=run_timeout)
            if r.returncode != 0:
                raise AssertionError(f"RUN {arg[:200]} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}")
        elif keyword == "USER":
            stage.user = arg
        elif keyword == "EXPOSE":
            stage.expose += [int(p) for p in arg.split()]
        elif keyword == "ENTRYPOINT":
            stage.entrypoint = json.loads(arg)
        else:
            raise AssertionError(f"the replay does not understand {keyword} {arg}")
    stages["final"] = stage
    return stages
