"""`moeprune traffic export --gateway URL --variant V [--label L] --out stats.json`.

Writes the routing counts a running gateway gathered from its engine's
routed_experts (GET /v1/telemetry/routing) as the statistics file
`moeprune prune --scores-in` reads, so a variant can be pruned by frequency
from served traffic; the file holds counts only.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from moeprune.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write the routing counts as a --scores-in statistics file",
        description="write the routing counts as a --scores-in statistics file",
    )
    export.add_argument("--gateway", required=True, help="the gateway's base URL, e.g. http://127.0.0.1:8080")
    export.add_argument("--variant", required=True, help="the variant whose engine returns routed_experts")
    export.add_argument("--label", help="one app label (an experiment's name or telemetry.label; default: all)")
    export.add_argument("--out", required=True, type=Path, help="statistics file to write (stats.json)")
    export.add_argument(
        "--api-key-env",
        default="MOEPRUNE_API_KEY",
        help="environment variable holding the gateway API key (default MOEPRUNE_API_KEY)",
    )


def run(args: argparse.Namespace) -> int:
    import httpx

    from moeprune.formats.statistics import ExpertStats

    key = os.environ.get(args.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    params = {"variant": args.variant, **({"label": args.label} if args.label else {})}
    url = args.gateway.rstrip("/").removesuffix("/v1") + "/v1/telemetry/routing"
    try:
        response = httpx.get(url, params=params, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach the gateway at {url}: {exc}; check --gateway") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise UserError(f"the gateway answered {response.status_code}: {message}")
    stats = ExpertStats.from_dict(response.json(), where=url)  # the exact format --scores-in reads
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(stats.to_dict(), indent=1) + "\n", encoding="utf-8")
    tokens = sum(layer.tokens for layer in stats.layers.values())
    print(
        f"{args.out}: routing counts of {args.variant} over {tokens} token-layers "
        f"({len(stats.layers)} MoE layers); prune with --method frequency --scores-in {args.out}"
    )
    return 0
