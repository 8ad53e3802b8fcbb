"""Pre-flight code checks: honest mistakes get the line and the fix before budget is reserved."""

from __future__ import annotations

from sandbox.policy import check_code


def messages(source: str) -> list[str]:
    return [str(v) for v in check_code(source)]


def test_good_code_passes() -> None:
    assert check_code("import pandas as pd\n\ndef analyze(df):\n    return {'n': len(df)}\n") == []


def test_syntax_error_names_the_line() -> None:
    found = check_code("def analyze(df):\n    return {'n': len(df)\n")
    assert found and found[0].line == 2 and "syntax error" in found[0].message


def test_missing_analyze_names_the_fix() -> None:
    assert "def analyze(df)" in messages("def analyse(df):\n    return {}\n")[0]


def test_wrong_signature_and_async_are_refused() -> None:
    assert "exactly one argument" in messages("def analyze(df, x):\n    return {}\n")[0]
    assert "async" in messages("async def analyze(df):\n    return {}\n")[0]


def test_oversized_and_nul_code_are_refused() -> None:
    assert "larger than" in messages("#" * 300_000)[0]
    assert "NUL" in messages("def analyze(df):\n    return {}\n\x00")[0]
