"""Receiving a file over HTTP (the API's body, the desk's form) onto disk, bounded.

The bytes are written to a file as they come, in blocks of up to 1 MiB written in a thread, so
neither the event loop nor memory carries the file; more than `[files] max_file_bytes` stops
the upload (413), and the whole must arrive within `[files] upload_timeout_seconds` (408).
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

BLOCK = 1 << 20


class UploadTooLarge(Exception):
    """More bytes than the limit: nothing of the file is kept."""


def new_upload(directory: Path) -> Path:
    """A fresh file to receive an upload into (dot-named: nothing takes it for a finished file)."""
    directory.mkdir(parents=True, exist_ok=True)
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=".upload-", delete=False)  # noqa: SIM115
    handle.close()
    return Path(handle.name)


async def save_stream(chunks: AsyncIterator[bytes], target: Path, limit: int, seconds: float) -> int:
    """Write `chunks` to `target`; the size. UploadTooLarge past `limit` bytes, TimeoutError
    after `seconds` (the caller deletes `target` then)."""
    handle: BinaryIO = await asyncio.to_thread(open, target, "wb")
    size = 0
    pending: list[bytes] = []
    buffered = 0
    try:
        async with asyncio.timeout(seconds):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise UploadTooLarge(f"more than {limit} bytes")
                pending.append(chunk)
                buffered += len(chunk)
                if buffered >= BLOCK:
                    await asyncio.to_thread(handle.write, b"".join(pending))
                    pending, buffered = [], 0
        if pending:
            await asyncio.to_thread(handle.write, b"".join(pending))
    finally:
        await asyncio.to_thread(handle.close)
    return size
