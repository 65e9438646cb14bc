"""The domain gate's inputs and home: texts from calibration-style files, the shipped reference set, and
writing `domain_gate.json` into a pruned checkpoint with its sha256 recorded in `pruning.json`.

The texts a gate learns from are what a client sends: a document's plain text,
or the user turns of a chat (the gateway scores the user turns too), read by
the calibration reader, so any file `moeprune prune --calibration` takes works.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from moeprune.errors import UserError
from moeprune.formats.domain_gate import GATE_NAME, DomainGate, fit_gate
from moeprune.formats.hashing import sha256_file
from moeprune.formats.manifest import MANIFEST_NAME, PruningManifest
from pruning.calibration import Document, read_documents

# General-domain questions and requests written for this project (no medicine): the default reference.
SHIPPED_REFERENCE = Path(__file__).with_name("data") / "general_reference.jsonl"


def document_text(document: Document) -> str:
    if document.text is not None:
        return document.text
    return "\n".join(m["content"] for m in document.messages or () if m.get("role") == "user")


def read_texts(files) -> tuple[list[str], str]:
    """Every non-empty text of `files` and one sha256 over the files' bytes (provenance)."""
    texts, digest = [], hashlib.sha256()
    for path in map(Path, files):
        texts += [t for t in map(document_text, read_documents(path)) if t.strip()]
        digest.update(path.read_bytes())
    return texts, digest.hexdigest()


def build_gate(in_domain_files, reference_files=None) -> DomainGate:
    in_domain_files = [str(f) for f in in_domain_files or ()]
    if not in_domain_files:
        raise UserError("the domain gate needs in-domain files (the variant's calibration data)", param="in_domain")
    reference_files = [str(f) for f in reference_files or ()] or [str(SHIPPED_REFERENCE)]
    in_domain, in_sha = read_texts(in_domain_files)
    reference, ref_sha = read_texts(reference_files)
    training = {
        "in_domain_files": [Path(f).name for f in in_domain_files],
        "in_domain_sha256": in_sha,
        "reference_files": [
            "(shipped general reference)" if Path(f) == SHIPPED_REFERENCE else Path(f).name for f in reference_files
        ],
        "reference_sha256": ref_sha,
    }
    return fit_gate(in_domain, reference, training)


def attach_gate(model_dir, gate: DomainGate) -> Path:
    """Write `domain_gate.json` into `model_dir` and record its sha256 in pruning.json (when there is one).

    The writer hashes every file before the manifest is written; this re-hash keeps
    `moeprune verify` exact for a gate added afterwards (at the end of a prune, or
    by `moeprune guard build` on an existing variant). Both files are replaced atomically.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise UserError(
            f"variant dir {model_dir} is not a directory; pass a pruned checkpoint dir", param="variant_dir"
        )
    path = gate.save(model_dir / GATE_NAME)
    manifest = PruningManifest.load(model_dir)
    if manifest is not None:
        files = dict(sorted({**manifest.files, GATE_NAME: sha256_file(path)}.items()))
        tmp = model_dir / (MANIFEST_NAME + ".tmp")
        tmp.write_text(manifest.model_copy(update={"files": files}).to_json(), encoding="utf-8")
        tmp.replace(model_dir / MANIFEST_NAME)
    return path
