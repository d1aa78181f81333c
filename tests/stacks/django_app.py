"""The matrix's Django project: settings, views and URLs in one module."""

from __future__ import annotations

from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="matrix-tests-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[
            "django.middleware.security.SecurityMiddleware",
            "django.middleware.common.CommonMiddleware",
            f"{__name__}.stamp",
        ],
        INSTALLED_APPS=[],
        USE_TZ=True,
        LOGGING_CONFIG=None,
    )
    django.setup(set_prefix=False)

from django.urls import path
from django.utils.decorators import sync_and_async_middleware

from sluicegate.adapters.django import StreamingResponse, get_asgi_application
from tests.stacks import producers


@sync_and_async_middleware
def stamp(get_response: Any) -> Any:
    """A project middleware that adds a header: it must reach the client."""

    async def middleware(request: Any) -> Any:
        response = await get_response(request)
        response["X-Stamp"] = "django-middleware"
        return response

    return middleware


async def body(request: Any) -> StreamingResponse:
    return StreamingResponse(producers.body())


async def endless(request: Any, token: str) -> StreamingResponse:
    return StreamingResponse(producers.endless(token))


async def fail(request: Any) -> StreamingResponse:
    return StreamingResponse(producers.failing())


async def big(request: Any) -> StreamingResponse:
    return StreamingResponse(producers.big())


urlpatterns = [
    path("django/body", body),
    path("django/endless/<str:token>", endless),
    path("django/fail", fail),
    path("django/big", big),
]

app = get_asgi_application()
