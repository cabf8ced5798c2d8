"""`POST /api/v1/files`: a partner sends a file of readings with its own bearer token.

The body is the file as it is (any content type), streamed to disk with `[files]
max_file_bytes` and `upload_timeout_seconds` as its bounds, then imported at once; the answer
is the import's summary with the address of its result file. `?format=ID` names another layout
than the partner's own, `?name=` (or `X-File-Name`) the file's name. `GET /api/v1/files/{id}`
and `GET /api/v1/files/{id}/result` give a partner its own imports and result files only.
"""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from adapters.partner_files.config import FilesConfig, Partner
from adapters.partner_files.importing import safe_name
from adapters.partner_files.readers import FileProblem
from adapters.partner_files.service import Imports, StoredImport
from adapters.partner_files.uploads import UploadTooLarge, new_upload, save_stream
from gateway.app_keys import CONFIG
from gateway.bounds import CONTROL
from gateway.http_api import ApiError, json_response, require_bearer, streams_body

log = logging.getLogger(__name__)

IMPORTS = web.AppKey("partner_imports", Imports)
routes = web.RouteTableDef()


def _partner(request: web.Request) -> Partner:
    config = request.app[CONFIG].section("files", FilesConfig)
    token = require_bearer(request, [p.token for p in config.partners if p.token], "partner")
    found = next(p for p in config.partners if p.token == token)
    return found


def _file_name(request: web.Request, partner: Partner, kind: str) -> str:
    given = request.query.get("name") or request.headers.get("X-File-Name") or ""
    if len(given) > 255 or CONTROL.search(given):
        raise ApiError(
            400,
            "bad_file_name",
            "the file name must be at most 255 characters, none of them control characters",
        )
    return given or f"{partner.id}.{kind}"


@routes.post("/api/v1/files")
@streams_body
async def upload(request: web.Request) -> web.Response:
    """Import the body as the partner's file; 200 with the summary, 422 when it cannot be read."""
    imports = request.app[IMPORTS]
    partner = _partner(request)
    fmt = request.query.get("format")
    try:
        layout = imports.layout_of(partner, fmt[:40] if fmt else None)
    except FileProblem as exc:
        raise ApiError(422, "unknown_format", exc.message_en) from None
    name = _file_name(request, partner, layout.kind)
    limit = imports.config.max_file_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    path = await _receive(request, imports, limit)
    try:
        summary = await imports.take(path, name, partner, layout, "api", f"token of {partner.id}")
    except FileProblem as exc:
        raise ApiError(422, "bad_file", exc.message_en) from None
    finally:
        path.unlink(missing_ok=True)
    return json_response({**summary.as_dict(), "result_url": f"/api/v1/files/{summary.import_id}/result"})


async def _receive(request: web.Request, imports: Imports, limit: int) -> Path:
    """The body on disk (a fresh file under `incoming/`), within the file limits."""
    path = new_upload(imports.incoming)
    try:
        size = await save_stream(
            request.content.iter_chunked(1 << 16), path, limit, imports.config.upload_timeout_seconds
        )
    except UploadTooLarge:
        path.unlink(missing_ok=True)
        raise _too_large(limit) from None
    except TimeoutError:
        path.unlink(missing_ok=True)
        raise ApiError(
            408, "body_timeout", f"the file did not arrive within {imports.config.upload_timeout_seconds:g} s"
        ) from None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise ApiError(422, "bad_file", "the body is empty: send the file as the request body")
    return path


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "file_too_large", f"the file exceeds [files] max_file_bytes ({limit} bytes)")


async def _own(request: web.Request) -> StoredImport:
    imports = request.app[IMPORTS]
    partner = _partner(request)
    found = await imports.stored(int(request.match_info["import_id"]))
    if found is None or found.partner != partner.id:  # another partner's import is none of its business
        raise ApiError(404, "not_found", "no such import of yours")
    return found


@routes.get(r"/api/v1/files/{import_id:\d{1,18}}")
async def show(request: web.Request) -> web.Response:
    found = await _own(request)
    return json_response({**found.as_dict(), "result_url": f"/api/v1/files/{found.import_id}/result"})


@routes.get(r"/api/v1/files/{import_id:\d{1,18}}/result")
async def result(request: web.Request) -> web.StreamResponse:
    """The import's result file, in the partner's layout."""
    found = await _own(request)
    path = request.app[IMPORTS].result_file(found)
    if path is None:
        raise ApiError(
            404, "not_found", "this import has no result file (it was refused, or it is still running)"
        )
    response = web.FileResponse(path)
    response.headers["Content-Disposition"] = f'attachment; filename="{safe_name(path.name)}"'
    return response
