"""docs/observability.md documents every metric and event the code produces, and no other."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
import pytest

from resilient.events import Event, all_event_types
from resilient.observers._otel import metric_specs

PAGE = Path(__file__).resolve().parents[2] / "docs" / "observability.md"
HEADER = ["metric", "instrument", "unit", "attributes", "description"]


def _cells(line: str) -> list[str]:
    return [cell.strip() for cell in line.strip().strip("|").split("|")]


def _catalogue() -> list[tuple[str, str, str, tuple[str, ...], str]]:
    """Return the rows of the page's metric catalogue table, as written."""
    lines = PAGE.read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if _cells(line) == HEADER)
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        name, instrument, unit, attributes, description = _cells(line)
        rows.append(
            (
                name.strip("`"),
                instrument,
                unit.strip("`"),
                tuple(attribute.strip().strip("`") for attribute in attributes.split(",")),
                description,
            )
        )
    return rows


def _section(kind: str) -> str:
    """Return the text of the page's section about events of *kind*."""
    text = PAGE.read_text(encoding="utf-8")
    match = re.search(rf"^### `{re.escape(kind)}`\n(.*?)(?=^#)", text, re.MULTILINE | re.DOTALL)
    assert match is not None, f"docs/observability.md has no '### `{kind}`' section"
    return match.group(1)


def test_catalogue_lists_exactly_the_metrics_recorded() -> None:
    """The catalogue's rows are the metrics of every event type, in order, with nothing extra."""
    expected = [
        (
            spec.name,
            spec.instrument.capitalize(),
            spec.unit,
            spec.attributes,
            spec.description,
        )
        for cls in all_event_types()
        for spec in metric_specs(cls)
    ]
    assert _catalogue() == expected


def test_metric_names_follow_the_kinds() -> None:
    """Each event kind has the counter resilient.<kind> and a histogram per duration field."""
    names = [row[0] for row in _catalogue()]
    for cls in all_event_types():
        assert f"resilient.{cls.kind}" in names
        for field in cls.duration_fields:
            assert f"resilient.{cls.kind}.{field}" in names


@pytest.mark.parametrize("cls", all_event_types(), ids=lambda cls: cls.kind)
def test_every_event_is_documented_with_its_fields(cls: type[Event]) -> None:
    """Each event kind has a section naming its class, its severity and every field of its own."""
    section = _section(cls.kind)
    assert f"{{class}}`~resilient.events.{cls.__name__}`" in section
    assert f"severity `{cls.severity}`" in section
    for field in attrs.fields(cls):
        if field.name not in ("policy", "time"):
            assert f"- `{field.name}`:" in section, f"{cls.kind}: {field.name!r} is undocumented"


def test_every_attribute_has_its_values_documented() -> None:
    """Each metric attribute appears in the table of attributes and the values they take."""
    text = PAGE.read_text(encoding="utf-8")
    start = text.index("| attribute | values |")
    table = text[start : text.index("\n\n", start)]
    names = {_cells(line)[0].strip("`") for line in table.splitlines()[2:]}
    assert names == {"policy"}.union(*(cls.attribute_fields for cls in all_event_types()))
