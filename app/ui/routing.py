"""What every dashboard response shares: errors as an HTML page (a missing or stale key as a redirect to
the login form), and headers that keep the pages' data private and their content inert."""
from __future__ import annotations

from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from app.core.errors import AppError
from app.ui.session import LoginRequired

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")  # autoescapes every .html
LOGIN = "/ui/login"
SECURITY_HEADERS = {
    # only this origin's own script, styles, pictures and event stream; no inline script or style at all
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                               "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # (no-referrer would make a form post's Origin "null")
    "Cache-Control": "no-store",  # a tenant's pages and files stay out of shared caches
}


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    return templates.TemplateResponse(request, template, context, status_code=status_code)


class UiRoute(APIRoute):
    """An APIRoute whose AppErrors (its dependencies' included) become the error page, or the login form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handle = super().get_route_handler()

        async def handle_for_browser(request: Request) -> Response:
            try:
                response = await handle(request)
            except LoginRequired:
                response = RedirectResponse(LOGIN, status_code=303)
            except AppError as exc:
                response = render(request, "error.html", exc.status_code, message=exc.message)
                response.headers.update(exc.headers)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            return response

        return handle_for_browser
