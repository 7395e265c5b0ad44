"""The team-preference benchmark's inputs: real teams' ruff settings, the code pool, and ruff's findings on it.

A team states its judgement of ruff's rules in its own configuration: ``select`` (what it wants flagged),
``ignore`` and ``per-file-ignores`` (what it turned off *by name*, everywhere or for some paths). The settings of
each team are extracted once from the project's sdist (``pip download --no-deps --no-binary :all: PROJECT``,
then ``python -m benchmarks.team_data SDIST…``) into ``benchmarks/teams/NAME.json`` with the project's name,
version and licence; nothing else of the project is kept.

Labels (``label``): a finding is *unwanted* when an ``ignore`` entry or a ``per-file-ignores`` entry for its
path names its rule (a code or a prefix of it, e.g. ``D`` or ``D1``); *wanted* when ``select`` (with ruff's
defaults when only ``extend-select`` is given) keeps it; *no opinion* otherwise. A more specific selector wins,
as in ruff. Path patterns match the file's path or any of its tails at a folder boundary (``tests/**`` matches
``networkx/algorithms/tests/test_x.py``) and a pattern without a slash matches the file name, so a team's
``tests/`` rules apply to the test folders of the pool's packages.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

TEAMS_DIR = Path(__file__).with_name("teams")
#: ruff's own default rule selection, which ``extend-select`` adds to
RUFF_DEFAULT = ("E4", "E7", "E9", "F")
#: installed packages whose code is the pool (none of them is a team, nor attrs, scrapy, pip or pylint)
POOL = ("networkx", "mpmath", "matplotlib", "requests", "rich", "jinja2", "click", "werkzeug", "urllib3", "dateutil")
RESERVED = ("attrs", "attr", "scrapy", "pip", "pylint")


@dataclass(frozen=True)
class Team:
    name: str
    version: str
    licence: str
    select: tuple[str, ...]
    ignore: tuple[str, ...]
    per_file: tuple[tuple[re.Pattern[str], bool, tuple[str, ...]], ...]  # (pattern, matches the name only, codes)

    def label(self, rule: str, path: str) -> str:
        """wanted, unwanted (its rule named in an ignore, globally or for this path) or none (never selected)."""
        ignored = _longest(rule, self.ignore)
        for pattern, name_only, codes in self.per_file:
            if _path_matches(pattern, name_only, path):
                ignored = max(ignored, _longest(rule, codes))
        selected = _longest(rule, self.select)
        if ignored and ignored >= selected:
            return "unwanted"
        return "wanted" if selected else "none"


def _longest(rule: str, selectors: tuple[str, ...]) -> int:
    """The length of the most specific selector naming ``rule`` (0: none; ``ALL`` counts as 1)."""
    best = 0
    for s in selectors:
        if s == "ALL":
            best = max(best, 1)
        elif rule.startswith(s):
            best = max(best, len(s) + 1)
    return best


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A ruff path glob as a regular expression: ``**/`` any folders, ``*`` within one name."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            out.append({"*": "[^/]*", "?": "[^/]"}.get(pattern[i], re.escape(pattern[i])))
            i += 1
    return re.compile("".join(out))


def _path_matches(pattern: re.Pattern[str], name_only: bool, path: str) -> bool:
    parts = path.split("/")
    if name_only:
        return bool(pattern.fullmatch(parts[-1]))
    return any(pattern.fullmatch("/".join(parts[i:])) for i in range(len(parts)))


def load_team(path: Path) -> Team:
    data = json.loads(path.read_text(encoding="utf-8"))
    per_file = tuple((glob_regex(p.strip("./")), "/" not in p.strip("./"), tuple(codes))
                     for p, codes in sorted(data["per_file_ignores"].items()))
    return Team(data["project"], data["version"], data["licence"], tuple(data["select"]), tuple(data["ignore"]),
                per_file)


def load_teams(names: list[str] | None = None) -> list[Team]:
    teams = [load_team(p) for p in sorted(TEAMS_DIR.glob("*.json"))]
    return [t for t in teams if names is None or t.name in names]


# --- the pool and ruff's findings on it -------------------------------------------------------------------------


def site_packages() -> Path:
    import jinja2  # any pool package: its parent folder is where the pool lives

    return Path(jinja2.__file__).resolve().parents[1]


def pool_files(site: Path, packages: tuple[str, ...] = POOL, per_package: int | None = None) -> list[str]:
    """Python files of the pool packages, relative to site-packages; ``per_package`` picks a stable sample."""
    out = []
    for package in packages:
        if package in RESERVED:
            raise ValueError(f"{package} is reserved for evaluation")
        files = sorted(p.relative_to(site).as_posix() for p in (site / package).rglob("*.py"))
        if per_package is not None:
            files = sorted(files, key=lambda f: hashlib.sha256(f.encode()).hexdigest())[:per_package]
        out.extend(sorted(files))
    return out


def half(path: str) -> str:
    """Which half a file is in: "react" (maintainers react there) or "heldout" (the next review)."""
    return "react" if int(hashlib.sha256(path.encode()).hexdigest(), 16) % 2 == 0 else "heldout"


def run_ruff(site: Path, files: list[str], ruff: str) -> list[dict]:
    """ruff with every stable rule (``--select ALL``), isolated from any configuration, on the pool files."""
    done = subprocess.run([ruff, "check", "--isolated", "--select", "ALL", "--output-format", "json", "--no-cache",
                           "--exit-zero", "--", *files], cwd=site, capture_output=True, text=True, timeout=600,
                          check=True)
    return [d for d in json.loads(done.stdout) if d.get("code")]


# --- extracting a team from its sdist -------------------------------------------------------------------------


def extract(sdist: Path) -> dict:
    """A team's ruff settings (and name, version, licence) from the top-level pyproject.toml of its sdist."""
    with tarfile.open(sdist) as tar:
        top = [n for n in tar.getnames() if n.count("/") == 1]
        pyproject = tomllib.loads(tar.extractfile(next(n for n in top if n.endswith("/pyproject.toml"))).read().decode())
        info = tar.extractfile(next(n for n in top if n.endswith("/PKG-INFO"))).read().decode("utf-8", "replace")
    ruff = pyproject["tool"]["ruff"]
    lint = {**ruff, **ruff.get("lint", {})}
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line and not line.startswith(" "))
    licence = fields.get("License-Expression") or fields.get("License") or ""
    select = list(lint.get("select", RUFF_DEFAULT)) + list(lint.get("extend-select", []))
    return {"project": fields["Name"], "version": fields["Version"], "licence": licence,
            "source": f"[tool.ruff] of pyproject.toml in {sdist.name}",
            "select": select, "ignore": list(lint.get("ignore", [])) + list(lint.get("extend-ignore", [])),
            "per_file_ignores": {k: list(v) for k, v in lint.get("per-file-ignores", {}).items()}}


if __name__ == "__main__":  # python -m benchmarks.team_data SDIST... (writes benchmarks/teams/NAME.json)
    for arg in sys.argv[1:]:
        team = extract(Path(arg))
        target = TEAMS_DIR / f"{team['project'].lower()}.json"
        target.write_text(json.dumps(team, indent=1) + "\n", encoding="utf-8")
        print(f"{target}: select {len(team['select'])}, ignore {len(team['ignore'])}, "
              f"per-file {len(team['per_file_ignores'])}, licence {team['licence']}")
