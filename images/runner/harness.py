"""In-container harness: run the contestant's ``analyze(df)`` on one block, print one result line.

This file runs *inside* the sandbox next to untrusted code, so nothing here is trusted: the
host parses whatever comes out strictly, clips it and adds noise. The harness only makes the
honest case easy:

* the block is read from ``/data/block.parquet`` (mounted read-only, the only data visible);
* the code is ``/job/analysis.py`` (read-only);
* everything the contestant prints goes to **stderr** (organizer-only logs), because fd 1 is
  re-pointed to fd 2 before the code is loaded;
* the result is written as a single JSON line to the *original* stdout:
  ``{"status": "ok", "values": {...}}`` or ``{"status": "error", "error": "<ExceptionClass>"}``.
"""

from __future__ import annotations

import json
import numbers
import os
import sys
import traceback

CODE_PATH = "/job/analysis.py"
DATA_PATH = "/data/block.parquet"


def _to_jsonable(values: object) -> object:
    """Turn numpy scalars into floats; leave anything odd for the host's strict parser to reject."""
    if not isinstance(values, dict):
        return repr(values)[:200]
    out: dict[str, object] = {}
    for key, value in values.items():
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            out[str(key)] = float(value)
        else:
            out[str(key)] = repr(value)[:200]
    return out


def main() -> int:
    result_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    result = os.fdopen(result_fd, "w", encoding="utf-8")
    try:
        import pandas as pd

        frame = pd.read_parquet(DATA_PATH)
        with open(CODE_PATH, encoding="utf-8") as handle:
            source = handle.read()
        namespace: dict[str, object] = {"__name__": "analysis"}
        exec(compile(source, "analysis.py", "exec"), namespace)
        analyze = namespace.get("analyze")
        if not callable(analyze):
            raise NameError("analysis.py defines no function analyze(df)")
        values = analyze(frame)
        line = json.dumps({"status": "ok", "values": _to_jsonable(values)})
        code = 0
    except BaseException as exc:  # the contestant may raise anything, SystemExit included
        traceback.print_exc(file=sys.stderr)
        line = json.dumps({"status": "error", "error": type(exc).__name__})
        code = 1
    result.write(line + "\n")
    result.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
