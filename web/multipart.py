"""The GraphQL multipart request spec, streamed.

Strawberry's own multipart support lets Starlette spool files to temporary
files on disk; customer files must never touch the disk in plaintext. So
multipart requests come here instead: the small `operations` and `map` parts
are read first (the spec puts them first), the caller is authenticated and
checked before a single file byte is accepted, and the file part is streamed
straight into `domain.uploads.store_upload` (size cap, format sniffing,
encryption, object store). The operation then runs with the stored upload in
place of the file. An upload that no operation claimed is deleted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request
from starlette.responses import JSONResponse
from strawberry.schema.exceptions import CannotGetOperationTypeError

from domain import policy, uploads
from domain.errors import BadUserInput, PayloadTooLarge
from web.responses import error_json

if TYPE_CHECKING:  # python-multipart declares its callback table for type checkers only
    from python_multipart.multipart import MultipartCallbacks
from web.json_body import load_json

log = logging.getLogger("printvault.multipart")

MULTIPART_OVERHEAD = 256 * 1024
_QUEUE_DEPTH = 8  # chunks in flight between the request and the store: bounded memory


class _Part:
    def __init__(self) -> None:
        self.headers: dict[bytes, bytes] = {}
        self.name = ""
        self.file_name: str | None = None
        self.data = bytearray()


class MultipartUpload:
    """Drives python-multipart's push parser over the request body."""

    def __init__(self, request: Request, context: Any, max_bytes: int) -> None:
        self.request = request
        self.context = context
        self.max_bytes = max_bytes
        # Everything but the file (text parts, part headers) is held in memory: capped.
        self.max_text_bytes = context.settings.max_multipart_fields_bytes
        self._text_bytes = 0
        self.fields: dict[str, str] = {}
        self.uploads: dict[str, uploads.StoredUpload] = {}
        self._part: _Part | None = None
        self._header_field = b""
        self._header_value = b""
        self._queue: asyncio.Queue[bytes | None] | None = None
        self._store_task: asyncio.Task | None = None
        self._pending: list[bytes] = []
        self._events: list[tuple[str, Any]] = []

    # --- parser callbacks (synchronous; they only record what happened) ---

    def on_part_begin(self) -> None:
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_text(end - start)
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_text(end - start)
        self._header_value += data[start:end]

    def _count_text(self, size: int) -> None:
        self._text_bytes += size
        if self._text_bytes > self.max_text_bytes:
            raise PayloadTooLarge(f"The multipart text parts exceed {self.max_text_bytes} bytes.")

    def on_header_end(self) -> None:
        assert self._part is not None
        self._part.headers[self._header_field.lower()] = self._header_value
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        part = self._part
        assert part is not None
        _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
        part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            part.file_name = options[b"filename"].decode("utf-8", "replace")
        self._events.append(("begin", part))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        part = self._part
        assert part is not None
        if part.file_name is None:
            self._count_text(end - start)
            part.data += data[start:end]
        else:
            self._events.append(("data", bytes(data[start:end])))

    def on_part_end(self) -> None:
        self._events.append(("end", self._part))

    # --- the async side ---

    async def receive(self) -> None:
        content_type, options = parse_options_header(self.request.headers.get("content-type", ""))
        boundary = options.get(b"boundary")
        if content_type != b"multipart/form-data" or not boundary:
            raise BadUserInput("Expected multipart/form-data with a boundary.")
        declared = self.request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_bytes + MULTIPART_OVERHEAD:
            raise PayloadTooLarge(f"The file is larger than {self.max_bytes} bytes.")
        parser = MultipartParser(boundary, self._callbacks())
        try:
            async for chunk in self.request.stream():
                parser.write(chunk)
                await self._handle_events()
            parser.finalize()
            await self._handle_events()
        except MultipartParseError:
            raise BadUserInput("The multipart body is malformed.") from None
        finally:
            await self._abort_store()

    def _callbacks(self) -> MultipartCallbacks:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
        }

    async def _handle_events(self) -> None:
        events, self._events = self._events, []
        for kind, value in events:
            if kind == "begin" and value.file_name is not None:
                await self._start_file(value)
            elif kind == "data":
                await self._feed(value)
            elif kind == "end":
                await self._end_part(value)

    async def _start_file(self, part: _Part) -> None:
        if "operations" not in self.fields or "map" not in self.fields:
            raise BadUserInput("`operations` and `map` must come before the files.")
        if self.uploads or self._store_task is not None:
            raise BadUserInput("One file per request.")
        await self._check_may_upload()
        self._queue = asyncio.Queue(maxsize=_QUEUE_DEPTH)
        services = self.context.services
        self._store_task = asyncio.create_task(
            uploads.store_upload(
                services.store,
                services.keyring,
                self._drain(self._queue),
                part.file_name or "",
                self.max_bytes,
            )
        )

    async def _check_may_upload(self) -> None:
        """Refuse before reading the file: strangers cannot make us store anything."""
        if self.context.auth_error is not None:
            raise self.context.auth_error
        policy.attempt("Mutation.uploadModel", self.context.viewer)
        limiter = self.context.services.limiter
        await limiter.hit("upload_user", self.context.viewer.user_id)
        await limiter.hit("upload_ip", self.context.ip)

    async def _feed(self, data: bytes) -> None:
        assert self._queue is not None and self._store_task is not None
        put = asyncio.ensure_future(self._queue.put(data))
        done, _ = await asyncio.wait({put, self._store_task}, return_when=asyncio.FIRST_COMPLETED)
        if self._store_task in done and put not in done:
            put.cancel()
            self._store_task.result()  # raises the store's reason (too large, wrong format, ...)
            raise BadUserInput("The upload ended early.")

    async def _end_part(self, part: _Part) -> None:
        if part.file_name is None:
            self.fields[part.name] = part.data.decode("utf-8", "replace")
            return
        assert self._queue is not None and self._store_task is not None
        await self._feed_end()
        self.uploads[part.name] = await self._store_task
        self._store_task = None

    async def _feed_end(self) -> None:
        assert self._queue is not None and self._store_task is not None
        put = asyncio.ensure_future(self._queue.put(None))
        await asyncio.wait({put, self._store_task}, return_when=asyncio.FIRST_COMPLETED)

    @staticmethod
    async def _drain(queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
        while (chunk := await queue.get()) is not None:
            yield chunk

    async def _abort_store(self) -> None:
        task, self._store_task = self._store_task, None
        if task is None:
            return
        task.cancel()
        # The store removes what it wrote; its reason was already reported, or is moot.
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def discard_unclaimed(self) -> None:
        for upload in self.uploads.values():
            if not upload.claimed:
                try:
                    await self.context.services.store.delete(upload.object_key)
                except Exception:  # an orphan is encrypted; the clean-up job retries
                    log.warning("could not delete unclaimed upload %s", upload.object_key)

    def operation(self) -> tuple[str, dict[str, Any], str | None]:
        """The operation with each mapped variable replaced by its stored upload."""
        try:
            operations = load_json(self.fields["operations"], "`operations`")
            mapping = load_json(self.fields["map"], "`map`")
        except (KeyError, ValueError):
            raise BadUserInput("`operations` and `map` must be JSON.") from None
        if not isinstance(operations, dict) or not isinstance(mapping, dict):
            raise BadUserInput("Batched multipart operations are not supported.")
        variables = operations.get("variables") or {}
        if not isinstance(variables, dict):
            raise BadUserInput("`operations.variables` must be an object.")
        operation_name = operations.get("operationName")
        if operation_name is not None and not isinstance(operation_name, str):
            raise BadUserInput("`operations.operationName` must be a string.")
        for file_key, paths in mapping.items():
            if file_key not in self.uploads or not isinstance(paths, list):
                raise BadUserInput(f"The map names a missing file {file_key!r}.")
            for path in paths:
                _set_variable(variables, path, self.uploads[file_key])
        query = operations.get("query")
        if not isinstance(query, str):
            raise BadUserInput("`operations.query` must be a string.")
        return query, variables, operation_name


async def _execute(schema: Any, query: str, variables: dict, context: Any, name: str | None):
    try:
        return await schema.execute(
            query, variable_values=variables, context_value=context, operation_name=name
        )
    except CannotGetOperationTypeError:  # an operationName that names no operation
        raise BadUserInput("The operation cannot be run: check `operationName`.") from None


def _set_variable(variables: dict[str, Any], path: str, value: Any) -> None:
    parts = str(path).split(".")
    if len(parts) != 2 or parts[0] != "variables" or parts[1] not in variables:
        raise BadUserInput(f"Unsupported map path {path!r}; use variables.<name>.")
    variables[parts[1]] = value


async def handle_multipart(request: Request, schema: Any, context: Any) -> JSONResponse:
    upload = MultipartUpload(request, context, context.settings.max_upload_bytes)
    try:
        await upload.receive()
        query, variables, operation_name = upload.operation()
        result = await _execute(schema, query, variables, context, operation_name)
    except Exception as error:  # every failure gets a code; unexpected ones are masked
        return error_json(error, context.request_id)
    finally:
        await upload.discard_unclaimed()
    payload: dict[str, Any] = {"data": result.data}
    if result.errors:
        payload["errors"] = [error.formatted for error in result.errors]
    return JSONResponse(payload)
