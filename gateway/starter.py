"""`meter-gateway init DIR`: a commented starter gateway.toml and an empty registry.

The starter file is written from the configuration models themselves (gateway/config.py and the
doors' sections declared in pyproject.toml), so it lists every section and key there is: each key
under its meaning in one line (the field's docstring, gateway/section.py), commented out with its
default, except the few that init sets (the database, the registry file) and the secrets, which it
generates (`gateway.section.secret`). A key added to a model appears here without a line of code.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any, get_args, get_type_hints

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from gateway.config import Config
from gateway.registry import COLUMNS

CONFIG_NAME = "gateway.toml"
REGISTRY_NAME = "registry.csv"


def toml_value(value: Any) -> str:
    """A Python value as TOML (the kinds configuration defaults have)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a TOML basic string
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, datetime | date | time):  # TOML's own date and time literals
        return value.isoformat()
    raise TypeError(f"no TOML form for {value!r}")


def _is_secret(field: FieldInfo) -> bool:
    extra = field.json_schema_extra
    return isinstance(extra, dict) and extra.get("secret") is True


def _model_of(field: FieldInfo) -> type[BaseModel] | None:
    """The section model of a sub-table field (`validation.residents`), else None."""
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def _listed_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of an array of tables (`[[modbus.buses]]`), else None."""
    args = get_args(field.annotation)
    if len(args) == 1 and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _keyed_model(model: type[BaseModel]) -> type[BaseModel] | None:
    """The model of the tables a section holds under names of the operator's choosing (its typed
    extra keys, `[branches.<id>]`), else None."""
    if model.model_config.get("extra") != "allow" or "__pydantic_extra__" not in model.__annotations__:
        return None
    args = get_args(get_type_hints(model).get("__pydantic_extra__"))
    if len(args) == 2 and isinstance(args[1], type) and issubclass(args[1], BaseModel):
        return args[1]
    return None


def _meaning(field: FieldInfo) -> str:
    return " ".join((field.description or "").split())


def _heading(model: type[BaseModel]) -> str:
    return " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())


def generate_secret() -> str:
    """43 characters of A-Z a-z 0-9 _ -: long enough for every key (32+) and a valid Telegram secret."""
    return secrets.token_urlsafe(32)


@dataclass
class _Writer:
    set_values: dict[str, Any]
    lines: list[str]

    def table(self, path: str, model: type[BaseModel], instance: BaseModel | None, heading: str) -> None:
        """`[path]` with its keys, then its sub-tables and (commented) arrays of tables."""
        self.lines += ["", f"# {heading}", f"[{path}]"]
        later: list[tuple[str, FieldInfo]] = []
        for name, field in model.model_fields.items():
            if _model_of(field) or _listed_model(field):
                later.append((name, field))
                continue
            self.key(f"{path}.{name}", name, field, getattr(instance, name, field.default))
        keyed = _keyed_model(model)
        if keyed is not None:  # tables under this one by a name of the operator's, e.g. [branches.<id>]
            self.lines += [f"# {_heading(keyed)}", f"# [{path}.<id>]"]
            for name, field in keyed.model_fields.items():
                shown = "..." if field.default is None else toml_value(field.default)
                self.lines.append(f"# {name} = {shown}   # {_meaning(field)}")
        for name, field in later:
            sub = _model_of(field)
            if sub is not None:
                self.table(
                    f"{path}.{name}", sub, getattr(instance, name, None), _meaning(field) or _heading(sub)
                )
            else:
                listed = _listed_model(field)
                assert listed is not None
                self.lines += ["", f"# {_meaning(field)}"]
                self.example(f"{path}.{name}", listed, "# ")

    def key(self, dotted: str, name: str, field: FieldInfo, default: Any) -> None:
        self.lines.append(f"# {_meaning(field)}")
        if dotted in self.set_values:
            self.lines.append(f"{name} = {toml_value(self.set_values[dotted])}")
        elif _is_secret(field):
            value: Any = [generate_secret()] if isinstance(default, list) else generate_secret()
            self.lines.append(f"{name} = {toml_value(value)}")
        elif default is None:
            self.lines.append(f"# {name} =   (not set)")
        else:
            self.lines.append(f"# {name} = {toml_value(default)}")

    def example(self, path: str, model: type[BaseModel], prefix: str) -> None:
        """A commented `[[path]]` showing every key of one element with its meaning."""
        self.lines.append(f"{prefix}[[{path}]]")
        nested: list[tuple[str, FieldInfo, type[BaseModel]]] = []
        for name, field in model.model_fields.items():
            listed = _listed_model(field)
            if listed is not None:
                nested.append((name, field, listed))
                continue
            shown = "..." if field.is_required() or field.default is None else toml_value(field.default)
            required = " (required)" if field.is_required() else ""
            self.lines.append(f"{prefix}{name} = {shown}   # {_meaning(field)}{required}")
        for name, field, listed in nested:
            self.lines.append(f"# {_meaning(field)}")
            self.example(f"{path}.{name}", listed, prefix)


def starter_toml(database_url: str, registry_csv: str, today: date) -> str:
    """The text of a starter gateway.toml: every section, secrets generated (see the module's opening)."""
    writer = _Writer({"database.url": database_url, "registry.csv": registry_csv}, [])
    writer.lines += [
        f"# meter-gateway configuration, written by `meter-gateway init` on {today.isoformat()}.",
        "#",
        "# Every section and key is here, each under its meaning. A commented key shows its default;",
        "# uncomment it to change it. The keys not commented were set by init: the database, the",
        "# registry file and freshly generated secrets (keep this file readable by the gateway only).",
        "# Check it with `meter-gateway --config FILE config check`; the README's Configuration chapter",
        "# explains each key in full. Environment variables GATEWAY_<SECTION>_<KEY> override it.",
    ]
    defaults = Config()
    for name, field in Config.model_fields.items():
        model = _model_of(field)
        assert model is not None, f"[{name}] is not a section model"
        writer.table(name, model, getattr(defaults, name), _heading(model))
    return "\n".join(writer.lines) + "\n"


def init_directory(directory: Path, state_dir: Path, today: date) -> tuple[Path, Path]:
    """Write DIR/gateway.toml (mode 0600: it holds secrets) and an empty DIR/registry.csv; refuse
    to replace either. Returns both paths."""
    config_path = directory / CONFIG_NAME
    registry_path = directory / REGISTRY_NAME
    for path in (config_path, registry_path):
        if path.exists():
            raise FileExistsError(f"{path} exists; init writes only new files")
    state = state_dir.resolve()
    text = starter_toml(f"sqlite+aiosqlite:///{state / 'gateway.db'}", str(registry_path.resolve()), today)
    directory.mkdir(parents=True, exist_ok=True)
    with open(config_path, "x", encoding="utf-8", opener=lambda p, f: _open_private(p, f)) as out:
        out.write(text)
    registry_path.write_text(",".join(COLUMNS) + "\n", encoding="utf-8")
    return config_path, registry_path


def _open_private(path: str, flags: int) -> int:
    import os

    return os.open(path, flags, 0o600)
