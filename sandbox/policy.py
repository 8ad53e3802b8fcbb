"""Pre-flight check of submitted code: clear, early errors for honest mistakes.

This is a courtesy, never the security boundary (the container and trusted aggregation are):
it catches syntax errors and a missing ``analyze`` before any budget is reserved, and names
the line and the fix.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass


@dataclass(frozen=True)
class PolicyViolation:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def check_code(source: str, max_bytes: int = 256 * 1024) -> list[PolicyViolation]:
    """Return every problem found; an empty list means the code may be queued."""
    if len(source.encode("utf-8")) > max_bytes:
        return [PolicyViolation(None, f"code is larger than {max_bytes} bytes; trim it")]
    if "\x00" in source:
        return [PolicyViolation(None, "code contains a NUL byte; submit a plain text .py file")]
    try:
        tree = ast.parse(source, filename="analysis.py")
    except SyntaxError as exc:
        return [PolicyViolation(exc.lineno, f"syntax error: {exc.msg}; fix it and resubmit")]
    analyze = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == "analyze"
    ]
    if not analyze:
        return [
            PolicyViolation(
                None,
                "no top-level function analyze(df) found; define "
                "`def analyze(df): return {'name': value}`",
            )
        ]
    function = analyze[-1]
    if isinstance(function, ast.AsyncFunctionDef):
        return [PolicyViolation(function.lineno, "analyze must be a plain def, not async def")]
    positional = function.args.posonlyargs + function.args.args
    if len(positional) != 1 and not function.args.vararg:
        return [
            PolicyViolation(
                function.lineno,
                f"analyze takes exactly one argument (the block's DataFrame); "
                f"it declares {len(positional)}",
            )
        ]
    return []
