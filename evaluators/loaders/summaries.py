"""Summarisation sets in their published layouts (source + reference), besides the project's JSON lines.

- `rct`: MSLR's RCT summarisation, a directory with `{split}-inputs.csv` (ReviewID, PMID, Title,
  Abstract) and `{split}-targets.csv` (ReviewID, Target). As the study, only reviews with exactly one
  abstract and one target are kept (the others are counted as skipped); the source is the review's
  article block (PMID, title, abstract).
- `multi_news_plus`: Multi-News+ cleansed data, `cleansed_data_*.json` files (or one file), each a list of
  {idx, split, cleansed_document (text or list of documents), summary}; `split` chooses the rows.
- `multi_xscience`: Multi-XScience records {aid, abstract, ref_abstract: {cite_N: {abstract, ...}},
  related_work}: the source is the paper's abstract plus the cited abstracts, the reference its
  related-work paragraph.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from evaluators.items import SummaryItem
from evaluators.loaders.common import (
    LoadedItems,
    Skipped,
    collect,
    csv_rows,
    json_document,
    json_records,
    malformed,
    require,
)


def load_rct(path: Path, strict: bool = False, split: str = "test"):
    inputs, targets = path / f"{split}-inputs.csv", path / f"{split}-targets.csv"
    for needed in (inputs, targets):
        if not needed.is_file():
            raise malformed(path, None, f"no {needed.name} in this directory (MSLR RCT layout)")
    articles: dict[str, list[dict]] = defaultdict(list)
    for _, row in csv_rows(inputs):
        if (row.get("ReviewID") or "").strip():
            articles[row["ReviewID"].strip()].append(row)
    grouped: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for line, row in csv_rows(targets):
        review = (row.get("ReviewID") or "").strip()
        if review and (row.get("Target") or "").strip():
            grouped[review].append((line, row["Target"].strip()))

    def parse(line, review):
        found, wanted = articles.get(review, []), grouped[review]
        if len(found) != 1 or len(wanted) != 1:
            raise malformed(targets, line, "review has not exactly one abstract and one target")
        article = found[0]
        source = (
            f"ReviewID: {review}\n\nArticle 1\nPMID: {(article.get('PMID') or '').strip()}\n"
            f"Title: {(article.get('Title') or '').strip()}\nAbstract: {(article.get('Abstract') or '').strip()}"
        )
        return SummaryItem(review, source, wanted[0][1])

    return collect(targets, ((lines[0][0], review) for review, lines in grouped.items()), parse, strict)


def load_multi_news_plus(path: Path, strict: bool = False, split: str = "test"):
    files = sorted(path.glob("cleansed_data_*.json")) if path.is_dir() else [path]
    if not files:
        raise malformed(path, None, "no cleansed_data_*.json files in this directory (Multi-News+ layout)")
    items, skipped = [], []

    def parse(file):
        def one(line, record):
            if str(record.get("split", "")).lower() != split.lower():
                return None
            require(record, ("cleansed_document", "summary"), file, line)
            document = record["cleansed_document"]
            source = (
                "\n\n".join(str(d).strip() for d in document if str(d).strip())
                if isinstance(document, list)
                else str(document).strip()
            )
            if not source:
                raise malformed(file, line, "cleansed_document is empty")
            return SummaryItem(str(record.get("idx", f"{file.stem}-{line}")), source, str(record["summary"]).strip())

        return one

    for file in files:
        data = json_document(file)
        if not isinstance(data, list):
            raise malformed(file, 1, "expected a JSON list of records")
        part = collect(
            file,
            ((None, r if isinstance(r, dict) else malformed(file, None, "record is not an object")) for r in data),
            parse(file),
            strict,
        )
        items += part
        skipped += [Skipped(s.line, f"{file.name}: {s.reason}") for s in part.skipped]
    return LoadedItems(items, skipped)


def load_multi_xscience(path: Path, strict: bool = False):
    def parse(line, record):
        require(record, ("abstract", "related_work"), path, line)
        cited = record.get("ref_abstract") or {}
        if not isinstance(cited, dict):
            raise malformed(path, line, "ref_abstract is not an object {cite_N: {abstract}}")
        parts = [f"Abstract: {str(record['abstract']).strip()}"]
        for mark, ref in cited.items():
            text = ref.get("abstract") if isinstance(ref, dict) else None
            if text:
                parts.append(f"{mark}: {str(text).strip()}")
        return SummaryItem(
            str(record.get("aid", f"{path.stem}-{line}")), "\n\n".join(parts), str(record["related_work"]).strip()
        )

    return collect(path, json_records(path), parse, strict)
