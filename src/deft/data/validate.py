"""Validation with every problem located: ``FILE:LINE: what is wrong``.

A stream of ``(where, record-or-RecordError)`` pairs (see :func:`deft.data.readers.iter_records`)
goes through :func:`check_records`, which yields the valid records and collects the problems of
the others in a :class:`ValidationReport` (all of them counted, the first ``max_problems`` kept
with their text). With a :class:`~deft.data.tokenize.RecordTokenizer` the records are also
tokenised, so a record that cannot be templated or is all prompt after truncation is caught
before training starts. :func:`validate_source` does this for a whole file and raises
:class:`DataError` when anything is wrong and ``skip_invalid`` is not set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

from .readers import iter_records
from .records import RecordError
from .tokenize import RecordTokenizer

__all__ = ["DataError", "ValidationReport", "check_records", "validate_source", "read_records"]


class DataError(ValueError):
    """Invalid records were found. ``str()`` is one line; ``problems`` holds ``FILE:LINE: ...``
    lines (up to the report's limit) and ``report`` the full counts."""

    def __init__(self, report: "ValidationReport", source: str = ""):
        self.report = report
        self.problems = list(report.problems)
        what = f" in {source}" if source else ""
        first = f" (first: {report.problems[0]})" if report.problems else ""
        super().__init__(
            f"{report.invalid} invalid record{'s' if report.invalid != 1 else ''}{what}{first}; "
            f"fix them or pass --skip-invalid to drop them"
        )


@dataclass
class ValidationReport:
    """Counts of a validation pass and the text of the first ``max_problems`` problems."""

    max_problems: int = 20
    total: int = 0
    valid: int = 0
    invalid: int = 0
    dropped: int = 0
    truncated: int = 0
    problems: list[str] = field(default_factory=list)

    def add_problem(self, err: RecordError | str) -> None:
        """Count one invalid record and keep its text if under the limit."""
        self.invalid += 1
        if len(self.problems) < self.max_problems:
            self.problems.append(str(err))

    def problem_lines(self) -> list[str]:
        """The kept problems, plus a line saying how many more there were."""
        lines = list(self.problems)
        if self.invalid > len(self.problems):
            lines.append(f"... and {self.invalid - len(self.problems)} more invalid records")
        return lines

    def summary(self) -> str:
        """One line of counts."""
        parts = [f"{self.total} records read", f"{self.valid} valid", f"{self.invalid} invalid"]
        if self.truncated:
            parts.append(f"{self.truncated} truncated")
        if self.dropped:
            parts.append(f"{self.dropped} dropped as too long")
        return ", ".join(parts)


def check_records(
    items: Iterable[tuple[str, Mapping | RecordError]],
    report: ValidationReport,
    *,
    tokenizer: RecordTokenizer | None = None,
    with_examples: bool = False,
) -> Iterator[tuple]:
    """Yield ``(where, record)`` for valid records, counting invalid ones (and, with
    ``tokenizer``, records the truncation policy drops) in ``report``. With ``with_examples``
    (needs ``tokenizer``) yield ``(where, record, TokenizedExample)``."""
    if with_examples and tokenizer is None:
        raise ValueError("with_examples needs a tokenizer")
    for where, rec in items:
        report.total += 1
        if isinstance(rec, RecordError):
            report.add_problem(rec if rec.where else rec.at(where))
            continue
        ex = None
        if tokenizer is not None:
            try:
                ex = tokenizer(rec, where)
            except RecordError as err:
                report.add_problem(err)
                continue
            if ex is None:
                report.dropped += 1
                continue
            report.truncated += int(ex.truncated)
        report.valid += 1
        yield (where, rec, ex) if with_examples else (where, rec)


def validate_source(
    source: str,
    *,
    key_map: Mapping[str, str] | None = None,
    split: str = "train",
    tokenizer=None,
    template: str = "auto",
    max_length: int | None = None,
    truncation: str = "left",
    all_turns: bool = False,
    skip_invalid: bool = False,
    max_problems: int = 20,
) -> ValidationReport:
    """Validate every row of a file or dataset (streaming). With a ``tokenizer`` (an HF tokenizer),
    also template and tokenise each record with ``template``/``max_length``/``truncation``.
    Raises :class:`DataError` if any record is invalid, unless ``skip_invalid``."""
    report = ValidationReport(max_problems=max_problems)
    view = None
    if tokenizer is not None:
        view = RecordTokenizer(tokenizer, template=template, max_length=max_length, truncation=truncation,
                               all_turns=all_turns)
    for _ in check_records(iter_records(source, key_map=key_map, split=split), report, tokenizer=view):
        pass
    if report.invalid and not skip_invalid:
        raise DataError(report, str(source))
    return report


def read_records(
    source: str,
    *,
    key_map: Mapping[str, str] | None = None,
    split: str = "train",
    require_response: bool = True,
    skip_invalid: bool = False,
    max_problems: int = 20,
) -> tuple[list[tuple[str, dict]], ValidationReport]:
    """Every valid record of ``source`` as ``[(where, record)]`` with the report, by the same rules
    as training (:func:`~deft.data.readers.iter_records`); what ``probe`` and ``eval`` read their
    record files with. ``require_response=False`` accepts prompts alone (evaluation). Raises
    :class:`DataError` when a record is invalid (unless ``skip_invalid``) and ``ValueError`` when
    none is left."""
    report = ValidationReport(max_problems=max_problems)
    items = iter_records(source, key_map=key_map, split=split, require_response=require_response)
    records = list(check_records(items, report))
    if report.invalid and not skip_invalid:
        raise DataError(report, str(source))
    if not records:
        raise ValueError(f"{source}: no usable record ({report.summary()})")
    return records, report
