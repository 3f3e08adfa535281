"""The cases a workflow runs on: inline, from a data file, or the single
``default`` case of a top-level ``inputs:`` mapping.

Data files (``.jsonl``, ``.csv``, ``.yaml``/``.yml``) hold one case per record.
A record either has ``inputs``/``expected`` keys, or is flat: ``id`` is the
case id, ``expected.<name>`` columns go to ``expected``, every other column is
an input. Records without an id are numbered ``case1``, ``case2``, ...
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ..errors import ConfigError
from ..textsafe import NotText, clean_data, decode_text
from .marked_yaml import parse_yaml
from .schema import CaseConfig, WorkflowConfig


def load_cases(config: WorkflowConfig, base_dir: Path, shown: str, marks: dict[tuple[Any, ...], int]) -> list[CaseConfig]:
    if isinstance(config.cases, list):
        if not config.cases:
            raise ConfigError("'cases' is empty: give at least one case", path=shown, line=marks.get(("cases",)))
        return list(config.cases)
    if isinstance(config.cases, str):
        return _load_case_file(base_dir / config.cases, shown, marks.get(("cases",)))
    return [CaseConfig(id="default", inputs=dict(config.inputs or {}))]


def _load_case_file(path: Path, shown: str, line: int | None) -> list[CaseConfig]:
    if not path.is_file():
        raise ConfigError(
            f"cases file {str(path)!r} does not exist", path=shown, line=line,
            hint="'cases:' takes a list of cases or a path relative to the YAML file",
        )
    suffix = path.suffix.lower()
    where = str(path)
    records: list[tuple[int, Any]] = []
    try:
        text = decode_text(path.read_bytes())
    except OSError as exc:
        raise ConfigError(f"cannot read cases file {where}: {exc.strerror or exc}", path=shown, line=line) from None
    except NotText as exc:
        raise ConfigError(f"cannot read cases file: {exc}", path=where, line=exc.line,
                          hint="save it as UTF-8 (UTF-16 and UTF-32 are read when the file starts with a BOM)") from None
    if suffix == ".jsonl":
        for number, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                records.append((number, clean_data(json.loads(raw, object_pairs_hook=_no_duplicates))))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"not valid JSON: {exc.msg}", path=where, line=number) from None
            except _DuplicateKey as exc:
                raise ConfigError(f"duplicate key {exc.key!r} in this record", path=where, line=number,
                                  hint="remove one of them") from None
    elif suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        for number, row in enumerate(reader, start=2):
            records.append((number, {k: v for k, v in row.items() if k is not None}))
    elif suffix in (".yaml", ".yml"):
        data, marks = parse_yaml(text, where)
        if not isinstance(data, list):
            raise ConfigError("a cases file must hold a list of cases", path=where, line=1)
        records = [(marks.get((i,), 1), item) for i, item in enumerate(data)]
    else:
        raise ConfigError(
            f"cases file {where!r} has an unknown format", path=shown, line=line,
            hint="use .jsonl, .csv or .yaml",
        )
    if not records:
        raise ConfigError("the cases file holds no cases", path=where, line=1)
    cases: list[CaseConfig] = []
    seen: dict[str, int] = {}
    for index, (number, record) in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise ConfigError("each case must be a mapping", path=where, line=number)
        case = _case_from_record(record, index, where, number)
        if case.id in seen:
            raise ConfigError(f"case id {case.id!r} is used twice (first at line {seen[case.id]})", path=where, line=number)
        seen[case.id] = number
        cases.append(case)
    return cases


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object, refusing a key given twice (json keeps the last)."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _case_from_record(record: dict[str, Any], index: int, where: str, number: int) -> CaseConfig:
    if "inputs" in record or "expected" in record and isinstance(record.get("expected"), dict):
        data = dict(record)
    else:
        data = {"inputs": {}, "expected": {}}
        for key, value in record.items():
            if key == "id":
                data["id"] = value
            elif key.startswith("expected."):
                data["expected"][key.removeprefix("expected.")] = value
            else:
                data["inputs"][key] = value
    data.setdefault("id", f"case{index}")
    try:
        return CaseConfig.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"invalid case: {loc}: {first['msg']}", path=where, line=number) from None
