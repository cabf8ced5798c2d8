"""What `meter-gateway demo` adds for partners' files: a demo payment agent with its token and
drop folder under `var/demo-files/`, a sample registry of the demo accounts dated today, and the
lines that drop it (or post it) and say where its result appears."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from adapters.partner_files.config import FilesConfig, Partner
from adapters.partner_files.layouts import Cell, load_layouts
from adapters.partner_files.samples import write_sample
from gateway.plugins import DemoPart

DEMO_DIR = "var/demo-files"
DEMO_PARTNER = "demo-agent"
DEMO_PARTNER_TOKEN = "demo-partner-token"
SAMPLE = "sample-reestr.csv"


def sample_rows(today: date) -> list[list[Cell]]:
    """A payment agent's registry of the demo accounts (gateway/demo/registry.csv), read today."""
    day = today.strftime("%d.%m.%Y")
    return [
        ["demo-1", day, "2000001", "Иванов И. И.", "E-45871234", "12480", "", "", ""],
        ["demo-2", day, "2000002", "Петрова А. А.", "", "", "5 210,5", "2 004", ""],
        ["demo-3", day, "2000003", "Сидоров П. П.", "", "", "100", "", ""],  # a zone missing: refused
        ["demo-4", "31.02.2026", "2000001", "Иванов И. И.", "", "12481", "", "", ""],  # no such day
    ]


def demo_config(config: Any) -> DemoPart:
    files = config.section("files", FilesConfig)
    base = f"http://{config.http.host}:{config.http.port}"
    if not files.partners:
        files = files.model_copy(
            update={
                "enabled": True,
                "dir": DEMO_DIR,
                "drop_poll_seconds": 2.0,
                "partners": [
                    Partner(
                        id=DEMO_PARTNER,
                        name="Демо: платёжный агент",
                        layout="payment-agent-csv",
                        token=DEMO_PARTNER_TOKEN,
                    )
                ],
            }
        )
    partner = files.partners[0]
    root = Path(files.dir)
    sample = root / SAMPLE
    layout = load_layouts(files.layouts_dir).get("payment-agent-csv")
    if layout is not None:
        root.mkdir(parents=True, exist_ok=True)
        header = list(layout.vectors[0].header)
        header.remove("СУММА")
        write_sample(sample, layout, header, sample_rows(date.today()))
    drop = root / "drop" / partner.id
    token = partner.token or "PARTNER_TOKEN"
    return DemoPart(
        overrides={"files": files},
        hints=[
            f"Partners' files ({partner.name}, layout {partner.layout}):",
            f"  cp {sample} {drop}/in/    # the result appears in {drop}/out/ within seconds",
            f"  curl -X POST -H 'Authorization: Bearer {token}' --data-binary @{sample} '{base}/api/v1/files?name={SAMPLE}'",
            f"  GATEWAY_DATABASE_URL=sqlite+aiosqlite:///var/demo.db .venv/bin/meter-gateway import readings {sample} --partner {partner.id}",
            f"  or upload it on the operators' desk: {base}/operator/files",
        ],
    )
