"""What a role may do: every route that only an admin may use carries `admin_only`.

Labellers work the queue (label, discard, undo, new class) and read every page; admins also import, request
and activate dataset versions, promote and roll back models and read the audit trail.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from flask import g, request
from werkzeug.exceptions import Forbidden

from review_ui.operators import ADMIN

View = TypeVar("View", bound=Callable[..., Any])
NEEDS_ADMIN = ("{method} {path} needs the admin role; ask an admin to run `wastex ui set-role {operator} admin` "
               "or sign in as an admin")


def is_admin() -> bool:
    """Whether the signed-in operator is an admin (False on public pages, where nobody is signed in)."""
    return g.get("operator_role") == ADMIN


def admin_only(view: View) -> View:
    """Refuse the route to anyone but an admin: 403 (JSON under /api, the error page elsewhere)."""

    @wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if not is_admin():
            raise Forbidden(NEEDS_ADMIN.format(method=request.method, path=request.path,
                                               operator=g.get("operator", "NAME")))
        return view(*args, **kwargs)

    guarded.admin_only = True  # type: ignore[attr-defined]  # the API page lists what needs admin
    return guarded  # type: ignore[return-value]


def needs_admin(view: Callable[..., Any]) -> bool:
    """Whether a view function is marked `admin_only`."""
    return getattr(view, "admin_only", False)
