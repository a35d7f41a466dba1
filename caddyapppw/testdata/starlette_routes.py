"""The MCP server's copy of the app-password routes, as Starlette routes them.

The oracle of TestStarletteDifferential (starlette_diff_test.go): the paths
and methods of docs/API.md registered both ways a Starlette application
registers them, as plain Routes on its router (app) and mounted under the
prefix (mounted), each answering which route matched and with which
user_id. Whatever Starlette (and uvicorn
in front of it, which decodes the path before routing) routes here is a
request the module must never pass on.

Written for this project from the route table; none of the MCP server's
code. Run by the test as

    /usr/bin/python3 -m uvicorn --app-dir caddyapppw/testdata --fd 3 starlette_routes:app

(and starlette_routes:mounted) on a listening socket the test made, so it
is ready before uvicorn starts.
"""

from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route


def handler(name):
    async def endpoint(request):
        return JSONResponse(
            {"route": name, "user_id": request.path_params.get("user_id", "")}
        )

    return endpoint


def table(prefix):
    return [
        Route(
            prefix + "/users/{user_id}/app-password",
            handler("app-password"),
            methods=["POST", "GET", "DELETE"],
        ),
        Route(prefix + "/users/{user_id}/access", handler("access"), methods=["GET"]),
        Route(prefix + "/users/{user_id}/scopes", handler("user-scopes"), methods=["PATCH"]),
        Route(prefix + "/scopes", handler("scopes"), methods=["GET"]),
    ]


# The routes as docs/API.md lists them, on the application's router.
app = Starlette(routes=table("/api/v1"))

# The same table mounted under its prefix, the other way a Starlette
# application registers a group of routes: Mount matches "/api/v1/..." with
# a pattern of its own and routes the rest of the path.
mounted = Starlette(routes=[Mount("/api/v1", routes=table(""))])
