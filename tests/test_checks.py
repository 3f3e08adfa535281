"""Check types (SPEC 5): each passes and fails as a user expects, with a
detail sentence that explains an XFAIL."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from pytest_promptab.checks.registry import CheckContext, CheckRegistry, validate_json
from pytest_promptab.checks.result import CheckResult
from pytest_promptab.errors import CheckError, ConfigError
from pytest_promptab.workflow.schema import CheckConfig

REGISTRY = CheckRegistry()


def ev(actual: Any, value: Any = None, *, base_dir: Path = Path("."), scope: dict[str, Any] | None = None, **config: Any) -> CheckResult:
    check = CheckConfig(**config)
    return REGISTRY.evaluate(check, CheckContext(actual=actual, value=value, scope=scope or {}, base_dir=base_dir))


def test_registry_knows_every_builtin_and_accepts_new_types() -> None:
    assert set(REGISTRY.types) >= {
        "equals", "contains", "icontains", "not_contains", "regex", "starts_with", "one_of",
        "max_words", "min_words", "max_chars", "json", "json_schema", "similarity", "python", "llm_judge",
    }  # fmt: skip
    registry = CheckRegistry()
    assert "tone" not in registry

    def tone(check: CheckConfig, ctx: CheckContext) -> CheckResult:
        return CheckResult(name=check.name or check.type, type=check.type, passed=True, score=0.8)

    registry.register("tone", tone)
    assert "tone" in registry.types
    result = registry.evaluate(CheckConfig(type="tone"), CheckContext("hi", None, {}, Path(".")))
    assert result.score == 0.8
    with pytest.raises(ConfigError, match="already registered"):
        registry.register("tone", tone)


def test_llm_judge_uses_the_bound_judge() -> None:
    ctx = CheckContext("hi", None, {}, Path("."), judge=lambda output: (0.4, f"{output!r} is curt"))
    result = REGISTRY.evaluate(CheckConfig(name="polite", type="llm_judge", rubric="polite?", min=0.5), ctx)
    assert (result.passed, result.score, result.detail) == (False, 0.4, "judge score 0.40: 'hi' is curt")


def test_unknown_type_suggests_the_nearest() -> None:
    with pytest.raises(ConfigError, match="unknown check type 'equal' \\(did you mean 'equals'\\?\\)"):
        ev("x", "x", type="equal")


def test_missing_field_fails_with_a_clear_detail() -> None:
    result = ev(None, "billing", type="equals", field="category")
    assert not result.passed and result.score == 0.0
    assert result.detail == "field 'category' is missing (no value)"


# ---------------------------------------------------------------- equals


def test_equals_strips_and_names_both_values() -> None:
    assert ev("billing\n", "billing", type="equals", name="category").passed
    result = ev("bug", "billing", type="equals", name="category")
    assert (result.name, result.type, result.passed, result.score) == ("category", "equals", False, 0.0)
    assert result.detail == "expected 'billing', got 'bug'"
    assert (result.expected, result.actual) == ("billing", "bug")


def test_equals_case_sensitivity() -> None:
    assert not ev("Billing", "billing", type="equals").passed
    assert ev("Billing", "billing", type="equals", case_sensitive=False).passed


def test_equals_numbers_and_json_values() -> None:
    assert ev("42", 42, type="equals").passed
    assert ev("3.0", "3", type="equals").passed
    assert not ev("3.1", "3", type="equals").passed
    assert ev({"a": [1, 2]}, {"a": [1, 2]}, type="equals").passed
    assert ev({"a": 1}, '{"a": 1}', type="equals").passed  # a rendered template against a parsed node
    assert not ev({"a": 1}, {"a": 2}, type="equals").passed
    assert not ev(True, 1, type="equals").passed


# ---------------------------------------------------------------- contains family


def test_contains_and_icontains() -> None:
    assert ev("We have refunded your order.", "refund", type="contains").passed
    result = ev("We have refunded your order.", "Refund", type="contains")
    assert not result.passed
    assert result.detail == "'Refund' not found in 'We have refunded your order.'"
    assert ev("We have refunded your order.", "Refund", type="contains", case_sensitive=False).passed
    assert ev("We have refunded your order.", "REFUND", type="icontains").passed
    assert not ev("Sorry.", "refund", type="icontains").passed


def test_contains_list_value_needs_all_and_list_field_needs_an_item() -> None:
    result = ev("sorry, we refunded you", ["sorry", "refund", "thanks"], type="contains")
    assert not result.passed and "'thanks' not found" in result.detail
    assert ev(["billing", "bug"], "bug", type="contains").passed
    assert not ev(["billing", "bugfix"], "bug", type="contains").passed


def test_not_contains() -> None:
    assert ev("Thanks for writing.", "as an AI", type="not_contains").passed
    result = ev("As an AI, I cannot.", "as an AI", type="not_contains", case_sensitive=False)
    assert not result.passed
    assert result.detail == "'as an AI' found in 'As an AI, I cannot.'"


# ---------------------------------------------------------------- regex / starts_with / one_of


def test_regex() -> None:
    assert ev("Order #12345 shipped", r"#\d{5}\b", type="regex").passed
    result = ev("Order shipped", r"#\d{5}", type="regex")
    assert not result.passed and result.detail == "no match for /#\\d{5}/ in 'Order shipped'"
    assert not ev("ORDER", "order", type="regex").passed
    assert ev("ORDER", "order", type="regex", case_sensitive=False).passed


def test_bad_regex_names_the_pattern() -> None:
    with pytest.raises(CheckError, match=r"invalid pattern '\(unclosed'"):
        ev("text", "(unclosed", type="regex", name="ids")


def test_starts_with() -> None:
    assert ev("\n  Dear customer, ...", "Dear", type="starts_with").passed
    result = ev("Hi there", "Dear", type="starts_with")
    assert not result.passed and result.detail == "expected to start with 'Dear', got 'Hi there'"
    assert ev("dear customer", "Dear", type="starts_with", case_sensitive=False).passed
    assert ev("Hello", ["Dear", "Hello"], type="starts_with").passed


def test_one_of() -> None:
    assert ev(" bug ", ["billing", "bug", "feature"], type="one_of").passed
    result = ev("question", ["billing", "bug"], type="one_of")
    assert not result.passed and result.detail == "expected one of 'billing', 'bug', got 'question'"
    assert not ev("Bug", ["billing", "bug"], type="one_of").passed
    assert ev("Bug", ["billing", "bug"], type="one_of", case_sensitive=False).passed
    assert ev("bug", '["billing", "bug"]', type="one_of").passed  # a rendered list template
    with pytest.raises(CheckError, match="must be a non-empty list"):
        ev("bug", "bug", type="one_of")


# ---------------------------------------------------------------- length


def test_max_and_min_words() -> None:
    text = " ".join(["word"] * 31)
    result = ev(text, 20, type="max_words")
    assert not result.passed and result.detail == "31 words > max 20"
    assert ev(text, 31, type="max_words").passed
    assert ev(text, "31", type="max_words").passed  # a rendered template is a string
    result = ev("too short", 5, type="min_words")
    assert not result.passed and result.detail == "2 words < min 5"
    assert ev("one two three four five", 5, type="min_words").passed
    with pytest.raises(CheckError, match="non-negative number"):
        ev("x", "many", type="max_words")


def test_max_chars_and_long_values_are_truncated_in_the_report() -> None:
    assert ev("  12345  \n", 5, type="max_chars").passed
    long = "x" * 1000
    result = ev(long, 10, type="max_chars")
    assert not result.passed and result.detail == "1000 chars > max 10"
    assert len(result.actual) < 240 and result.actual.endswith("(+800 chars)")


# ---------------------------------------------------------------- json / json_schema


def test_json() -> None:
    assert ev('{"answer": 42}', type="json").passed
    assert ev({"answer": 42}, type="json").passed  # already parsed by a parse: json node
    result = ev("{'answer': 42}", type="json")
    assert not result.passed and result.detail.startswith("not valid JSON: Expecting property name")
    result = ev('```json\n{"a": 1}\n```', type="json")
    assert "code fence" in result.detail


SCHEMA = {
    "type": "object",
    "required": ["category", "confidence"],
    "properties": {
        "category": {"enum": ["billing", "bug", "feature"]},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 10}, "maxItems": 3},
    },
    "additionalProperties": False,
}


def test_json_schema_pass_and_fail() -> None:
    assert ev('{"category": "bug", "confidence": 0.9, "tags": ["ui"]}', type="json_schema", schema=SCHEMA).passed
    assert ev({"category": "bug", "confidence": 1}, type="json_schema", schema=SCHEMA).passed
    result = ev('{"category": "other", "tags": ["ok", 3], "extra": 1}', type="json_schema", schema=SCHEMA)
    assert not result.passed
    assert "$: 'confidence' is a required property" in result.detail
    assert "$.category: 'other' is not one of ['billing', 'bug', 'feature']" in result.detail
    assert "Additional properties are not allowed ('extra' was unexpected)" in result.detail
    assert result.detail.endswith("(+1 more)")  # the 4th error ($.tags[1]) is cut
    assert validate_json({"category": "bug", "confidence": 1, "tags": ["ok", 3]}, SCHEMA) == [
        "$.tags[1]: 3 is not of type 'string'"
    ]
    result = ev("not json", type="json_schema", schema=SCHEMA)
    assert not result.passed and result.detail.startswith("not valid JSON")


def test_json_schema_full_keywords() -> None:
    schema = {"$defs": {"label": {"enum": ["a", "b"]}}, "oneOf": [{"$ref": "#/$defs/label"}, {"type": "integer"}]}
    assert validate_json("a", schema) == []
    assert validate_json(3, schema) == []
    assert validate_json("c", schema) == ["$: 'c' is not valid under any of the given schemas"]


def test_json_schema_invalid_schema_is_a_check_error() -> None:
    with pytest.raises(CheckError, match="invalid schema: 'strin' is not valid under any of the given schemas"):
        ev("{}", type="json_schema", schema={"type": "strin"})


# ---------------------------------------------------------------- similarity


def test_similarity() -> None:
    # SequenceMatcher ratio: 2*M/T; "hello world" vs "hello wrld": M = 10, T = 21 -> 0.952
    result = ev("hello world", "hello wrld", type="similarity")
    assert result.passed and result.score == pytest.approx(20 / 21)
    result = ev("completely different", "hello", type="similarity", min=0.8)
    assert not result.passed and result.score < 0.8
    assert result.detail.startswith(f"similarity {result.score:.2f} < min 0.8")
    assert ev("abc", "abc", type="similarity").score == 1.0
    assert ev("abc", ["xyz", "abd"], type="similarity").score == pytest.approx(2 / 3)  # best of a list


def test_similarity_of_long_texts_is_word_based() -> None:
    words = [f"w{i % 97}" for i in range(1500)]
    a = " ".join(words)
    b = " ".join(words[:750] + ["changed"] * 10 + words[760:])  # 10 of 1500 words replaced
    result = ev(a, b, type="similarity", min=0.9)
    # word-level ratio: 2 * 1490 matching words / 3000 words = 0.9933
    assert result.score == pytest.approx(2 * 1490 / 3000)


# ---------------------------------------------------------------- python


@pytest.fixture
def user_checks(tmp_path: Path) -> Path:
    (tmp_path / "checks.py").write_text(
        textwrap.dedent(
            """
            def polite(output):
                return "please" in output.lower() or "thank" in output.lower()

            def mentions_input(output, scope):
                return scope["inputs"]["name"] in output

            def length_score(output):
                return min(1.0, len(output) / 20)

            def tone(output):
                return {"polite": 1.0, "brief": len(output) < 10, "warm": 0.2}

            def broken(output):
                raise KeyError("nope")

            def wrong(output):
                return "yes"

            def too_big(output):
                return 3
            """
        )
    )
    return tmp_path


def test_python_bool_callable(user_checks: Path) -> None:
    ok = ev("Thank you!", type="python", callable="checks.py:polite", base_dir=user_checks)
    assert ok.passed and ok.score == 1.0
    bad = ev("No.", type="python", name="polite", callable="checks.py:polite", base_dir=user_checks)
    assert not bad.passed and bad.score == 0.0
    assert bad.detail == "score 0.00 < min 0.5"


def test_python_callable_with_scope(user_checks: Path) -> None:
    scope = {"inputs": {"name": "Ada"}}
    assert ev("Hi Ada", type="python", callable="checks.py:mentions_input", base_dir=user_checks, scope=scope).passed
    assert not ev("Hi Bob", type="python", callable="checks.py:mentions_input", base_dir=user_checks, scope=scope).passed


def test_python_score_and_min(user_checks: Path) -> None:
    result = ev("x" * 10, type="python", callable="checks.py:length_score", base_dir=user_checks)
    assert result.score == 0.5 and result.passed  # min defaults to 0.5
    result = ev("x" * 10, type="python", callable="checks.py:length_score", base_dir=user_checks, min=0.6)
    assert not result.passed


def test_python_dict_of_scores(user_checks: Path) -> None:
    result = ev("a long reply here", type="python", callable="checks.py:tone", base_dir=user_checks)
    # mean of 1.0, 0.0 (17 chars is not < 10), 0.2 = 0.4
    assert result.scores == {"polite": 1.0, "brief": 0.0, "warm": 0.2}
    assert result.score == pytest.approx(0.4)
    assert not result.passed
    assert result.detail == "score 0.40 < min 0.5 (brief=0.00, warm=0.20)"


def test_python_callable_that_raises(user_checks: Path) -> None:
    with pytest.raises(CheckError, match=r"callable checks.py:broken raised KeyError: 'nope'"):
        ev("x", type="python", name="b", callable="checks.py:broken", base_dir=user_checks)


@pytest.mark.parametrize(("func", "shown"), [("wrong", "'yes'"), ("too_big", "3")])
def test_python_callable_with_a_bad_return(user_checks: Path, func: str, shown: str) -> None:
    with pytest.raises(CheckError, match=f"returned {shown}; expected a bool, a number between 0 and 1"):
        ev("x", type="python", callable=f"checks.py:{func}", base_dir=user_checks)


def test_python_without_or_with_a_missing_callable(user_checks: Path) -> None:
    with pytest.raises(CheckError, match="no 'callable:' given"):
        ev("x", type="python", base_dir=user_checks)
    with pytest.raises(ConfigError, match="has no function 'nope'"):
        ev("x", type="python", callable="checks.py:nope", base_dir=user_checks)
