"""The organizers' dataset pages: the catalog with each sample's origin, and a dataset's
syntheses with their fidelity reports (computed from the full data: organizers only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from api import crud, synthesis
from api.errors import ApiError
from api.views import dataset_organizer_view
from api.web.pages import _organizer, _page, not_found

router = APIRouter(prefix="/ui", include_in_schema=False)


@router.get("/datasets")
def datasets_page(request: Request) -> Response:
    user = _organizer(request)
    with request.app.state.context.db.read() as session:
        rows = [dataset_organizer_view(d) for d in crud.visible_datasets(session, user)]
    return _page(request, "datasets.html", user, datasets=rows)


@router.get("/datasets/{name}")
def dataset_page(request: Request, name: str) -> Response:
    user = _organizer(request)
    with request.app.state.context.db.read() as session:
        try:
            dataset = dataset_organizer_view(crud.get_dataset(session, name))
        except ApiError as exc:
            if exc.status != 404:
                raise
            return not_found(request, user, f"No dataset {name!r}.", "/ui/datasets", "datasets")
        found = synthesis.syntheses(session, name)
    return _page(request, "dataset.html", user, dataset=dataset, syntheses=found)
