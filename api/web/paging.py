"""Pages of a long table: a query job can have thousands of cells, and one page of them all
would be tens of thousands of pixels tall. The page number travels as ``?page=N``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from starlette.datastructures import URL

T = TypeVar("T")
PER_PAGE = 50


@dataclass(frozen=True)
class Link:
    label: str
    href: str | None  # None: the current page, or a gap ("…")
    current: bool = False


@dataclass(frozen=True)
class Paged(Generic[T]):
    items: list[T]
    page: int
    pages: int
    total: int
    first: int  # 1-based position of items[0] in the whole table

    @property
    def last(self) -> int:
        return self.first + len(self.items) - 1

    def links(self, url: URL, anchor: str = "") -> list[Link]:
        """Previous, first, a window around this page, last, next; other query parameters
        (filters) kept. Nothing when everything fits on one page."""
        if self.pages <= 1:
            return []

        def to(page: int) -> str:
            return str(url.include_query_params(page=page)) + (f"#{anchor}" if anchor else "")

        shown = sorted(
            {1, self.pages, *range(max(1, self.page - 2), min(self.pages, self.page + 2) + 1)}
        )
        links = [Link("previous", to(self.page - 1) if self.page > 1 else None)]
        for index, page in enumerate(shown):
            if index and page - shown[index - 1] > 1:
                links.append(Link("…", None))
            current = page == self.page
            links.append(Link(str(page), None if current else to(page), current))
        links.append(Link("next", to(self.page + 1) if self.page < self.pages else None))
        return links


def paginate(items: Sequence[T], page: int, per_page: int = PER_PAGE) -> Paged[T]:
    """The page asked for, clamped into range (a stale link still shows a page)."""
    pages = max(1, -(-len(items) // per_page))
    page = min(max(1, page), pages)
    start = (page - 1) * per_page
    return Paged(list(items[start : start + per_page]), page, pages, len(items), start + 1)


def page_number(raw: str) -> int:
    """``?page=`` as typed or edited by hand: anything but a number is the first page (a page
    never answers a typo with a JSON error)."""
    return int(raw) if raw.strip().lstrip("-").isdigit() else 1
