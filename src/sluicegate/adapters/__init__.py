"""Adapters: sluicegate responses in frameworks that do not take an ASGI app as a response.

Starlette, FastAPI and Litestar run a returned :class:`~sluicegate.StreamResponse` as
it is; the modules here cover the rest, and the finer points of those three:

* :mod:`sluicegate.adapters.django`: an async view returns one, through Django's
  middleware, on Django's ASGI handler;
* :mod:`sluicegate.adapters.quart`: a Quart view returns one;
* :mod:`sluicegate.adapters.aiohttp`: an aiohttp handler streams one, with aiohttp's
  ``StreamResponse.write()`` driven by the pump;
* :mod:`sluicegate.adapters.fastapi`: generator endpoints that hold one chunk, and
  OpenAPI entries with the real media type;
* :mod:`sluicegate.adapters.litestar`: OpenAPI entries for handlers that stream;

Every sluicegate response checks the stack it runs under
(:mod:`sluicegate.engine.caveats`) and warns once per process when a layer breaks its
promises (Starlette's ``BaseHTTPMiddleware``, Django's stock handler).

Each imports its framework only when imported itself: ``import sluicegate`` loads none.
See ``docs/compatibility.md`` for what works on which server.
"""
