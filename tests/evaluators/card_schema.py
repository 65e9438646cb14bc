"""The report card's JSON schema as the contract describes it (docs/contracts.md), for validation in tests."""

NUMBER_OR_NULL = {"type": ["number", "null"]}
METRIC = {
    "type": "object",
    "required": ["value", "ci95"],
    "properties": {
        "value": NUMBER_OR_NULL,
        "ci95": {"anyOf": [{"type": "null"}, {"type": "array", "items": {"type": "number"}, "minItems": 2,
                                               "maxItems": 2}]},
        "recovery": NUMBER_OR_NULL,
        "unavailable": {"type": "string"},
    },
}
FLAG = {
    "type": "object",
    "required": ["signal", "direction", "threshold", "auroc", "precision", "recall", "base_rate"],
    "properties": {"signal": {"type": "string"}, "direction": {"enum": ["below", "above"]},
                   "threshold": {"type": "number"}, "auroc": NUMBER_OR_NULL, "precision": NUMBER_OR_NULL,
                   "recall": NUMBER_OR_NULL, "base_rate": {"type": "number", "minimum": 0, "maximum": 1}},
}
CARD_SCHEMA = {
    "type": "object",
    "required": ["schema_version", "variant", "model", "model_dir", "pruning", "base", "tasks", "flags"],
    "properties": {
        "schema_version": {"const": 1},
        "variant": {"type": "string"},
        "model": {"type": "string"},
        "model_dir": {"type": ["string", "null"]},
        "pruning": {"anyOf": [{"type": "null"}, {
            "type": "object", "required": ["method", "ratio", "experts_kept", "experts_total", "bytes_saved"]}]},
        "base": {"type": ["string", "null"]},
        "tasks": {"type": "object", "additionalProperties": {
            "type": "object", "required": ["domain", "kind", "n", "version", "metrics"],
            "properties": {"domain": {"enum": ["biomedical", "general"]},
                           "kind": {"enum": ["multiple_choice", "summarisation"]},
                           "n": {"type": "integer", "minimum": 1}, "version": {"type": "integer"},
                           "metrics": {"type": "object", "additionalProperties": METRIC}}}},
        "flags": {"type": "object", "additionalProperties": FLAG},
    },
}
