"""The plan language as users read it: `Query.to_json()` writes the JSON text `unseen query`
reads, and the OpenAPI schema and the README name every aggregate and operator the server takes
(so a new one cannot ship undocumented)."""

from __future__ import annotations

import json
import re

import pytest

from api.schemas import EstimateIn, NewQuery
from client.plans import Query, col, hour
from privacy.expressions import OPERATORS
from privacy.query_plan import AGGREGATES
from tests.conftest import ROOT


def readme_plan() -> dict[str, object]:
    """The example of README's "The plan as JSON" section."""
    section = (ROOT / "README.md").read_text().split("### The plan as JSON", 1)[1]
    block = re.search(r"```json\n(.*?)```", section, re.S)
    assert block is not None, "README's plan section lost its JSON example"
    return json.loads(block.group(1))


def test_to_json_is_json_text_of_the_dict_the_api_takes() -> None:
    query = Query().where(col("event") == "out").group_by("line", hour=hour(col("ts")))
    query.count("trips").quantile("p90", "fare", 0.9, lo=0, hi=15).bound(3, 2)
    text = query.to_json()
    assert isinstance(text, str)
    assert json.loads(text) == query.to_dict()
    assert query.to_dict()["max_rows_per_unit"] == 3
    assert query.to_dict()["max_groups_per_unit"] == 2


@pytest.mark.parametrize("model", [NewQuery, EstimateIn])
def test_the_openapi_description_of_plans_names_every_aggregate_and_operator(
    model: type[NewQuery] | type[EstimateIn],
) -> None:
    described = model.model_json_schema()["properties"]["plan"]["description"]
    words = {word.strip(".") for word in re.findall(r"[^\s,:;(){}|]+", described)}
    assert set(AGGREGATES) <= words, set(AGGREGATES) - words
    assert set(OPERATORS) <= words, set(OPERATORS) - words
    for field in ("max_rows_per_unit", "max_groups_per_unit", "delta", "q", "bins"):
        assert field in words


def test_the_readme_documents_every_aggregate_and_operator() -> None:
    section = (ROOT / "README.md").read_text().split("### The plan as JSON", 1)[1]
    section = re.sub(r"```.*?```", "", section.split("\n## ", 1)[0], flags=re.S)
    quoted = set(re.findall(r"`([^`]+)`", section))
    words = {word for text in quoted for word in text.split()}
    assert set(AGGREGATES) <= words, set(AGGREGATES) - words
    assert set(OPERATORS) <= words, set(OPERATORS) - words
    assert set(readme_plan()) == {"filter", "group_by", "aggregates", "max_rows_per_unit",
                                  "max_groups_per_unit"}  # fmt: skip
