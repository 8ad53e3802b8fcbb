"""``unseen run --sample FILE.py``: the contestant's debugging loop.

The code runs on the dataset's public sample in the same runner image as a full-data block —
here, when Docker is here and holds the image the server names (``client.local_run``), else on
the server — and everything comes back: the values exactly as parsed (no clipping, no noise),
stdout, stderr and the traceback. No budget is spent. Full-data runs are submitted, never run
like this.

Exit codes scripts can rely on: 0 the code ran and every output parsed; 1 it failed on the
sample, or the request failed; 2 usage; 3 refused by the pre-flight policy.
"""

from __future__ import annotations

import ast
import json
import tempfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from client.api import UnseenClient
from client.cli_common import (
    EXIT_FAILED,
    EXIT_USAGE,
    AsJson,
    Token,
    Url,
    connected,
    errors,
)
from client.local_run import docker_problem, run_locally


def declared_outputs(source: str) -> list[dict[str, Any]]:
    """The module-level ``OUTPUTS = [...]`` literal of the file, read without running it."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return []  # the server's policy names the line
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "OUTPUTS" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError as exc:
                raise typer.BadParameter(
                    "OUTPUTS must be a literal list of {'name', 'lo', 'hi'} dicts, "
                    "or give --output name:lo:hi"
                ) from exc
            if isinstance(value, list):
                return value
    return []


def read_analysis(file: Path, output: list[str] | None) -> tuple[str, list[dict[str, Any]]]:
    """The file's source and its outputs (from --output, else its OUTPUTS list), or exit 2."""
    try:
        source = file.read_text(encoding="utf-8")
    except OSError as exc:
        errors.print(f"cannot read {file}: {exc.strerror}")
        raise typer.Exit(EXIT_USAGE) from exc
    check_syntax(file, source)
    outputs = [parse_output(o) for o in output] if output else declared_outputs(source)
    if not outputs:
        errors.print(f"{file.name} declares no outputs: add OUTPUTS = [...] or --output name:lo:hi")
        raise typer.Exit(EXIT_USAGE)
    return source, outputs


def check_syntax(file: Path, source: str) -> None:
    """A syntax error is named with its line and exits 2 (before "declares no outputs", which
    is what a file Python cannot read would otherwise say)."""
    try:
        ast.parse(source, filename=file.name)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" + (f", column {exc.offset}" if exc.offset else "")
        text = f": {exc.text.strip()}" if exc.text and exc.text.strip() else ""
        errors.print(f"{file.name}, {where}: syntax error: {exc.msg}{text}; fix that line "
                     "and try again", markup=False)  # fmt: skip
        raise typer.Exit(EXIT_USAGE) from exc
    except ValueError as exc:  # Python 3.11: a NUL byte
        errors.print(f"{file.name} is not Python source ({exc}); save it as a text file")
        raise typer.Exit(EXIT_USAGE) from exc


def parse_output(text: str) -> dict[str, Any]:
    """``name:lo:hi`` or ``name:lo:hi:default`` → an output declaration."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not parts[0]:
        raise typer.BadParameter(f"{text!r}: write name:lo:hi or name:lo:hi:default")
    try:
        numbers = [float(p) for p in parts[1:]]
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r}: lo, hi and default must be numbers") from exc
    declared: dict[str, Any] = {"name": parts[0], "lo": numbers[0], "hi": numbers[1]}
    if len(numbers) == 3:
        declared["default"] = numbers[2]
    return declared


WHERE = ("auto", "local", "server")


def _run_here(
    client: UnseenClient, dataset: str, source: str, outputs: list[dict[str, Any]], where: str
) -> dict[str, Any] | None:
    """The sample run in local Docker, or None to run it on the server (``auto`` only: a
    ``local`` run that cannot happen here exits 1 naming why)."""
    client.estimate(dataset, outputs, code=source)  # refused here as a submission would be
    with tempfile.TemporaryDirectory(prefix="unseen-sample-") as directory:
        sample_path = Path(directory) / f"{dataset}-sample.parquet"
        image = client.fetch_sample(dataset, sample_path)
        problem = "the server did not name its runner image" if image is None else None
        problem = problem or docker_problem(str(image))
        if problem is not None:
            if where == "local":
                errors.print(f"cannot run here: {problem}; or run it with --where server")
                raise typer.Exit(EXIT_FAILED)
            errors.print(f"running on the server: {problem}")
            return None
        assert image is not None
        return {
            "where": "local",
            "image": image,
            **run_locally(image, source, sample_path, outputs),
        }


def show(console: Console, path: Path, dataset: str, run: dict[str, Any]) -> None:
    place = f"here in {run['image']}" if run["where"] == "local" else "on the server"
    console.print(
        f"sample run of {path.name} on {dataset} ({place}): {run['end']}, outputs "
        f"{run['outcome']} ({run['seconds']:.2f} s, no budget spent)"
    )
    if run["reason"]:
        console.print(f"  {run['reason']}")
    table = Table("output", "value")
    for name, value in run["values"].items():
        table.add_row(name, f"{value:.6g}")
    console.print(table)
    for stream in ("stdout", "stderr"):
        if run[stream]:
            console.rule(stream)
            console.print(run[stream], markup=False, highlight=False, end="")


def run(
    file: Annotated[Path, typer.Argument(help="Python file defining analyze(df).")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset whose sample to use.")],
    sample: Annotated[
        bool, typer.Option("--sample", help="Run on the public sample (required).")
    ] = False,
    output: Annotated[
        list[str] | None,
        typer.Option(
            "--output", "-o", help="name:lo:hi[:default]; default: the file's OUTPUTS list."
        ),
    ] = None,
    where: Annotated[
        str,
        typer.Option(
            "--where",
            help="auto: here in Docker when the runner image is here, else on the server; "
            "local: here or fail; server: always on the server.",
        ),
    ] = "auto",
    url: Url = None,
    token: Token = None,
    as_json: AsJson = False,
) -> None:
    """Run FILE.py on a dataset's public sample: values, stdout, stderr, traceback; no budget.

    Example: unseen run --sample examples/mean_fare_by_period.py --dataset transport_cards
    """
    console = Console(highlight=False)
    if not sample:
        errors.print(
            "only --sample runs show their output; full-data jobs are submitted "
            "with `unseen submit FILE.py -d DATASET -e EPSILON` and return noised values only"
        )
        raise typer.Exit(EXIT_USAGE)
    if where not in WHERE:
        errors.print(f"--where must be one of {', '.join(WHERE)}; got {where!r}")
        raise typer.Exit(EXIT_USAGE)
    source, outputs = read_analysis(file, output)
    with connected(url, token, timeout=300.0) as client:
        result = None if where == "server" else _run_here(client, dataset, source, outputs, where)
        if result is None:
            job = client.run_on_sample(dataset, source, outputs)
            result = {"where": "server", "job": job["id"], **job["sample_run"]}
    if as_json:
        console.print_json(json.dumps(result))
    else:
        show(console, file, dataset, result)
    if result["outcome"] != "ok":
        raise typer.Exit(EXIT_FAILED)
