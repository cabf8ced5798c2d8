"""Partners' files uploaded on the operators' desk (`/operator/files`): an employee picks the
partner (and, if it differs, the layout) and the file; it is imported at once through the same
import as the API and the drop folder (adapters/partner_files/), recorded with the employee, and
its result file, in the partner's layout, is kept for download (`/operator/files/{id}/result`).

The form is multipart: its first field is the CSRF token (adapters/web/csrf.py reads only that),
then the partner and layout, then the file, streamed to disk within `[files] max_file_bytes` and
`upload_timeout_seconds`, never held in memory.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp_session import Session

from adapters.partner_files.importing import ImportSummary, safe_name
from adapters.partner_files.readers import FileProblem
from adapters.partner_files.service import Imports, imports_for
from adapters.partner_files.uploads import UploadTooLarge, new_upload, save_stream
from adapters.web import sessions
from adapters.web.csrf import MULTIPART, form_read, takes_upload
from adapters.web.pages import render
from gateway.host import Host

HOME = "/operator/"
SCOPE = "operator"
IMPORTS = web.AppKey("desk_imports", Imports)

routes = web.RouteTableDef()


async def _employee(request: web.Request) -> Session:
    session = await sessions.session_subject(request, SCOPE)
    if session is None:
        raise web.HTTPSeeOther(HOME + "login")
    return session


async def _page(
    request: web.Request,
    session: Session,
    status: int = 200,
    error: str | None = None,
    summary: ImportSummary | None = None,
) -> web.Response:
    imports = request.config_dict[IMPORTS]
    return await render(
        request,
        "operator_files.html",
        {
            "me": session["name"],
            "partners": imports.config.partners,
            "layouts": sorted(imports.layouts.values(), key=lambda layout: layout.id),
            "recent": [(r, imports.result_file(r) is not None) for r in await imports.recent(20)],
            "error": error,
            "summary": summary,
            "max_mb": imports.config.max_file_bytes // (1024 * 1024),
        },
        status=status,
    )


@routes.get("/files")
async def files_page(request: web.Request) -> web.Response:
    return await _page(request, await _employee(request))


async def _text(part: BodyPartReader) -> str:
    return (await part.read_chunk(200)).decode("utf-8", "replace").strip()


@routes.post("/files")
@takes_upload
async def upload(request: web.Request) -> web.Response:
    """Import the uploaded file for the chosen partner; the page shows the summary and the result."""
    session = await _employee(request)
    imports = request.config_dict[IMPORTS]
    reader: MultipartReader | None = request.get(MULTIPART)
    if reader is None:
        raise web.HTTPBadRequest()
    fields: dict[str, str] = {}
    path: Path | None = None
    name = ""
    try:
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest()
            if part.name == "file":
                name = part.filename or "file"
                form_read(request)  # the file has a bound and a deadline of its own, next line
                path = new_upload(imports.incoming)
                await save_stream(
                    _chunks(part), path, imports.config.max_file_bytes, imports.config.upload_timeout_seconds
                )
                break  # the file is the form's last field
            if part.name in ("partner", "format"):
                fields[part.name] = await _text(part)
            if len(fields) > 2:
                raise web.HTTPBadRequest()
        partner = imports.partner(fields.get("partner", ""))
        if partner is None:
            return await _page(request, session, 422, "Выберите партнёра.")
        if path is None or path.stat().st_size == 0:
            return await _page(request, session, 422, "Выберите файл.")
        layout = imports.layout_of(partner, fields.get("format") or None)
        actor = f"{session['operator']} ({session['name']})"
        summary = await imports.take(path, name, partner, layout, "desk", actor)
    except UploadTooLarge:
        return await _page(
            request, session, 413, f"Файл больше {imports.config.max_file_bytes // (1024 * 1024)} МБ."
        )
    except TimeoutError:
        return await _page(request, session, 408, "Файл не успел загрузиться. Попробуйте ещё раз.")
    except FileProblem as exc:
        return await _page(request, session, 422, f"Файл не принят: {exc.message_ru}")
    finally:
        if path is not None:
            path.unlink(missing_ok=True)
    return await _page(request, session, summary=summary)


async def _chunks(part: BodyPartReader) -> AsyncIterator[bytes]:
    while chunk := await part.read_chunk(1 << 16):
        yield chunk


@routes.get(r"/files/{import_id:\d{1,18}}/result")
async def result(request: web.Request) -> web.StreamResponse:
    await _employee(request)
    imports = request.config_dict[IMPORTS]
    found = await imports.stored(int(request.match_info["import_id"]))
    path = imports.result_file(found) if found is not None else None
    if path is None:
        raise web.HTTPNotFound()
    response = web.FileResponse(path)
    response.headers["Content-Disposition"] = f'attachment; filename="{safe_name(path.name)}"'
    return response


def install(host: Host, app: web.Application) -> None:
    """The desk's imports (the routes are mounted with the desk's, adapters/web/desk.py)."""
    app[IMPORTS] = imports_for(host)
