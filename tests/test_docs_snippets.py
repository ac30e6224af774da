"""README.md, docs/*.md, benchmarks/README.md: every ```python block runs as written, links resolve,
README stays short.

Each ```python block runs alone in a fresh interpreter (`sys.executable`, i.e. the `.venv`'s
python), from the repository root, so a snippet may use no name from an earlier one. The
environment is the test's, plus:

- `TF_ESIMCSE_DATA_DIR`: the data root (the `data_dir` fixture); snippets read `"data"`, the
  documented default, which `make setup` links;
- `TF_ESIMCSE_DOCS_FAST=1`: a snippet may read it to shrink its steps or data when run as a test.
  None needs it today: the snippets are small (a few steps, a few sentences, the offline
  all-MiniLM-L6-v2);
- `TMPDIR`: the test's `tmp_path`, so that the folders a snippet makes with `tempfile` are
  cleaned up with pytest's.

A block that cannot run here (a TF Serving server, a package that is not installed) is preceded by
an HTML comment `<!-- skip-test: reason -->` on the last non-blank line before its fence; the test
is then skipped with that reason. README's three examples must never be skipped.
"""
import os
import pathlib
import re
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
README = REPO / "README.md"
MAX_README_LINES = 250
SKIP_MARK = re.compile(r"<!--\s*skip-test:\s*(.*?)\s*-->")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([\w+-]*)")
SNIPPET_TIMEOUT_S = 900


def doc_files():
    return [README, *sorted((REPO / "docs").glob("*.md")), REPO / "benchmarks" / "README.md"]


def code_blocks(path):
    """`(line of the opening fence, language, code, skip reason or None)` for each fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, language = len(match.group(1)), match.group(2), match.group(3).lower()
        start = i
        body = []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            line = lines[i]
            body.append(line[indent:] if line[:indent].strip() == "" else line)
            i += 1
        i += 1  # the closing fence
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        skip = SKIP_MARK.search(lines[before]) if before >= 0 else None
        blocks.append((start + 1, language, "\n".join(body) + "\n", skip.group(1) if skip else None))
    return blocks


def python_snippets():
    params = []
    for path in doc_files():
        for line, language, code, skip in code_blocks(path):
            if language != "python":
                continue
            name = f"{path.relative_to(REPO)}:{line}"
            marks = [pytest.mark.skip(reason=skip)] if skip else []
            params.append(pytest.param(path, line, code, id=name, marks=marks))
    return params


@pytest.mark.large
@pytest.mark.parametrize("path, line, code", python_snippets())
def test_python_snippet_runs(path, line, code, data_dir, tmp_path):
    if not (REPO / "data" / "senteval").is_dir():
        pytest.skip("the snippets read ./data (make setup links it to the shared data)")
    # TMPDIR: what a snippet puts in tempfile.mkdtemp() (exports, saves) lands in pytest's tmp_path.
    env = dict(os.environ, TF_ESIMCSE_DATA_DIR=str(data_dir), TF_ESIMCSE_DOCS_FAST="1", TMPDIR=str(tmp_path))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=SNIPPET_TIMEOUT_S)
    assert proc.returncode == 0, (
        f"{path.relative_to(REPO)}:{line} failed with exit code {proc.returncode}\n"
        f"--- stdout (last 3000 characters)\n{proc.stdout[-3000:]}\n"
        f"--- stderr (last 3000 characters)\n{proc.stderr[-3000:]}"
    )


def test_readme_examples_are_not_skipped():
    python_blocks = [b for b in code_blocks(README) if b[1] == "python"]
    assert len(python_blocks) >= 2, "README's encode and SavedModel examples are Python blocks"
    assert not [b[0] for b in python_blocks if b[3]], "README's Python examples must run as tests"


def test_readme_is_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines (at most {MAX_README_LINES}): move detail to docs/"


# ---------------------------------------------------------------------------------------- links
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"`[^`]*`")


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path):
    found = set()
    counts = {}
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            in_code = not in_code
            continue
        if in_code:
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = counts.get(base, 0)
            counts[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")
    return found


def relative_links(path):
    """`(line, target)` for each link outside code blocks and inline code."""
    links = []
    in_code = False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_code = not in_code
            continue
        if in_code:
            continue
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
                continue
            links.append((number, target))
    return links


@pytest.mark.parametrize("path", doc_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(path):
    broken = []
    for line, target in relative_links(path):
        file_part, _, anchor = target.partition("#")
        resolved = (path.parent / file_part).resolve() if file_part else path
        if not resolved.exists():
            broken.append(f"{path.relative_to(REPO)}:{line}: {target} (no such file)")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{path.relative_to(REPO)}:{line}: {target} (no heading #{anchor} in {resolved.name})")
    assert not broken, "\n".join(broken)


def test_the_link_checker_sees_links():
    # Guards the checker itself: README links to docs, and a slug keeps hyphens of flags.
    assert any(t.startswith("docs/") for _, t in relative_links(README))
    assert slug("Large batches in small memory (`--mini-batch-size`)") == "large-batches-in-small-memory---mini-batch-size"
    assert slug("SimCSE, ESimCSE and DiffCSE at equal steps") == "simcse-esimcse-and-diffcse-at-equal-steps"
