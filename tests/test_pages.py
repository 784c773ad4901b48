"""lmsys.pages: the markdown and splicing helpers of the generated docs sections."""

from lmsys import pages

BEGIN, END = "<!-- BEGIN -->", "<!-- END -->"


def test_cells_and_tables():
  assert [pages.cell(v) for v in (None, True, 0.123456, [0.12345, 2], "a|b\nc")] == [
      "—", "true", "0.1235", "[0.123, 2]", "a\\|b c"]
  assert pages.table(["x", "y"], [["1", "2"]]) == ["| x | y |", "|---|---|", "| 1 | 2 |"]


def test_splice_replaces_the_section_or_puts_it_under_the_title():
  page = f"# Title\n\n{BEGIN}\nold\n{END}\n\nDiscussion.\n"
  assert pages.splice(page, f"{BEGIN}\nnew\n{END}", True, BEGIN, END) == f"# Title\n\n{BEGIN}\nnew\n{END}\n\nDiscussion.\n"
  assert pages.splice("# Title\n\nDiscussion.\n", "S", True, BEGIN, END) == "# Title\n\nS\n\nDiscussion.\n"
  assert pages.splice("Discussion.\n", "S", False, BEGIN, END) == "S\n\nDiscussion.\n"


def test_first_difference_names_the_file_line_and_both_texts():
  message = pages.first_difference("/repo/docs/x.md", "a\nb\nc\n", "a\nB\nc\n", "/repo")
  assert message == "docs/x.md:2: differs from its records (page has 'b', records give 'B')"
  assert pages.first_difference("/repo/x.md", "a\n", "a\nb\n", "/repo").endswith(
      "x.md:2: differs from its records (page has (end of file), records give 'b')")


def test_machine_line():
  p = {"git": {"commit": "0123456789abcdef", "dirty": False}, "start_utc": "2026-01-31T12:00:00Z",
       "devices": {"kind": "cpu", "count": 1}, "host": "box", "cpu_count": 2, "load_average": [1.5],
       "wall_seconds": 60.2, "versions": {"jax": "0.10.2", "python": "3.11.7"}}
  assert pages.machine_line(p) == ("commit `0123456789`, 2026-01-31 12:00:00 UTC, 1 x cpu on host box (2 CPUs, "
                                   "load 1.5 at start), 60 s wall; jax 0.10.2, python 3.11.7")
