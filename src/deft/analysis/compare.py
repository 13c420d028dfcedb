"""Moved: the tables are in :mod:`deft.analysis.tables`, the comparison recipe in
:mod:`deft.recipes.compare`. These names stay importable from here for older code."""

from ..recipes.compare import compare, run_grid, run_name, validate_grid  # noqa: F401
from .tables import build_table, format_markdown, table_columns, write_tables  # noqa: F401

__all__ = ["run_name", "table_columns", "build_table", "format_markdown", "write_tables", "compare", "run_grid",
           "validate_grid"]
