"""Pre-flight policy for submitted code: clear, early errors for honest mistakes and obvious abuse.

This is a courtesy, never the security boundary (the container and trusted aggregation are):
code that slips past it — a ``getattr`` trick, a network call through pandas — is still
contained at run time. It catches, before any budget is reserved, and naming the line and fix:

* syntax errors;
* constructs RestrictedPython refuses (``exec``/``eval``, dunder names and attributes such as
  ``__class__`` or ``__import__``, private attributes) — its compiler is used as a linter only;
* imports outside the allow-list of analysis libraries;
* a missing or malformed ``analyze(df)``.

Names that merely start with one underscore (``_helper``, ``_``) are ordinary Python style and
allowed, although RestrictedPython's own runtime would refuse them: that runtime is not used.
"""

from __future__ import annotations

import ast
import re
import threading
from dataclasses import dataclass

from RestrictedPython import compile_restricted_exec

ALLOWED_MODULES = frozenset(
    {
        "pandas", "numpy", "scipy", "sklearn", "statsmodels",
        "math", "statistics", "datetime", "collections", "itertools", "functools", "re", "json",
        "typing", "dataclasses", "time", "__future__",
    }
)  # fmt: skip
_ALLOWED_TEXT = ", ".join(sorted(ALLOWED_MODULES - {"__future__"}))
_RESTRICTED_LINE = re.compile(r"^Line (\d+): (.*)$", re.DOTALL)
#: RestrictedPython's complaint about a plain (non-dunder) name with a leading underscore.
_SINGLE_UNDERSCORE_NAME = re.compile(r'^"_(?!_)[^"]*" is an invalid variable name')
#: CPython 3.11 keeps the AST constructor's recursion depth in per-interpreter state, so two
#: threads turning source into AST objects at once (FastAPI runs routes in a thread pool) can
#: corrupt it and raise ``SystemError: AST constructor recursion depth mismatch`` (CPython
#: gh-106905). Parsing is CPU-bound under the GIL anyway: one parse at a time costs nothing.
_PARSER = threading.Lock()


@dataclass(frozen=True)
class PolicyViolation:
    line: int | None
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line else self.message


def _restricted_python(source: str) -> list[PolicyViolation]:
    found = []
    for error in compile_restricted_exec(source, filename="analysis.py").errors:
        match = _RESTRICTED_LINE.match(error)
        line, text = (int(match.group(1)), match.group(2)) if match else (None, error)
        if _SINGLE_UNDERSCORE_NAME.match(text):
            continue
        found.append(PolicyViolation(line, f"{text.rstrip('.')}; rewrite without it"))
    return found


def _imports(tree: ast.Module) -> list[PolicyViolation]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                found.append(
                    PolicyViolation(
                        node.lineno, "relative imports are not allowed; put all code in one file"
                    )
                )
                continue
            modules = [node.module or ""]
        else:
            continue
        for module in modules:
            if module.split(".")[0] not in ALLOWED_MODULES:
                found.append(
                    PolicyViolation(
                        node.lineno,
                        f"import of {module!r} is not allowed; use only: {_ALLOWED_TEXT} "
                        "(files and network are unavailable in the sandbox anyway)",
                    )
                )
    return found


def _analyze_function(tree: ast.Module) -> list[PolicyViolation]:
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


#: Checking is CPU-bound and serialised (``_PARSER``): at 64 KiB the slowest shapes measured take
#: ~0.2 s, at 256 KiB ~0.8 s. Real analyses are a few KiB; the bound keeps one upload from
#: holding every other submission for long.
MAX_CODE_BYTES = 64 * 1024


def check_code(source: str, max_bytes: int = MAX_CODE_BYTES) -> list[PolicyViolation]:
    """Return every problem found, in line order; an empty list means the code may be queued."""
    try:
        size = len(source.encode("utf-8"))
    except UnicodeEncodeError as exc:  # a lone surrogate: no UTF-8 file can hold it
        line = source.count("\n", 0, exc.start) + 1
        return [
            PolicyViolation(
                line,
                f"code contains a lone surrogate character (U+{ord(source[exc.start]):04X}), "
                "which is not valid text; save the file as UTF-8 and resubmit",
            )
        ]
    if size > max_bytes:
        return [PolicyViolation(None, f"code is larger than {max_bytes} bytes; trim it")]
    if "\x00" in source:
        return [PolicyViolation(None, "code contains a NUL byte; submit a plain text .py file")]
    with _PARSER:
        try:
            tree = ast.parse(source, filename="analysis.py")
            restricted = _restricted_python(source)
        except (RecursionError, MemoryError):
            return [
                PolicyViolation(
                    None,
                    "code is nested too deeply to check (e.g. hundreds of chained `+`); "
                    "split the expression into steps or use sum()/a loop",
                )
            ]
        except SyntaxError as exc:
            return [PolicyViolation(exc.lineno, f"syntax error: {exc.msg}; fix it and resubmit")]
    found = restricted + _imports(tree) + _analyze_function(tree)
    return sorted(found, key=lambda v: (v.line or 0, v.message))
