"""The catalog: organizers register datasets on this node; everyone reads catalog and samples."""

from __future__ import annotations

import base64
import errno
import hashlib
import shutil
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from sqlalchemy import select

from api import crud, synthesis
from api.auth import CurrentUser, Organizer
from api.context import AppContext, Context
from api.dataset_files import directory_name
from api.errors import ApiError
from api.models import Dataset
from api.populations import Caps, place
from api.schemas import AnyDatasetOut, DatasetOrganizerOut, NewDataset
from api.views import dataset_organizer_view, dataset_view
from runner.blocks import (
    BlockLayout,
    PartitionError,
    is_numeric_type,
    parquet_columns,
    partition_dataset,
)
from runner.node_errors import NodeTaskFailed, NodeUnavailable
from runner.nodes import Nodes
from runner.staging import Staged

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
RUNNER_IMAGE_HEADER = "X-Unseen-Runner-Image"


def _existing_file(raw: str, what: str) -> Path:
    path = Path(raw)
    if not path.is_absolute() or not path.is_file():
        raise ApiError(
            422, "bad_path", f"{what} {raw!r} is not an absolute path to a file on this node"
        )
    return path


def _check_declaration(body: NewDataset, columns: dict[str, str]) -> None:
    def known(column: str, field: str) -> None:
        if column not in columns:
            raise ApiError(
                422,
                "unknown_column",
                f"{field} names column {column!r}, which the data does not have; "
                f"columns are: {', '.join(columns)}",
            )

    known(body.unit_column, "unit_column")
    for column, (lo, hi) in body.bounds.items():
        known(column, "bounds")
        if not is_numeric_type(columns[column]):
            raise ApiError(422, "bad_bounds", f"bounds given for non-numeric column {column!r}")
        if not lo < hi:
            raise ApiError(422, "bad_bounds", f"bounds of {column!r}: lo={lo} must be < hi={hi}")
    for column in body.key_sets:
        known(column, "key_sets")


@dataclass(frozen=True)
class _Prepared:
    """A partitioned dataset, wherever it was partitioned: what the catalog records."""

    layout: BlockLayout
    columns: dict[str, str]
    sample_rows: int
    sha256: str  # of the source file's bytes: the same bytes are the same people


def _check_sample(columns: dict[str, str], sample_columns: dict[str, str]) -> None:
    if sample_columns != columns:
        raise ApiError(
            422,
            "sample_schema_mismatch",
            f"the sample's columns {sample_columns} differ from the data's {columns}; "
            "the sample must have exactly the same columns and types",
        )


def _prepare_here(body: NewDataset, blocks: int, directory: Path) -> _Prepared:
    source = _existing_file(body.source_path, "source_path")
    sample = _existing_file(body.sample_path, "sample_path") if body.sample_path else None
    if sample is not None and source.resolve() == sample.resolve():
        raise ApiError(
            422,
            "sample_is_source",
            "the public sample must be a separate file, never the full data itself",
        )
    try:
        columns, _rows = parquet_columns(source)
        sample_columns, sample_rows = parquet_columns(sample) if sample else (columns, 0)
    except PartitionError as exc:
        raise ApiError(422, "bad_parquet", str(exc)) from exc
    _check_sample(columns, sample_columns)
    _check_declaration(body, columns)
    with source.open("rb") as file:
        sha256 = hashlib.file_digest(file, "sha256").hexdigest()
    layout = partition_dataset(source, directory / "blocks", body.unit_column, blocks)
    if sample is not None:
        shutil.copyfile(sample, directory / "sample.parquet")
    return _Prepared(layout, columns, sample_rows, sha256)


def _prepare_on_node(
    body: NewDataset, node: str, blocks: int, directory: Path, name: str, nodes: Nodes
) -> _Prepared:
    """The node inspects and partitions its own file; only the layout and the public sample
    come back. The full data never reaches this server."""
    if not nodes.reaches(node):
        raise ApiError(
            422,
            "no_broker",
            f"dataset on node {node!r}: this server has no broker to reach other nodes; start "
            "it with UNSEEN_BROKER_URL, or register the data on this server (omit node)",
        )
    try:
        seen = nodes.call(node, "unseen.inspect_dataset", body.source_path, body.sample_path or "")
        described = {"columns", "sample_columns", "sample_rows", "sha256"}
        if not isinstance(seen, dict) or set(seen) != described:
            raise ApiError(502, "node_answer", f"node {node!r} described the files oddly")
        if not (isinstance(seen["sha256"], str) and len(seen["sha256"]) == 64):
            raise ApiError(502, "node_answer", f"node {node!r} sent no usable content hash")
        _check_sample(seen["columns"], seen["sample_columns"])
        _check_declaration(body, seen["columns"])
        made = nodes.call(
            node, "unseen.prepare_dataset", name, body.source_path,
            body.sample_path or "", body.unit_column, blocks,
        )  # fmt: skip
    except NodeUnavailable as exc:
        raise ApiError(503, "node_unavailable", str(exc)) from exc
    except NodeTaskFailed as exc:  # the node's own refusal: a file, the data, its config
        raise ApiError(422, "node_refused", f"node {node!r}: {exc}") from exc
    layout = _node_layout(made, blocks, node)
    directory.mkdir(parents=True, exist_ok=True)
    if made["sample"]:
        (directory / "sample.parquet").write_bytes(base64.b64decode(made["sample"], validate=True))
    return _Prepared(layout, dict(seen["columns"]), int(seen["sample_rows"]), seen["sha256"])


def _node_layout(made: object, blocks: int, node: str) -> BlockLayout:
    """The layout a node reports, checked: the blocks asked for, whole positive counts."""
    fields = ("directory", "blocks", "rows", "units", "sample")
    if not isinstance(made, dict) or set(made) != set(fields):
        raise ApiError(502, "node_answer", f"node {node!r} answered the registration oddly")
    counts = [made["blocks"], made["rows"], made["units"]]
    if made["blocks"] != blocks or not all(type(n) is int and n >= 0 for n in counts):
        raise ApiError(502, "node_answer", f"node {node!r} reported an impossible layout")
    if not isinstance(made["directory"], str) or not Path(made["directory"]).is_absolute():
        raise ApiError(502, "node_answer", f"node {node!r} reported no usable directory")
    return BlockLayout(Path(made["directory"]), blocks, made["rows"], made["units"])


def _prepare(body: NewDataset, node: str, blocks: int, stage: Staged, ctx: AppContext) -> Dataset:
    """Partition into ``stage``, publish it whole, and the catalog row to record (not added
    yet); the API's refusal for what the data or the disk made impossible."""
    try:
        if node == ctx.settings.node:
            prepared = _prepare_here(body, blocks, stage.path)
        else:
            prepared = _prepare_on_node(body, node, blocks, stage.path, stage.final.name,
                                        ctx.nodes)  # fmt: skip
        if body.sample_path:
            (stage.path / "sample.parquet").chmod(0o644)
        directory = stage.publish()
    except PartitionError as exc:
        raise ApiError(422, "bad_dataset", str(exc)) from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC or "No space left" in str(exc):
            raise ApiError(
                507,
                "insufficient_storage",
                f"the data node ran out of disk space under {ctx.settings.data_dir} while "
                "partitioning; free space there and register again (nothing was kept)",
            ) from exc
        raise
    layout = prepared.layout
    if node == ctx.settings.node:  # its blocks were renamed with their directory
        layout = replace(layout, directory=directory / layout.directory.name)
    return Dataset(
        name=body.name,
        description=body.description,
        unit_column=body.unit_column,
        columns=prepared.columns,
        bounds={column: list(pair) for column, pair in body.bounds.items()},
        key_sets=body.key_sets,
        blocks=layout.blocks,
        rows=layout.rows,
        units=layout.units,
        directory=str(layout.directory),
        sample_path=str(directory / "sample.parquet") if body.sample_path else "",
        sample_rows=prepared.sample_rows,
        node=node,
        content_sha256=prepared.sha256,
    )


@router.post("", status_code=201)
def register(body: NewDataset, ctx: Context, actor: Organizer) -> DatasetOrganizerOut:
    """Partition the full data into keyed-hash blocks, here or on the data node holding it,
    and publish the organizer's sample. The dataset joins a population (``population``): the
    one of a dataset of the contest with the same source bytes, else the one named, else a
    new one named after it; budgets are kept per team and population.

    With ``synthesize`` instead of a sample file, the public sample is then made as a DP
    synthetic table of the full data (``POST /v1/datasets/{name}/synthesize``)."""
    if (body.sample_path is None) == (body.synthesize is None):
        raise ApiError(
            422, "sample_needed",
            "give synthesize (a DP synthetic sample made from the full data: the safe choice) "
            "or sample_path (a file you made, never real rows), not both and not neither",
        )  # fmt: skip
    with ctx.db.read() as session:
        contest = crud.resolve_contest(session, body.contest)
        if session.scalar(select(Dataset.id).where(Dataset.name == body.name)):
            raise ApiError(409, "dataset_exists", f"dataset {body.name!r} is already registered")
    node = body.node or ctx.settings.node
    blocks = body.blocks or ctx.settings.default_blocks
    dataset_id = uuid.uuid4().hex
    # Written under a temporary name and renamed whole once complete; kept only once the
    # catalog holds it (runner.staging: a registration killed half-way leaves nothing).
    with Staged(ctx.settings.datasets_dir, directory_name(body.name, dataset_id)) as stage:
        dataset = _prepare(body, node, blocks, stage, ctx)
        dataset.id, dataset.contest_id = dataset_id, contest.id
        caps = Caps(body.team_epsilon, body.team_delta, body.population_epsilon,
                    body.population_delta)  # fmt: skip
        with ctx.db.transaction() as session:
            place(session, dataset, contest, body.population, caps)
            crud.add_dataset(session, dataset, actor)
    if body.synthesize is not None:
        try:
            synthesis.synthesize(ctx, body.name, body.synthesize, actor)
        except ApiError as exc:
            raise ApiError(
                exc.status, exc.code,
                f"dataset {body.name!r} is registered, but its synthetic sample was not made: "
                f"{exc.message}. Make it with `unseen datasets synthesize {body.name} "
                "--epsilon E`",
                registered=True, **exc.extra,
            ) from exc  # fmt: skip
        with ctx.db.read() as session:
            dataset = crud.get_dataset(session, body.name)
    return dataset_organizer_view(dataset)


@router.get("")
def catalog(ctx: Context, user: CurrentUser) -> list[AnyDatasetOut]:
    with ctx.db.read() as session:
        datasets = crud.visible_datasets(session, user)
        return [dataset_view(d, organizer=user.role == "organizer") for d in datasets]


@router.get("/{name}")
def describe(name: str, ctx: Context, user: CurrentUser) -> AnyDatasetOut:
    with ctx.db.read() as session:
        dataset = crud.get_dataset(session, name, user)
        return dataset_view(dataset, organizer=user.role == "organizer")


@router.get("/{name}/sample", response_class=FileResponse)
def sample(name: str, ctx: Context, user: CurrentUser) -> FileResponse:
    """The organizer's public sample, as Parquet: where contestants develop and debug.

    ``X-Unseen-Runner-Image`` names the image the sandboxes use, so the CLI can run code on
    the sample locally in the same image when the contestant has it (``unseen run --sample``).
    """
    with ctx.db.transaction() as session:
        dataset = crud.get_dataset(session, name, user)
        crud.require_sample_access(session, user)
        if not dataset.sample_path:
            raise ApiError(
                404, "no_sample",
                f"dataset {name!r} has no public sample yet; the organizers make one with "
                f"`unseen datasets synthesize {name} --epsilon E`",
            )  # fmt: skip
        crud.audit(session, user, "sample.downloaded", dataset=name)
    return FileResponse(
        dataset.sample_path,
        media_type="application/vnd.apache.parquet",
        filename=f"{name}-sample.parquet",
        headers={RUNNER_IMAGE_HEADER: ctx.sandbox.image},
    )
