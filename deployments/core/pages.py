"""The pages for people: the console at ``/``, the worklist at ``/worklist``, the reports page at
``/console/reports`` and the API reference at ``/docs``. Pure.

They are static and need nothing from the internet: the console is one HTML
file with its script and styles inline (``deployments/static/console.html``), and so is the
supervisors' worklist (``deployments/static/review.html``) and the reports page
(``deployments/static/reports.html``),
and ``/docs`` is Swagger UI rendering ``/openapi.json``, its two assets served
from the ``swagger-ui-bundle`` PyPI package rather than a CDN.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deployments.core.errors import ServiceError

STATIC = Path(__file__).resolve().parents[1] / "static"
# The only files /docs/{asset} serves, and their media types.
DOCS_ASSETS = {"swagger-ui.css": "text/css; charset=utf-8",
               "swagger-ui-bundle.js": "application/javascript; charset=utf-8"}


@dataclass(frozen=True)
class Page:
    """A response that is not JSON: its bytes and media type."""

    body: bytes
    media_type: str


def _swagger_dir() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


class Pages:
    """Read once at startup; a missing file fails the replica's start, not a request."""

    def __init__(self) -> None:
        self.console = Page((STATIC / "console.html").read_bytes(), "text/html; charset=utf-8")
        self.docs = Page((STATIC / "docs.html").read_bytes(), "text/html; charset=utf-8")
        self.review = Page((STATIC / "review.html").read_bytes(), "text/html; charset=utf-8")
        self.reports = Page((STATIC / "reports.html").read_bytes(), "text/html; charset=utf-8")
        swagger = _swagger_dir()
        self.assets = {name: Page((swagger / name).read_bytes(), media) for name, media in DOCS_ASSETS.items()}

    def asset(self, name: str) -> Page:
        page = self.assets.get(name)
        if page is None:
            raise ServiceError(404, "not_found", f"No asset {name!r}; /docs serves {', '.join(DOCS_ASSETS)}.")
        return page
