"""Generated sections of docs pages: markdown cells and tables, the machine line of a record,
splicing a section between its markers, and the first line where a page differs from its
rendering. Shared by `python -m experiments.report` (results pages) and
`python scripts/bench.py` (the performance page)."""

from __future__ import annotations

import os


def cell(value) -> str:
  """A value as one markdown table cell: None as a dash, floats to 4 significant digits."""
  if value is None:
    return "—"
  if isinstance(value, bool):
    return str(value).lower()
  if isinstance(value, float):
    return f"{value:.4g}"
  if isinstance(value, list):
    return "[" + ", ".join(cell(v) if not isinstance(v, float) else f"{v:.3g}" for v in value) + "]"
  return str(value).replace("|", "\\|").replace("\n", " ")


def table(header, rows) -> list[str]:
  """A markdown table's lines: the header, the rule, one line per row of cells."""
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
  return lines + ["| " + " | ".join(row) + " |" for row in rows]


def machine_line(p: dict) -> str:
  """Commit, date and machine of a record, in one line."""
  git = p.get("git") or {}
  if git.get("commit"):
    state = f"commit `{git['commit'][:10]}`" + (
        f" with uncommitted changes in {len(git.get('changed_files', []))} files" if git.get("dirty") else "")
  else:
    state = f"no commit ({git.get('why', 'unknown')})"
  when = (p.get("start_utc") or "").replace("T", " ").replace("Z", " UTC") or "date not recorded"
  dev = p.get("devices") or {}
  machine = (f"{dev.get('count', '?')} x {dev.get('kind', '?')} on host {p.get('host', '?')} "
             f"({p.get('cpu_count', '?')} CPUs, load {(p.get('load_average') or ['?'])[0]} at start)"
             if dev else "machine not recorded")
  wall = f", {p['wall_seconds']:.0f} s wall" if p.get("wall_seconds") else ""
  versions = p.get("versions") or {}
  return (f"{state}, {when}, {machine}{wall}"
          + (f"; jax {versions.get('jax')}, python {versions.get('python')}" if versions else ""))


def splice(text: str, section: str, after_title: bool, begin: str, end: str) -> str:
  """`text` with its generated section (from the `begin` marker to the `end` marker) replaced by
  `section` (inserted under the title if absent)."""
  if begin in text and end in text:
    start, stop = text.index(begin), text.index(end) + len(end)
    return text[:start] + section + text[stop:]
  if after_title and text.startswith("# "):
    title, _, rest = text.partition("\n")
    return f"{title}\n\n{section}\n\n{rest.lstrip(chr(10))}"
  return f"{section}\n\n{text}"


def first_difference(path: str, have: str, want: str, root: str) -> str:
  """'path:line: differs from its records (page has ..., records give ...)' for the first line
  where a page's text `have` differs from its rendering `want` (path shown relative to `root`)."""
  have_lines, want_lines = have.splitlines(), want.splitlines()
  line = next((i for i, (a, b) in enumerate(zip(have_lines, want_lines)) if a != b),
              min(len(have_lines), len(want_lines)))
  shown = lambda lines: repr(lines[line][:100]) if line < len(lines) else "(end of file)"
  return (f"{os.path.relpath(path, root)}:{line + 1}: differs from its records "
          f"(page has {shown(have_lines)}, records give {shown(want_lines)})")
