"""MedINST32 (the MedINST benchmark's 32 held-out test tasks), one file per task.

Each record, as the published dataset writes it: `instruction` (the task's instruction, sent as the
system message), `input` (the user message), `output` (the reference answer; entity tasks mark spans
as `[entity]`, BIO tasks tag tokens `[B]`/`[I]`/`[O]`, BIOSSES gives a 0-5 score), optionally
`history` (earlier [user, assistant] turns) and `id`. A local copy is JSON lines, a JSON list, or the
datasets library's JSON export ({"data": [...]}).
"""

from __future__ import annotations

from pathlib import Path

from evaluators.items import GenItem
from evaluators.loaders.common import collect, json_records, malformed, require

# The 11 categories and their 32 tasks (MedINST32's test split).
CATEGORIES = {
    "QA": ("BioASQ-Task-B-yesno", "PubMedQA-labeled", "MedQA"),
    "TE": ("SciFact", "ManConCorpus", "CoVERt"),
    "NER": (
        "NCBI-disease",
        "BC5CDR",
        "AnEM",
        "BioNLP-2009",
        "BioNLP-2011-GE",
        "BioNLP-2011-ID",
        "BioNLP-2011-REL",
        "BioNLP-2013-CG",
        "BioNLP-2013-GE",
        "BioNLP-2013-GRO",
        "BioNLP-2013-PC",
        "BioRED",
        "tmVar-v3",
    ),
    "TXTCLASS": ("Hallmarks-of-Cancer", "MedDialog"),
    "NED": ("MeDAL", "tmVar-v3-NED"),
    "RE": ("AnEM-RE", "BC5CDR-RE", "BioInfer-RE"),
    "COREF": ("AnEM-COREF", "MLEE-COREF"),
    "SUM": ("Multi-XScience",),
    "EE": ("MLEE-EE",),
    "STS": ("BIOSSES",),
    "TRANSL": ("ParaMed",),
}


def _history(raw, path: Path, line) -> tuple[tuple[str, str], ...]:
    if raw in (None, "", []):
        return ()
    if not isinstance(raw, list) or not all(isinstance(turn, (list, tuple)) and len(turn) >= 2 for turn in raw):
        raise malformed(path, line, "history is not a list of [user, assistant] turns")
    return tuple((str(turn[0]), str(turn[1])) for turn in raw)


def load(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("input", "output"), path, line)
        return GenItem(
            str(record.get("id", f"{path.stem}-{line}")),
            {"instruction": str(record.get("instruction") or ""), "input": str(record["input"])},
            str(record["output"]),
            history=_history(record.get("history"), path, line),
        )

    return collect(path, json_records(path), parse, strict)
