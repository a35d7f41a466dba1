"""The MCP server's copy of the app-password routes, as Starlette routes them.

The oracle of TestStarletteDifferential (starlette_diff_test.go): the paths
and methods of docs/API.md registered the way the MCP server registers
them, as plain Starlette Routes on the application's router, each answering
which route matched and with which user_id. Whatever Starlette (and uvicorn
in front of it, which decodes the path before routing) routes here is a
request the module must never pass on.

Written for this project from the route table; none of the MCP server's
code. Run by the test as

    /usr/bin/python3 -m uvicorn --app-dir caddyapppw/testdata --fd 3 starlette_routes:app

on a listening socket the test made, so it is ready before uvicorn starts.
"""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route


def handler(name):
    async def endpoint(request):
        return JSONResponse(
            {"route": name, "user_id": request.path_params.get("user_id", "")}
        )

    return endpoint


routes = [
    Route(
        "/api/v1/users/{user_id}/app-password",
        handler("app-password"),
        methods=["POST", "GET", "DELETE"],
    ),
    Route("/api/v1/users/{user_id}/access", handler("access"), methods=["GET"]),
    Route("/api/v1/users/{user_id}/scopes", handler("user-scopes"), methods=["PATCH"]),
    Route("/api/v1/scopes", handler("scopes"), methods=["GET"]),
]

app = Starlette(routes=routes)
