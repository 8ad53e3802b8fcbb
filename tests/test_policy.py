"""Pre-flight code checks: honest mistakes get the line and the fix before budget is reserved."""

from __future__ import annotations

import pytest

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
    assert any("async" in m.lower() for m in messages("async def analyze(df):\n    return {}\n"))


def test_oversized_and_nul_code_are_refused() -> None:
    assert "larger than" in messages("#" * 300_000)[0]
    assert "NUL" in messages("def analyze(df):\n    return {}\n\x00")[0]
    assert "larger than 65536" in messages("#" * 70_000)[0]  # checking time stays bounded


def test_a_lone_surrogate_is_refused_with_its_line() -> None:
    found = check_code("def analyze(df):\n    return {}\nx = '\ud83d'\n")
    assert len(found) == 1 and found[0].line == 3 and "U+D83D" in found[0].message


HONEST = """
from __future__ import annotations

import numpy as np
import pandas as pd
from collections import Counter
from sklearn.linear_model import LinearRegression


def _share(part, whole):
    return part / whole if whole else 0.0


def analyze(df: pd.DataFrame) -> dict[str, float]:
    out = df[df["event"] == "out"]
    model = LinearRegression().fit(out[["station_id"]], out["fare"])
    lines = Counter(out["line"])
    for _ in range(2):
        pass
    print(f"{len(out)} exits")
    return {"slope": float(model.coef_[0]), "share": _share(len(out), len(df)),
            "lines": float(len(lines)), "mean": float(np.mean(out["fare"]))}
"""


def test_honest_analysis_code_passes() -> None:
    assert check_code(HONEST) == []


@pytest.mark.parametrize(
    ("source", "line", "fragment"),
    [
        ("import os\ndef analyze(df):\n    return {}\n", 1, "import of 'os' is not allowed"),
        ("def analyze(df):\n    import socket\n    return {}\n", 2, "'socket'"),
        ("from subprocess import run\ndef analyze(df):\n    return {}\n", 1, "'subprocess'"),
        (
            "from . import x\ndef analyze(df):\n    return {}\n",
            1,
            "relative imports are not allowed",
        ),
        ("def analyze(df):\n    return {'x': df.__class__}\n", 2, '"__class__"'),
        ("def analyze(df):\n    exec('1')\n    return {}\n", 2, "Exec calls are not allowed"),
        ("def analyze(df):\n    return eval('{}')\n", 2, "Eval calls are not allowed"),
        ("def analyze(df):\n    return __import__('os')\n", 2, '"__import__"'),
        ("def analyze(df):\n    return {'x': df._mgr}\n", 2, '"_mgr"'),
    ],
)
def test_abuse_is_refused_naming_the_line(source: str, line: int, fragment: str) -> None:
    found = check_code(source)
    assert found, source
    assert found[0].line == line
    assert fragment in found[0].message
    assert "allowed" in str(found[0]) or "rewrite" in str(found[0])


def test_every_problem_is_reported_in_line_order() -> None:
    source = "import os\nimport socket\ndef analyse(df):\n    return eval('1')\n"
    found = check_code(source)
    assert [v.line for v in found] == [None, 1, 2, 4]
    assert any("def analyze(df)" in v.message for v in found)


@pytest.mark.parametrize(
    "expression",
    ["a+" * 400 + "a", "-" * 60_000 + "1", "a" + ".b" * 30_000, "(" * 1000 + ")" * 1000],
)
def test_deeply_nested_code_gets_an_error_not_a_crash(expression: str) -> None:
    found = messages(f"x = {expression}\ndef analyze(df):\n    return {{}}\n")
    assert len(found) == 1
    assert "nested" in found[0] and ("split" in found[0] or "syntax error" in found[0])


def test_checks_from_many_threads_at_once_never_crash() -> None:
    """The API checks code in a thread pool; CPython 3.11 can corrupt its AST constructor's
    recursion counter when two threads build ASTs at once (gh-106905). A garbage-collector
    hook that yields the GIL on every collection makes threads switch inside the AST
    constructor; without the module's lock 200 checks on 4 threads failed about 8 times."""
    import gc
    import time
    from concurrent.futures import ThreadPoolExecutor

    source = "\n".join(
        f"def f{i}(x):\n    return [(a, {{'k': a * {i}}}) for a in x if a > {i}]" for i in range(5)
    )
    source += "\ndef analyze(df):\n    return {'n': float(len(df))}\n"

    def yield_gil(phase: str, _info: dict[str, int]) -> None:
        if phase == "start":
            time.sleep(0)

    threshold = gc.get_threshold()
    gc.set_threshold(50)
    gc.callbacks.append(yield_gil)
    try:
        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(lambda _: check_code(source), range(200)))
    finally:
        gc.callbacks.remove(yield_gil)
        gc.set_threshold(*threshold)
    assert results == [[]] * 200
