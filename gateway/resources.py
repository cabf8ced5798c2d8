"""Data the gateway ships inside its packages, found where the package is installed.

Firmware profiles (adapters/meters/firmware_profiles/), the IVR prompt catalogue
(adapters/ivr/prompts.toml), the web templates and static files, the migrations and the demo
registry are package data: a wheel carries them (pyproject.toml, `[tool.setuptools.package-data]`)
and they are found through `importlib.resources`, never relative to a source tree or to the
current directory. Configuration keys (`[modbus] profiles_dir`, `[ivr] prompts`) only override
them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_path(package: str, *parts: str) -> Path:
    """The file or folder `parts` inside the installed `package`, as a path on disk.

    A path, not a `Traversable`, because its users need one (Alembic's script location, aiohttp's
    static route, folders of profiles walked recursively). pip installs wheels unpacked, so the
    package's files are on disk; a zipped import is refused here with a clear message.
    """
    target = files(package).joinpath(*parts)
    if not isinstance(target, Path):
        raise RuntimeError(f"{package} is not installed as files on disk ({target!r}); reinstall it with pip")
    return target
