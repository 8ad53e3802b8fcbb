"""In-container harness: run the contestant's ``analyze(df)`` on one block, print one result line.

This file runs *inside* the sandbox next to untrusted code, so nothing here is trusted: the
host parses whatever comes out strictly, clips it and adds noise. The harness only makes the
honest case easy:

* the block is read from ``/data/block.parquet`` (mounted read-only, the only data visible);
* the code is ``/job/analysis.py`` (read-only);
* everything the contestant prints goes to **stderr** (organizer-only logs), because fd 1 is
  re-pointed to fd 2 before the code is loaded;
* the result is written as a single JSON line to the *original* stdout:
  ``{"status": "ok", "values": {...}}`` or ``{"status": "error", "error": "<ExceptionClass>"}``,
  written by ``privacy/block_line.py``, the format's one definition: the host reads the line
  with the same file (the image build copies it to ``/opt/unseen/privacy/``).
"""

from __future__ import annotations

import os
import sys
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script dir out
from privacy.block_line import error_line, ok_line

CODE_PATH = "/job/analysis.py"
DATA_PATH = "/data/block.parquet"


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
        line = ok_line(values)
        code = 0
    except BaseException as exc:  # the contestant may raise anything, SystemExit included
        traceback.print_exc(file=sys.stderr)
        line = error_line(exc)
        code = 1
    result.write(line + "\n")
    result.flush()
    return code


if __name__ == "__main__":
    sys.exit(main())
