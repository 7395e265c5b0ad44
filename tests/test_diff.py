"""bot.diff against real ``git diff`` output and real-world diffs from other parsers' test suites."""

from __future__ import annotations

import itertools
import json
import os
import re
from pathlib import Path

import pytest
import unidiff

from bot.diff import anchor_for, excerpt, find_line, parse
from bot.errors import ConfigError, DiffError
from bot.findings import FilePatch, ParsedDiff
from tests.gitrepo import GitRepo, make_repo

SHARED = Path(os.environ.get("SIEVE_SHARED", Path(__file__).resolve().parents[1] / ".." / "shared"))
DIFFS = SHARED / "data" / "diffs"


def _lines(n: int, tag: str = "line") -> str:
    return "".join(f"{tag} {k}\n" for k in range(1, n + 1))


def _check_against_files(repo: GitRepo, parsed: ParsedDiff, old_rev: str = "HEAD~1", new_rev: str = "HEAD") -> int:
    """Every added/context line is in the post-image at new_lineno, every removed/context line in the pre-image."""
    checked = 0
    for patch in parsed.files:
        new_text = repo.show(new_rev, patch.path).decode("utf-8").split("\n") if patch.status != "deleted" else []
        old_text = repo.show(old_rev, patch.old_path).decode("utf-8").split("\n") if patch.old_path else []
        for hunk in patch.hunks:
            for line in hunk.lines:
                if line.kind != "-":
                    assert new_text[line.new_lineno - 1] == line.text, (patch.path, line)
                if line.kind != "+":
                    assert old_text[line.old_lineno - 1] == line.text, (patch.path, line)
                checked += 1
    return checked


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return make_repo(tmp_path / "repo")


def test_line_numbers_match_git_and_unidiff(repo: GitRepo) -> None:
    base = [f"def f{k}():\n    return {k}\n" for k in range(60)]
    repo.write("src/mod.py", "".join(base))
    repo.write("other.txt", _lines(30))
    repo.commit("base")
    changed = list(base)
    changed[3] = "def f3():\n    return 'three'\n"
    changed[30:32] = ["def inserted():\n    pass\n"] * 4
    del changed[50]
    repo.write("src/mod.py", "".join(changed))
    repo.write("other.txt", _lines(30).replace("line 7\n", "line seven\nline 7b\n"))
    repo.commit("edit")
    data = repo.diff("HEAD~1", "HEAD")
    parsed = parse(data)
    assert [f.path for f in parsed.files] == ["other.txt", "src/mod.py"]
    assert len(parsed.file("src/mod.py").hunks) == 3
    assert _check_against_files(repo, parsed) > 40
    reference = unidiff.PatchSet(data.decode())
    ours = [(line.kind, line.old_lineno, line.new_lineno, line.text) for h in parsed.hunks for line in h.lines]
    theirs = [(ln.line_type, ln.source_line_no, ln.target_line_no, ln.value.rstrip("\n"))
              for pf in reference for h in pf for ln in h]
    assert ours == theirs
    assert parsed.warnings == ()


def test_rename_copy_and_pure_rename(repo: GitRepo) -> None:
    repo.write("old_name.py", _lines(40))
    repo.write("kept.py", _lines(40, "kept"))
    repo.write("plain.txt", _lines(5, "plain"))
    repo.commit("base")
    repo.git("mv", "old_name.py", "new_name.py")
    repo.git("mv", "plain.txt", "moved.txt")
    repo.write("new_name.py", _lines(40).replace("line 20\n", "line twenty\n"))
    repo.write("copy_of_kept.py", _lines(40, "kept").replace("kept 3\n", "kept three\n"))
    repo.commit("rename and copy")
    data = repo.diff("HEAD~1", "HEAD", "-M", "-C", "--find-copies-harder")
    parsed = parse(data)
    renamed = parsed.file("new_name.py")
    similarity = int(re.search(rb"similarity index (\d+)%\nrename from old_name", data)[1])
    assert (renamed.status, renamed.old_path, renamed.similarity) == ("renamed", "old_name.py", similarity)
    copied = parsed.file("copy_of_kept.py")
    assert (copied.status, copied.old_path) == ("copied", "kept.py")
    assert {(s.path, s.reason) for s in parsed.skipped} == {
        ("moved.txt", "renamed from plain.txt without content changes")}
    assert _check_against_files(repo, parsed) > 0


def test_binary_mode_delete_empty_symlink(repo: GitRepo) -> None:
    repo.write("image.png", bytes(range(256)) * 4)
    repo.write("run.sh", "echo hi\n", mode=0o644)
    repo.write("gone.py", "a = 1\nb = 2\n")
    repo.commit("base")
    repo.write("image.png", bytes(range(255, -1, -1)) * 4)
    (repo.root / "run.sh").chmod(0o755)
    (repo.root / "gone.py").unlink()
    repo.write("empty.txt", b"")
    os.symlink("run.sh", repo.root / "link")
    repo.commit("many kinds")
    for extra in ((), ("--binary",)):
        parsed = parse(repo.diff("HEAD~1", "HEAD", *extra))
        assert {s.path: s.reason for s in parsed.skipped} == {
            "image.png": "binary file", "run.sh": "mode change only 100644 → 100755",
            "empty.txt": "empty file", "link": "symlink"}
        gone = parsed.file("gone.py")
        assert (gone.status, gone.old_path, gone.hunks[0].removed_lines) == ("deleted", "gone.py", (1, 2))
        anchor = anchor_for(gone, old_line=2)
        assert (anchor.path, anchor.line, anchor.side, anchor.old_line, anchor.new_line) == ("gone.py", 2, "LEFT", 2, None)


def test_crlf_file_and_crlf_patch(repo: GitRepo) -> None:
    repo.write("win.txt", b"one\r\ntwo\r\nthree\r\n")
    repo.commit("base")
    repo.write("win.txt", b"one\r\nTWO\r\nthree\r\n")
    repo.commit("edit")
    data = repo.diff("HEAD~1", "HEAD")
    assert b"+TWO\r\n" in data
    parsed = parse(data)
    assert [line.text for line in parsed.hunks[0].lines] == ["one", "two", "TWO", "three"]
    assert any("CRLF" in w for w in parsed.warnings)
    whole_crlf = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")  # a patch saved on Windows
    again = parse(whole_crlf)
    assert again.files == parsed.files


def test_latin1_and_no_trailing_newline(repo: GitRepo) -> None:
    repo.write("legacy.txt", b"caf\xe9\nna\xefve\n")
    repo.write("tail.txt", "a\nb")
    repo.commit("base")
    repo.write("legacy.txt", b"caf\xe9 cr\xe8me\nna\xefve\n")
    repo.write("tail.txt", "a\nc")
    repo.commit("edit")
    parsed = parse(repo.diff("HEAD~1", "HEAD"))
    assert parsed.file("legacy.txt").hunks[0].lines[1].text == "café crème"
    assert any("latin-1" in w for w in parsed.warnings)
    lines = parsed.file("tail.txt").hunks[0].lines
    assert [(line.kind, line.text, line.no_newline) for line in lines] == [
        (" ", "a", False), ("-", "b", True), ("+", "c", True)]


def test_quoted_names_and_no_prefix(repo: GitRepo) -> None:
    names = ["dir with space/file name.txt", "données/café.py", 'odd "quote".txt']
    for name in names:
        repo.write(name, "x = 1\n")
    repo.commit("base")
    for name in names:
        repo.write(name, "x = 2\n")
    repo.commit("edit")
    data = repo.diff("HEAD~1", "HEAD")
    assert b"\\303\\251" in data and b'"a/dir with space' not in data
    for extra in ((), ("--no-prefix",)):
        parsed = parse(repo.diff("HEAD~1", "HEAD", *extra))
        assert sorted(f.path for f in parsed.files) == sorted(names)
        assert _check_against_files(repo, parsed) == 6


def test_submodule(repo: GitRepo, tmp_path: Path) -> None:
    lib = make_repo(tmp_path / "lib")
    lib.write("lib.py", "x = 1\n")
    lib.commit("lib")
    repo.write("main.py", "print(1)\n")
    repo.commit("base")
    repo.git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(lib.root), "vendor/lib")
    repo.commit("add submodule")
    parsed = parse(repo.diff("HEAD~1", "HEAD"))
    assert {s.path: s.reason for s in parsed.skipped} == {"vendor/lib": "submodule"}
    assert [f.path for f in parsed.files] == [".gitmodules"]
    summary = parse(repo.diff("HEAD~1", "HEAD", "--submodule=log"))
    assert {s.path: s.reason for s in summary.skipped} == {"vendor/lib": "submodule"}


def test_combined_merge_diff_is_skipped(repo: GitRepo) -> None:
    repo.write("a.txt", _lines(5))
    repo.write("b.txt", "b\n")
    repo.commit("base")
    repo.git("checkout", "-q", "-b", "side")
    repo.write("a.txt", _lines(5).replace("line 3", "side 3"))
    repo.commit("side")
    repo.git("checkout", "-q", "main")
    repo.write("a.txt", _lines(5).replace("line 3", "main 3"))
    repo.commit("main")
    with pytest.raises(RuntimeError):
        repo.git("merge", "-q", "side")
    repo.write("a.txt", _lines(5).replace("line 3", "merged 3"))
    repo.commit("merge")
    parsed = parse(repo.git("show", "--format=", "--cc", "HEAD"))
    assert {s.path: s.reason for s in parsed.skipped} == {"a.txt": "combined merge diff"}


def test_huge_hunk_is_windowed_and_long_line_kept(repo: GitRepo) -> None:
    repo.write("big.txt", _lines(10))
    repo.commit("base")
    repo.write("big.txt", _lines(5) + _lines(12_000, "new") + _lines(10)[len(_lines(5)):] + "x" * 300_000 + "\n")
    repo.commit("big")
    parsed = parse(repo.diff("HEAD~1", "HEAD"), window_lines=400, window_overlap=20)
    hunks = parsed.file("big.txt").hunks
    assert len(hunks) == hunks[0].windows == 32 and [h.window for h in hunks] == list(range(32))
    for first, second in itertools.pairwise(hunks):
        assert first.lines[-20:] == second.lines[:20]
    for hunk in hunks:
        assert len(hunk.lines) <= 400
        olds = sum(line.kind != "+" for line in hunk.lines)
        news = sum(line.kind != "-" for line in hunk.lines)
        assert hunk.header.startswith(f"@@ -{hunk.old_start},{olds} +{hunk.new_start},{news} @@")
        firsts = [line.new_lineno for line in hunk.lines if line.kind != "-"]
        assert hunk.new_start == firsts[0]
        if olds == 0:  # an all-added window starts "after" the last old line before it
            assert hunk.old_start == 5
    assert max(len(line.text) for line in hunks[-1].lines) == 300_000
    assert _check_against_files(repo, parsed) > 12_000
    with pytest.raises(ConfigError):
        parse(b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n", window_lines=10, window_overlap=10)


def test_malformed_hunk_skips_only_its_file(repo: GitRepo) -> None:
    repo.write("a.txt", _lines(10))
    repo.write("b.txt", _lines(10))
    repo.commit("base")
    repo.write("a.txt", _lines(10).replace("line 5", "five"))
    repo.write("b.txt", _lines(10).replace("line 5", "five"))
    repo.commit("edit")
    data = repo.diff("HEAD~1", "HEAD").replace(b"@@ -2,7 +2,7 @@", b"@@ -2,9 +2,9 @@", 1)
    parsed = parse(data)
    assert [f.path for f in parsed.files] == ["b.txt"]
    (skip,) = parsed.skipped
    lineno = data.split(b"\n").index(b"diff --git a/b.txt b/b.txt") + 1
    assert skip.path == "a.txt" and skip.reason.startswith(f"malformed hunk at line {lineno}: expected 2 more old")


def test_not_a_diff_and_empty() -> None:
    with pytest.raises(DiffError, match="the diff is empty"):
        parse(b"  \n")
    with pytest.raises(DiffError, match="no file headers found"):
        parse(b"Hello,\nthis is just prose.\n")
    with pytest.raises(DiffError, match="no file headers"):
        parse(b"@@ -1 +1 @@\n-a\n+b\n")


def test_anchor_and_excerpt(repo: GitRepo) -> None:
    repo.write("m.py", _lines(20))
    repo.commit("base")
    repo.write("m.py", _lines(20).replace("line 10\n", "ten\nten b\n"))
    repo.commit("edit")
    patch = parse(repo.diff("HEAD~1", "HEAD")).file("m.py")
    added = anchor_for(patch, new_line=11)
    assert (added.path, added.line, added.side, added.old_line, added.new_line) == ("m.py", 11, "RIGHT", None, 11)
    context = anchor_for(patch, new_line=12)
    assert (context.side, context.old_line, context.new_line) == ("RIGHT", 11, 12)
    assert anchor_for(patch, new_line=11, start_line=10).start_line == 10
    assert anchor_for(patch, old_line=10).side == "LEFT"
    with pytest.raises(DiffError, match="not part of the diff"):
        anchor_for(patch, new_line=1)
    with pytest.raises(DiffError, match="same hunk"):
        anchor_for(patch, new_line=11, start_line=12)
    text = excerpt(patch, 11)
    assert text.splitlines()[0] == patch.hunks[0].header and text.endswith("\n+ten b")
    assert excerpt(patch.hunks[0], 10, side="LEFT").endswith("\n-line 10")
    assert excerpt(patch, 11, after=1).endswith("+ten b\n line 11")
    assert find_line(patch, new_line=99) is None


def _manifest() -> list[dict]:
    if not (DIFFS / "MANIFEST.jsonl").exists():
        pytest.skip(f"shared diffs not found at {DIFFS} (set SIEVE_SHARED)")
    return [json.loads(line) for line in (DIFFS / "MANIFEST.jsonl").read_text().splitlines() if line.strip()]


HEADERLESS = {"lib_godiff__no_newline_both.diff", "lib_godiff__sample_bad_hunks.diff",
              "lib_godiff__sample_hunk_lines_start_with_minuses_pluses.diff", "lib_godiff__sample_no_chunksize.diff"}
CONTEXT_FORMAT = {"lib_wtp__diff-context.diff", "lib_wtp__apache-attachment-2241.diff"}


def test_every_shared_diff_parses_or_is_explained() -> None:
    for entry in _manifest():
        data = (DIFFS / entry["file"]).read_bytes()
        if entry["file"] in HEADERLESS | CONTEXT_FORMAT:
            with pytest.raises(DiffError, match="context-format" if entry["file"] in CONTEXT_FORMAT else "hunk"):
                parse(data)
            continue
        parsed = parse(data)
        assert parsed.files or parsed.skipped, entry["file"]
        assert all(s.reason for s in parsed.skipped)
        features = set(entry["features"])
        if features & {"git-binary-patch", "binary-stub"}:
            assert any(s.reason == "binary file" for s in parsed.skipped), entry["file"]
        if "submodule" in features:
            assert [s.reason for s in parsed.skipped] == ["submodule"]
        if features & {"crlf", "mixed-eol"}:
            assert any("CRLF" in w for w in parsed.warnings), entry["file"]
        if "rename" in features and not features & {"git-binary-patch", "binary-stub"}:
            assert any(f.status == "renamed" for f in parsed.files) or any("renamed" in s.reason
                                                                           for s in parsed.skipped)


def _shared(name: str) -> bytes:
    _manifest()
    return (DIFFS / name).read_bytes()


def test_shared_spot_checks() -> None:
    header = b"--- a/q.sql\n+++ b/q.sql\n"
    tricky = parse(header + _shared("lib_godiff__sample_hunk_lines_start_with_minuses_pluses.diff"))
    assert [line.kind for line in tricky.hunks[0].lines] == [" ", "-", "+", " ", " ", "-", "+"]
    assert tricky.hunks[0].lines[1].text == "-- this is my query"
    (no_count,) = parse(header + _shared("lib_godiff__sample_no_chunksize.diff")).hunks
    assert (no_count.old_start, no_count.old_count, no_count.new_count) == (0, 0, 1)
    both = parse(header + _shared("lib_godiff__no_newline_both.diff")).hunks[0].lines
    assert [line.no_newline for line in both] == [True, True]
    bad = parse(header + _shared("lib_godiff__sample_bad_hunks.diff"))
    assert bad.files == () and bad.skipped[0].reason.startswith("malformed hunk at line 32: expected 0 more old and 3 more new")
    trailing = parse(_shared("lib_godiff__sample_multi_file_trailing_content.diff"))
    assert [len(h.lines) for h in trailing.hunks] == [5, 6]
    names = parse(_shared("lib_godiff__complicated_filenames.diff"))
    assert {s.path for s in names.skipped} >= {'new, complicated\nfilenøme', 'new "complicated" filename'}
    quoted = parse(_shared("lib_unidiff__git_quoted_filename_with_spaces.diff"))
    assert quoted.files[0].path == "docs/develop/Bug 排查.md"
    cr = parse(_shared("lib_unidiff__git_cr.diff")).hunks[0]
    assert len(cr.lines) == 3 and "\r" in cr.lines[0].text
    long_line = parse(_shared("lib_godiff__long_line_multi.diff"))
    assert max(len(line.text) for h in long_line.hunks for line in h.lines) > 300_000
    for vcs in ("svn", "hg", "bzr"):
        parsed = parse(_shared(f"lib_unidiff__{vcs}.diff"))
        assert {f.path: f.status for f in parsed.files} == {
            "modified_file": "modified", "removed_file": "deleted", "added_file": "added"}, vcs
        assert isinstance(parsed.files[0], FilePatch)
    embedded = parse(_shared("lib_wtp__embedded-diff.comment"))
    assert embedded.files[0].path == "src/org/mozilla/javascript/IRFactory.java"


def test_mutated_diffs_never_crash() -> None:
    """Truncated, shuffled and corrupted real diffs give files, skips or a DiffError — nothing else."""
    import random

    rng = random.Random(1234)
    sources = [(DIFFS / e["file"]).read_bytes() for e in _manifest() if e["bytes"] < 20_000]
    outcomes = {"parsed": 0, "rejected": 0}
    for _ in range(600):
        lines = rng.choice(sources).split(b"\n")
        for _ in range(rng.randint(1, 4)):
            if not lines:
                break
            at = rng.randrange(len(lines))
            action = rng.randrange(4)
            if action == 0:
                del lines[at:]
            elif action == 1:
                lines.insert(at, rng.choice([b"@@ -1,2 +1 @@", b"+++ b/x", b"--- a/x", b"\\", b"diff --git a",
                                             b"@@ -x +y @@", b"\xff\xfe", b"rename from", b"\r"]))
            elif action == 2:
                lines[at] = lines[at][: rng.randrange(len(lines[at]) + 1)]
            else:
                del lines[at]
        try:
            parsed = parse(b"\n".join(lines))
        except DiffError:
            outcomes["rejected"] += 1
            continue
        outcomes["parsed"] += 1
        assert all(s.reason for s in parsed.skipped)
        for hunk in parsed.hunks:
            assert sum(line.kind != "+" for line in hunk.lines) == hunk.old_count or hunk.windows > 1
    assert outcomes["parsed"] > 300
