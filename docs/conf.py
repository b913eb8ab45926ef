"""Sphinx configuration of raregal's documentation (``make docs``; warnings are errors)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Build from the source tree, also when the package is not installed (it is, editable, in .venv).
sys.path.insert(0, str(ROOT / "src"))
# As under `make`: numba keeps compiled kernels in the project's cache, and matplotlib opens no window.
os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".cache" / "numba"))
os.environ.setdefault("MPLBACKEND", "Agg")

project = "raregal"
author = "raregal developers"
copyright = "raregal developers"
try:
    from raregal import __version__ as release
except Exception:  # the docs still build the pages if the package cannot be imported
    release = "0.1.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown (MyST): `page.md#a-heading` links work as they do on GitHub.
myst_heading_anchors = 3
myst_enable_extensions = ["colon_fence", "deflist"]

# autodoc + napoleon: numpy-style docstrings, members in source order, signatures without
# the type hints (they are repeated in the description).
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"

# Not nitpicky: a Python cross-reference Sphinx cannot resolve (numpy, pandas, torch, os.PathLike in
# the signatures, or a private helper a docstring names) stays plain text rather than failing the
# -W build, since no intersphinx inventory is fetched (the docs build offline). Broken links between
# the pages (MyST), malformed docstrings and failed imports are still errors.
nitpicky = False

html_theme = "furo"
html_title = f"raregal {release}"
html_static_path: list[str] = []


# --- raregal's docstring convention -------------------------------------------------------------
# raregal's docstrings use numpy-style sections, but their entries read "name : what it is" (the
# description on the name's line, as in "k : number of candidates to return."), not numpy's
# "name : type" with the description indented below; classes list their fields the same way
# without a section. Napoleon would show those descriptions as types, so before napoleon runs
# (priority 100 < its 500) this rewrites such entries into Sphinx fields (:param:, :ivar:,
# :returns:) and escapes names ending in "_" (``labels_``), which reST reads as references.
# Entries in numpy's own form (a short type and an indented description) keep their type.

import re

_SECTIONS = {  # section header (lower case) -> field kind
    "parameters": "param", "other parameters": "param", "keyword arguments": "param",
    "attributes": "ivar", "returns": "returns", "yields": "returns",
}
_ENTRY = re.compile(r"^(\*{0,2}[A-Za-z_]\w*(?:\s*,\s*\*{0,2}[A-Za-z_]\w*)*)\s+:(?:\s+(.*))?$")
_TYPE = re.compile(r"^[\w.\[\]()|, ~`:-]+$")
_UNDERLINE = re.compile(r"^\s*-{3,}\s*$")
_TRAILING_UNDERSCORE = re.compile(r"(?<![\w\\])([A-Za-z]\w*[A-Za-z0-9])_(?![\w`])")
_LITERAL = re.compile(r"(``.*?``|`[^`]*`)")


def _escape_name(name: str) -> str:
    name = name.strip()
    name = re.sub(r"^(\*+)", lambda m: "\\*" * len(m.group(1)), name)
    return name[:-1] + "\\_" if name.endswith("_") else name


def _escape_text(line: str) -> str:
    """Escape trailing underscores outside literals and roles."""
    if line.lstrip().startswith(">>>"):
        return line
    parts = _LITERAL.split(line)
    return "".join(p if i % 2 else _TRAILING_UNDERSCORE.sub(r"\1\\_", p) for i, p in enumerate(parts))


def _is_header(lines, i) -> bool:
    return (i + 1 < len(lines) and bool(lines[i].strip()) and not lines[i].startswith(" ")
            and bool(_UNDERLINE.match(lines[i + 1])))


def _entries(block):
    """Split a section's lines into (names, first_text, continuation_lines); None if not entries."""
    out = []
    for line in block:
        match = _ENTRY.match(line) if line and not line[0].isspace() else None
        if match:
            out.append((match.group(1), match.group(2) or "", []))
        elif out:
            out[-1][2].append(line)
        else:
            return None
    return out


def _fields(kind, entries):
    lines = []
    for names, text, more in entries:
        more = [m.strip() for m in more if m.strip()]
        is_type = bool(text) and bool(more) and bool(_TYPE.match(text)) and len(text.split()) <= 4
        desc = more if is_type else ([text] if text else []) + more
        if desc and re.match(r"^([A-Za-z]|[ivxlcdmIVXLCDM]+|\d+)[.)](\s|$)", desc[0]):
            desc[0] = "\\" + desc[0]  # "D." would start an enumerated list
        for name in names.split(","):
            name = _escape_name(name)
            lines.append(f":{kind} {name}: " + (desc[0] if desc else ""))
            lines.extend("   " + d for d in desc[1:])
            if is_type:
                lines.append(f":{'vartype' if kind == 'ivar' else 'type'} {name}: {text}")
    return lines


def _normalise(lines, what):
    out, i = [], 0
    while i < len(lines):
        if _is_header(lines, i):
            header = lines[i].strip()
            key = next((k for k in sorted(_SECTIONS, key=len, reverse=True) if header.lower().startswith(k)), None)
            end = i + 2
            while end < len(lines) and not _is_header(lines, end):
                end += 1
            if key is None:
                out.extend([header, "-" * len(header)])
                out.extend(lines[i + 2:end])
                i = end
                continue
            if header[len(key):].strip():  # "Attributes after ``fit(X)``": keep the words as a paragraph
                out.extend([header + ":", ""])
            block = lines[i + 2:end]
            # a blank line and then an unindented sentence ends the entries: the rest is text
            tail = []
            for j in range(1, len(block)):
                if (not block[j - 1].strip() and block[j].strip() and not block[j][0].isspace()
                        and not _ENTRY.match(block[j])):
                    block, tail = block[:j], block[j:]
                    break
            if _SECTIONS[key] == "returns":
                text = [b for b in block if b.strip()]
                # raregal's form is sentences; numpy's is a type with the description indented below
                if text and not _ENTRY.match(text[0]) and not any(b[0].isspace() for b in text[1:]):
                    out.append(":returns: " + text[0].strip())
                    out.extend("   " + t.strip() for t in text[1:])
                else:
                    out.extend([key.capitalize(), "-" * len(key)] + block)
            else:
                entries = _entries([b for b in block if b.strip()] if block else [])
                out.extend(_fields(_SECTIONS[key], entries) if entries else [header, "-" * len(header)] + block)
            out.append("")
            out.extend(tail)
            i = end
            continue
        # a class's fields listed as "name : what" lines, outside any section
        if what in ("class", "exception") and (i == 0 or not lines[i - 1].strip()) and _ENTRY.match(lines[i]):
            end = i
            while end < len(lines) and lines[end].strip() and not _is_header(lines, end):
                end += 1
            entries = _entries(lines[i:end])
            if entries:
                out.extend(_fields("ivar", entries))
                i = end
                continue
        out.append(lines[i])
        i += 1
    return out


def _process_docstring(app, what, name, obj, options, lines):
    if not name.startswith("raregal"):
        return
    new = _normalise(list(lines), what)
    if what in ("attribute", "property", "data") and new and new[0].strip():
        # napoleon reads an attribute's first line as "type: description"; raregal's are sentences,
        # so the first line napoleon sees is an empty reST comment
        new[:0] = ["..", ""]
    literal_indent = None  # inside a literal block (after "::") or a directive: leave it alone
    for k, line in enumerate(new):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None and line.strip() and indent <= literal_indent:
            literal_indent = None
        if literal_indent is None:
            new[k] = _escape_text(line)
            if line.rstrip().endswith("::") or re.match(r"^\s*\.\. [\w:-]+::", line):
                literal_indent = indent
    lines[:] = new




# --- the module list of a package ---------------------------------------------------------------
# ".. raregal-modules:: raregal.discovery" lists the package's modules, each with the first line
# of its docstring, read from the source (nothing is imported), so the list follows the code.

import ast
import importlib.util

from docutils import nodes
from docutils.statemachine import StringList
from sphinx.util.docutils import SphinxDirective


def _first_line(path: Path) -> str:
    try:
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return ""
    return (doc or "").strip().split("\n\n")[0].replace("\n", " ")


class RaregalModules(SphinxDirective):
    required_arguments = 1

    def run(self):
        spec = importlib.util.find_spec(self.arguments[0])
        folder = Path(spec.origin).parent
        rows = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith("_"):
                continue
            if path.suffix == ".py":
                name, source = path.stem, path
            elif (path / "__init__.py").is_file():
                name, source = path.name, path / "__init__.py"
            else:
                continue
            line = _escape_text(_first_line(source))
            rows.append(f"* ``{self.arguments[0]}.{name}``" + (f": {line}" if line else ""))
        node = nodes.container()
        self.state.nested_parse(StringList(rows, source=self.arguments[0]), self.content_offset, node)
        return node.children


def _setup_modules(app):
    app.add_directive("raregal-modules", RaregalModules)


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring, priority=100)
    _setup_modules(app)
