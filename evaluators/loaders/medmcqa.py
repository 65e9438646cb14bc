"""MedMCQA JSON lines: `{"question", "opa", "opb", "opc", "opd", "cop", ...}`.

`cop` is 1-based (1-4) in the published JSON files and 0-based (0-3) in some
re-exports (the Hugging Face one): a file with any `cop` of 0 is read as 0-based,
otherwise as 1-based. Letters (`"c"`) are accepted too.
"""

from __future__ import annotations

from pathlib import Path

from evaluators.items import MCItem
from evaluators.loaders.common import BadRow, collect, json_records, malformed, require

FIELDS = ("opa", "opb", "opc", "opd")


def load(path: Path, strict: bool = False):
    records = list(json_records(path))
    zero_based = any(not isinstance(r, BadRow) and str(r.get("cop")).strip() == "0" for _, r in records)

    def parse(line, record):
        require(record, ("question", *FIELDS), path, line)
        if record.get("cop") in (None, ""):
            raise malformed(path, line, "missing field(s) cop")
        options = {"ABCD"[i]: str(record[key]) for i, key in enumerate(FIELDS)}
        cop = str(record["cop"]).strip().lower()
        if cop in ("a", "b", "c", "d"):
            answer = cop.upper()
        elif cop.isdigit() and 0 <= int(cop) - (0 if zero_based else 1) < 4:
            answer = "ABCD"[int(cop) - (0 if zero_based else 1)]
        else:
            raise malformed(path, line, "cop is not an option number or letter")
        return MCItem(
            id=str(record.get("id", f"medmcqa-{line}")),
            question=str(record["question"]),
            options=options,
            answer=answer,
            domain="biomedical",
        )

    return collect(path, records, parse, strict)
