"""One result line, one reading: the server's parser, the client's local run, the harness's and
the zygote's writer and the zygote's relay all agree on the same lines (privacy/block_line.py).

Before that module each had its own code and they disagreed: a value too large for a float
crashed the client, a 300 kB line passed locally and defaulted on the server, a UTF-8 BOM or
deep nesting did too, the zygote relayed a line that is not UTF-8 as one that is, and the
writer turned an integer beyond float range into an error of the whole block.
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
import tarfile
from fractions import Fraction
from types import ModuleType

import numpy as np
import pytest

from client.local_run import parse_result
from privacy import block_line
from privacy.block_line import MAX_RESULT_BYTES, Refusal, read_line
from privacy.outputs import BlockOutcome, make_output_spec, parse_block_output
from sandbox.container import RunEnd, SandboxLimits
from sandbox.image import REPO_ROOT, RUNNER, RUNNER_DIR, write_context
from sandbox.zygote import frame_bytes
from tests.conftest import Sandbox

SPECS = [make_output_spec("a", 0, 10, 5), make_output_spec("b", -1, 1, 0)]
OUTPUTS = [{"name": s.name, "lo": s.lo, "hi": s.hi, "default": s.default} for s in SPECS]
DEFAULTS = {s.name: s.default for s in SPECS}
OK, PARTIAL, DEFAULTED = BlockOutcome.OK, BlockOutcome.PARTIAL, BlockOutcome.DEFAULTED


def _script(name: str) -> ModuleType:
    """An in-image script loaded from its file, as the image runs it (it imports block_line)."""
    spec = importlib.util.spec_from_file_location(f"unseen_{name}", RUNNER_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def harness() -> ModuleType:
    return _script("harness")


@pytest.fixture(scope="module")
def zygote() -> ModuleType:
    return _script("zygote")


def ok(values: str) -> bytes:
    return b'{"status": "ok", "values": {' + values.encode() + b"}}"


def padded(size: int) -> bytes:
    """A valid line of ``size`` bytes, newline not counted (a: 1, b: 0, and padding)."""
    start = b'{"status": "ok", "values": {"a": 1, "b": 0}, "pad": "'
    return start + b"x" * (size - len(start) - 2) + b'"}'


GOOD, GOOD_VALUES = ok('"a": 3, "b": 0.25'), {"a": 3.0, "b": 0.25}
NOT_UTF8 = b'{"status": "ok", "values": {"a": 1, "b": 0}, "n": "\xff"}\n'

#: (id, what the block wrote, the outcome, the declared values that parsed)
LINES: list[tuple[str, bytes, BlockOutcome, dict[str, float]]] = [
    ("good", GOOD + b"\n", OK, GOOD_VALUES),
    ("good, CRLF", GOOD + b"\r\n", OK, GOOD_VALUES),
    ("good, no newline", GOOD, OK, GOOD_VALUES),
    ("NaN", ok('"a": NaN, "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("Infinity", ok('"a": Infinity, "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("-Infinity", ok('"a": -Infinity, "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("1e999 as a float", ok('"a": 1e999, "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("1e400 as digits", ok('"a": 1' + "0" * 400 + ', "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("-1e400 as digits", ok('"a": -1' + "0" * 400 + ', "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("over int digits limit", ok('"a": ' + "1" * 5000 + ', "b": 0.5'), DEFAULTED, {}),
    ("bool", ok('"a": true, "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("string", ok('"a": "3", "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("null", ok('"a": null, "b": 0.5'), PARTIAL, {"b": 0.5}),
    ("missing", ok('"b": 0.5'), PARTIAL, {"b": 0.5}),
    ("undeclared name", ok('"a": 1, "b": 0, "c": 2'), DEFAULTED, {}),
    ("values a list", b'{"status": "ok", "values": [1, 2]}', DEFAULTED, {}),
    ("no values", b'{"status": "ok"}', DEFAULTED, {}),
    ("status error", b'{"status": "error", "error": "ZeroDivisionError"}\n', DEFAULTED, {}),
    ("no status", b'{"values": {"a": 1, "b": 0}}', DEFAULTED, {}),
    ("300 kB line", padded(300_000) + b"\n", DEFAULTED, {}),
    ("at the cap", padded(MAX_RESULT_BYTES) + b"\n", OK, {"a": 1.0, "b": 0.0}),
    ("a byte over the cap", padded(MAX_RESULT_BYTES + 1) + b"\n", DEFAULTED, {}),
    ("not UTF-8 in a string", NOT_UTF8, DEFAULTED, {}),
    ("not UTF-8 at all", b"\xff\xfe\x00garbage\n", DEFAULTED, {}),
    ("UTF-8 BOM", b"\xef\xbb\xbf" + GOOD + b"\n", DEFAULTED, {}),
    ("deep nesting under the cap", b"[" * 50_000 + b"\n", DEFAULTED, {}),
    ("trailing junk line", GOOD + b"\ntraceback...\n", DEFAULTED, {}),
    ("trailing blank lines", GOOD + b"\n\n  \n\t\n", OK, GOOD_VALUES),
    ("junk before", b"hello\n{not json\n" + GOOD + b"\n", OK, GOOD_VALUES),
    ("two results: the last", ok('"a": 1, "b": 0') + b"\n" + GOOD + b"\n", OK, GOOD_VALUES),
    ("not JSON", b"not json\n", DEFAULTED, {}),
    ("empty", b"", DEFAULTED, {}),
    ("whitespace", b"  \n \r\n", DEFAULTED, {}),
]


def line(case_id: str) -> bytes:
    return next(raw for name, raw, _, _ in LINES if name == case_id)


def _expected_server(outcome: BlockOutcome, parsed: dict[str, float]) -> dict[str, float]:
    return DEFAULTS if outcome is DEFAULTED else {**DEFAULTS, **parsed}


def relayed_by_the_zygote(zygote: ModuleType, out: bytes) -> bytes:
    """What the host gets of a block's result bytes in the zygote form: the zygote keeps the
    last ``STREAM_LIMIT`` bytes, sends them in a JSON frame, the host reads them back."""
    frame = json.dumps({"stdout": zygote.frame_text(out[-zygote.STREAM_LIMIT :])})
    return frame_bytes(json.loads(frame)["stdout"])[-SandboxLimits().stdout_bytes :]


@pytest.mark.parametrize(
    ("raw", "outcome", "parsed"), [c[1:] for c in LINES], ids=[c[0] for c in LINES]
)
def test_server_and_client_read_every_line_alike(
    raw: bytes, outcome: BlockOutcome, parsed: dict[str, float]
) -> None:
    server = parse_block_output(raw, SPECS)
    assert (server.outcome, server.values) == (outcome, _expected_server(outcome, parsed))
    values, said, reason = parse_result(raw, OUTPUTS)  # never raises, whatever the line
    assert (said, values) == (outcome.value, parsed)
    assert bool(reason) == (outcome is not OK)


@pytest.mark.parametrize(
    ("raw", "outcome", "parsed"), [c[1:] for c in LINES], ids=[c[0] for c in LINES]
)
def test_both_isolation_forms_deliver_the_same_line(
    zygote: ModuleType, raw: bytes, outcome: BlockOutcome, parsed: dict[str, float]
) -> None:
    container = raw[-SandboxLimits().stdout_bytes :]  # sandbox/container.py keeps the tail
    for delivered in (container, relayed_by_the_zygote(zygote, raw)):
        server = parse_block_output(delivered, SPECS)
        assert (server.outcome, server.values) == (outcome, _expected_server(outcome, parsed))
    # The zygote answers early on a complete line; one the server accepts is always one.
    complete = raw.endswith(b"\n")
    said = zygote.said_status(raw)
    if complete and outcome is not DEFAULTED:
        assert said == "ok"
    if not complete:
        assert said is None


def test_the_zygote_knows_an_error_line_and_nothing_else(zygote: ModuleType) -> None:
    assert zygote.said_status(b'{"status": "error", "error": "KeyError"}\n') == "error"
    assert zygote.said_status(b'{"status": "error", "error": "KeyError"}') is None
    for odd in (b'{"status": "maybe"}\n', b"[1]\n", b"[" * 200_000 + b"\n", b"\xff\n", b"\n"):
        assert zygote.said_status(odd) is None  # never raises: the zygote is PID 1


class Odd:
    def __repr__(self) -> str:
        return "Odd()" * 100


#: (id, what ``analyze`` returned, the outcome, the declared values that parsed)
RETURNED: list[tuple[str, object, BlockOutcome, dict[str, float]]] = [
    ("floats and ints", {"a": 3, "b": 0.25}, OK, {"a": 3.0, "b": 0.25}),
    ("numpy scalars", {"a": np.float32(2.5), "b": np.int64(1)}, OK, {"a": 2.5, "b": 1.0}),
    ("a fraction", {"a": Fraction(1, 4), "b": 0}, OK, {"a": 0.25, "b": 0.0}),
    ("NaN", {"a": float("nan"), "b": 0.5}, PARTIAL, {"b": 0.5}),
    ("numpy inf", {"a": np.float64("-inf"), "b": 0.5}, PARTIAL, {"b": 0.5}),
    ("10**400", {"a": 10**400, "b": 0.5}, PARTIAL, {"b": 0.5}),
    ("-10**5000", {"a": -(10**5000), "b": 0.5}, PARTIAL, {"b": 0.5}),
    ("a huge fraction", {"a": Fraction(10**400, 3), "b": 0.5}, PARTIAL, {"b": 0.5}),
    ("bool", {"a": True, "b": np.bool_(False)}, PARTIAL, {}),
    ("a string", {"a": "3", "b": 0.5}, PARTIAL, {"b": 0.5}),
    ("an object", {"a": Odd(), "b": 0.5}, PARTIAL, {"b": 0.5}),
    ("missing", {"b": 0.5}, PARTIAL, {"b": 0.5}),
    ("undeclared name", {"a": 1, "b": 0, "c": 2}, DEFAULTED, {}),
    ("a non-string key", {"a": 1, "b": 0, 7: 2}, DEFAULTED, {}),
    ("not a dict", [1, 2], DEFAULTED, {}),
    ("None", None, DEFAULTED, {}),
]


@pytest.mark.parametrize(
    ("returned", "outcome", "parsed"), [c[1:] for c in RETURNED], ids=[c[0] for c in RETURNED]
)
def test_what_the_image_writes_is_read_as_the_contestant_meant(
    harness: ModuleType,
    zygote: ModuleType,
    returned: object,
    outcome: BlockOutcome,
    parsed: dict[str, float],
) -> None:
    for writer in (harness.ok_line, zygote.ok_line):
        line = (writer(returned) + "\n").encode()
        assert len(line) <= MAX_RESULT_BYTES
        server = parse_block_output(line, SPECS)
        assert (server.outcome, server.values) == (outcome, _expected_server(outcome, parsed))
        values, said, _reason = parse_result(line, OUTPUTS)
        assert (said, values) == (outcome.value, parsed)
        assert zygote.said_status(line) == "ok"
        relayed = parse_block_output(relayed_by_the_zygote(zygote, line), SPECS)
        assert relayed == server


def test_an_error_is_written_alike_and_read_as_one(harness: ModuleType, zygote: ModuleType) -> None:
    for writer in (harness.error_line, zygote.error_line):
        line = (writer(ZeroDivisionError("the data: 42")) + "\n").encode()
        assert line == b'{"status": "error", "error": "ZeroDivisionError"}\n'  # no message
        assert read_line(line, ["a", "b"]).refusal is Refusal.NOT_OK
        assert parse_result(line, OUTPUTS)[1:] == (
            "defaulted",
            "analyze raised (see the traceback in stderr)",
        )
        assert zygote.said_status(line) == "error"


def test_the_in_image_scripts_use_the_shared_module(
    harness: ModuleType, zygote: ModuleType
) -> None:
    for script in (harness, zygote):
        assert script.ok_line is block_line.ok_line
        assert script.error_line is block_line.error_line
    assert zygote.said_status is block_line.said_status
    assert zygote.frame_text is block_line.frame_text


def test_the_client_says_why_a_block_would_default() -> None:
    reasons = {
        case_id: parse_result(raw, OUTPUTS)[2]
        for case_id, raw, outcome, _ in LINES
        if outcome is DEFAULTED
    }
    assert reasons["300 kB line"] == (
        "the result line is over 64 kB: analyze must return only the declared outputs"
    )
    assert reasons["undeclared name"] == "undeclared output name(s): c"
    assert reasons["values a list"] == "analyze must return a dict of {name: number}"
    assert reasons["not UTF-8 in a string"] == "the result line is not strict JSON"
    assert reasons["empty"] == "no output"
    assert parse_result(line("1e400 as digits"), OUTPUTS)[2] == "missing or not a finite number: a"


def test_the_image_is_built_with_this_very_file() -> None:
    shared = REPO_ROOT / "privacy" / "block_line.py"
    assert shared in RUNNER.shared  # so it is hashed into the image's tag, too
    dockerfile = (RUNNER_DIR / "Dockerfile").read_text()
    assert "COPY privacy/block_line.py /opt/unseen/privacy/" in dockerfile
    assert not (RUNNER_DIR / "block_line.py").exists()  # no second copy to drift
    archive = io.BytesIO()
    write_context(RUNNER, archive)
    with tarfile.open(fileobj=archive) as tar:
        member = tar.extractfile("privacy/block_line.py")
        assert member is not None and member.read() == shared.read_bytes()
        assert {"Dockerfile", "harness.py", "zygote.py", "janitor.py"} <= set(tar.getnames())
        assert not [name for name in tar.getnames() if "__pycache__" in name]


# --- end to end, in the runner image ---------------------------------------------------------

#: Code that writes its own result line to the result channel and exits before the harness can.
RAW_WRITER = """
import os, stat, fcntl

def analyze(df):
    line = {line!r}
    for fd in map(int, os.listdir('/proc/self/fd')):
        try:
            mode = os.fstat(fd).st_mode
            writable = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY
        except OSError:
            continue
        if fd > 2 and stat.S_ISFIFO(mode) and writable:
            left = memoryview(line)
            while left:  # gVisor's host pipes may take part of a large write (POSIX allows)
                left = left[os.write(fd, left):]
    os._exit(0)
"""

E2E = ["good", "not UTF-8 in a string", "1e400 as digits", "300 kB line"]


@pytest.mark.parametrize("case_id", E2E)
def test_a_line_written_in_the_sandbox_is_read_alike_in_both_forms(
    any_sandbox: Sandbox, case_id: str
) -> None:
    _, raw, outcome, parsed = next(c for c in LINES if c[0] == case_id)
    run = any_sandbox.run(RAW_WRITER.format(line=raw))
    assert run.end is RunEnd.EXITED, run.stderr
    assert run.stdout == raw[-SandboxLimits().stdout_bytes :]  # both forms keep the tail
    server = parse_block_output(run.stdout, SPECS)
    assert (server.outcome, server.values) == (outcome, _expected_server(outcome, parsed))


def test_a_value_beyond_float_range_defaults_alone_in_both_forms(any_sandbox: Sandbox) -> None:
    run = any_sandbox.run("def analyze(df):\n    return {'a': 10**400, 'b': float(len(df)) / 4}\n")
    assert run.end is RunEnd.EXITED, run.stderr
    parsed = parse_block_output(run.stdout, SPECS)
    assert (parsed.outcome, parsed.values) == (PARTIAL, {"a": 5.0, "b": 0.75})


def test_the_image_holds_this_very_file(any_sandbox: Sandbox) -> None:
    source = (REPO_ROOT / "privacy" / "block_line.py").read_text()
    probe = (
        "import privacy.block_line as m\n"
        "def analyze(df):\n"
        "    same = open(m.__file__, encoding='utf-8').read() == {source!r}\n"
        "    return {{'a': float(same), 'b': float(m.__file__.startswith('/opt/unseen/'))}}\n"
    )
    run = any_sandbox.run(probe.format(source=source))
    assert run.end is RunEnd.EXITED, run.stderr
    assert parse_block_output(run.stdout, SPECS).values == {"a": 1.0, "b": 1.0}
