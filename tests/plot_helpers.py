"""Helpers shared by test_analysis_landscape.py, test_analysis_learning.py, test_analysis_report.py,
test_analysis_tables.py and test_cli_plot.py."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
import torch

from deft.analysis.probe import summarize_token_stats, write_probe

PNG = b"\x89PNG\r\n\x1a\n"


def _stats(seed: int, n: int = 300, shift: float = 0.0) -> dict:
    g = torch.Generator().manual_seed(seed)
    logp = (-12 * torch.rand(n, generator=g) ** 2 + shift).clamp(max=0.0)
    p = logp.exp()
    focus = (p + 0.3 * torch.rand(n, generator=g)).clamp(1e-4, 1.0)
    entropy = 6 * torch.rand(n, generator=g)
    return {
        "p": p, "logp": logp, "entropy": entropy, "focus": focus,
        "example": torch.arange(n) // 10, "token_id": torch.arange(n) % 97,
        "gate/deft": torch.exp(focus * logp), "gate/eaft:k=20,gamma=1.0": (entropy / 6).clamp(0, 1),
        "meta": {"model": f"m{seed}"},
    }


@pytest.fixture(scope="module")
def probes(tmp_path_factory):
    root = tmp_path_factory.mktemp("probes")
    out = {}
    for name, seed, shift in (("base", 0, 0.0), ("trained", 0, 2.0), ("other", 1, 0.0)):
        st = _stats(seed, shift=shift)
        write_probe({"model": name, **summarize_token_stats(st)}, st, root / name)
        out[name] = root / name
    return out


class ReportPage(HTMLParser):
    """The parts of a report page the tests read, parsed with the standard library's HTML parser:
    ``tables`` (``{class: [[(text, mark), ...] per row]}``, mark ``"best"`` inside ``<strong>``,
    ``"second"`` inside ``<u>``), ``images`` (``(src, data-file)``), ``refs`` (every ``src`` and
    ``href``) and ``order`` (``"table.CLASS"`` / ``"img"`` in document order)."""

    def __init__(self, text: str):
        super().__init__()
        self.tables: dict[str, list] = {}
        self.images: list[tuple[str, str]] = []
        self.refs: list[str] = []
        self.order: list[str] = []
        self._table = self._row = self._cell = None
        self._mark = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.refs += [attrs[k] for k in ("src", "href") if k in attrs]
        if tag == "table":
            self._table = attrs.get("class", "")
            self.tables[self._table] = []
            self.order.append(f"table.{self._table}")
        elif tag == "tr" and self._table is not None:
            self._row = []
            self.tables[self._table].append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
            self._mark = None
        elif tag in ("strong", "u") and self._cell is not None:
            self._mark = "best" if tag == "strong" else "second"
        elif tag == "img":
            self.images.append((attrs.get("src", ""), attrs.get("data-file", "")))
            self.order.append("img")

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(("".join(self._cell).strip(), self._mark))
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def markdown_rows(md: str, header: str = "| Method |") -> list[list[tuple[str, str | None]]]:
    """The rows (header first) of the markdown table starting with ``header`` in ``md``, each cell as
    ``(text, mark)``: ``**x**`` is ``"best"``, ``<u>x</u>`` ``"second"``."""
    lines = md.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        if line.startswith("|---"):
            continue
        cells = []
        for cell in line.strip().strip("|").split(" | "):
            cell = cell.strip()
            if cell.startswith("**") and cell.endswith("**"):
                cells.append((cell[2:-2], "best"))
            elif cell.startswith("<u>") and cell.endswith("</u>"):
                cells.append((cell[3:-4], "second"))
            else:
                cells.append((cell, None))
        rows.append(cells)
    return rows
