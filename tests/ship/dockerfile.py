"""Just enough of Docker's build semantics to check and replay our own Dockerfile without an engine.

Covers what the Dockerfile uses: stages, ARG defaults, ENV with ``$VAR``/``${VAR}``
substitution, COPY (with ``--from``), WORKDIR, RUN, and the exec forms of ENTRYPOINT,
CMD and HEALTHCHECK. ``.dockerignore`` follows Docker's rules: patterns are matched
against each path and its parent folders, ``**`` spans folders, the last match wins.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

# Where the Dockerfile puts things. The smoke test maps them into a temporary root;
# tests/ship/test_dockerfile.py checks the Dockerfile uses no other /opt or /src path.
IMAGE_PATHS = re.compile(r"(?<![\w.~/-])/(?:opt/venv|opt/dif|src)(?=/|\b)")


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def flags_and_words(self) -> tuple[dict[str, str], list[str]]:
        words = shlex.split(self.args)
        flags = {}
        while words and words[0].startswith("--"):
            key, _, value = words.pop(0)[2:].partition("=")
            flags[key] = value
        return flags, words

    def exec_form(self) -> list[str]:
        """The JSON array of ENTRYPOINT/CMD (and HEALTHCHECK after its options)."""
        text = self.args
        if self.keyword == "HEALTHCHECK":
            text = text[text.index("CMD") + 3:]
        value = json.loads(text.strip())
        assert isinstance(value, list), f"line {self.line}: {self.keyword} is not in exec form"
        return [str(v) for v in value]


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> Instruction | None:
        found = self.all(keyword)
        return found[-1] if found else None


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @classmethod
    def parse(cls, path: Path) -> Dockerfile:
        global_args: dict[str, str] = {}
        stages: list[Stage] = []
        for inst in logical_lines(path.read_text()):
            if inst.keyword == "FROM":
                words = inst.args.split()
                name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
                stages.append(Stage(substitute(words[0], global_args), name))
            elif not stages:
                assert inst.keyword == "ARG", f"line {inst.line}: only ARG may precede FROM"
                key, _, value = inst.args.partition("=")
                global_args[key.strip()] = value.strip()
            else:
                stages[-1].instructions.append(inst)
        return cls(global_args, stages)

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def args_of(self, stage: Stage) -> dict[str, str]:
        """ARG defaults visible in a stage (build args are not overridden here)."""
        values: dict[str, str] = {}
        for inst in stage.all("ARG"):
            key, _, value = inst.args.partition("=")
            values[key.strip()] = substitute(value.strip(), values)
        return values

    def env_of(self, stage: Stage, base_env: dict[str, str]) -> dict[str, str]:
        """The environment a stage's RUN steps and its container see, in instruction order."""
        env = dict(base_env)
        args: dict[str, str] = {}
        for inst in stage.instructions:
            if inst.keyword == "ARG":
                key, _, value = inst.args.partition("=")
                args[key.strip()] = substitute(value.strip(), {**args, **env})
            elif inst.keyword == "ENV":
                for pair in shlex.split(inst.args):
                    key, _, value = pair.partition("=")
                    env[key] = substitute(value, {**args, **env})
        return env


def logical_lines(text: str) -> list[Instruction]:
    """Instructions with backslash continuations joined and comments dropped."""
    out: list[Instruction] = []
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not buffer and (not line or line.startswith("#")):
            continue
        if buffer and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if not buffer:
            start = number
        if line.endswith("\\"):
            buffer += line[:-1] + " "
            continue
        buffer += line
        keyword, _, args = buffer.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
        buffer = ""
    return out


def substitute(value: str, variables: dict[str, str]) -> str:
    def repl(match: re.Match[str]) -> str:
        return variables.get(match.group(1) or match.group(2), "")

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, value)


# -- .dockerignore --------------------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3  # any folders, or none
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        else:
            char = pattern[i]
            out += "[^/]*" if char == "*" else "[^/]" if char == "?" else re.escape(char)
            i += 1
    return re.compile(out + r"\Z")


Rule = tuple[bool, str, re.Pattern[str]]  # (negated, pattern, regex)


def load_ignore(path: Path) -> list[Rule]:
    rules = []
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = (line[1:] if negate else line).strip("/")
        rules.append((negate, pattern, _pattern_regex(pattern)))
    return rules


def is_ignored(relative: str, rules: list[Rule]) -> bool:
    parts = relative.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    ignored = False
    for negate, _, regex in rules:
        if any(regex.match(p) for p in prefixes):
            ignored = not negate
    return ignored


def build_context(repo: Path, ignore_file: Path) -> list[str]:
    """Relative paths of what ``docker build`` would send (tracked by git or not): files, and
    folders with a trailing slash (an empty folder is sent too)."""
    rules = load_ignore(ignore_file)
    reincluded = [pattern for negate, pattern, _ in rules if negate]
    files = []
    for folder, dirs, names in os.walk(repo):
        base = Path(folder).relative_to(repo).as_posix()
        base = "" if base == "." else base + "/"
        # Skip ignored folders that no `!pattern` reaches into (e.g. .venv, .git): Docker
        # would send none of their files either.
        dirs[:] = [d for d in dirs if not is_ignored(base + d, rules)
                   or any(p.startswith(base + d + "/") for p in reincluded)]
        files += [base + d + "/" for d in dirs if not is_ignored(base + d, rules)]
        files += [base + n for n in names if not is_ignored(base + n, rules)]
    return sorted(files)
