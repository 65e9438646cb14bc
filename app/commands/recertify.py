"""`moeprune recertify --gateway URL [--variant V] [--domain D] [--force]`: clear live fallbacks.

Asks a running gateway (POST /v1/admin/recertify) to re-check every (variant, domain) whose
live feedback tripped the fallback, and to clear those whose fresh labels, gathered since
the trip, bound the error among unflagged answers at or below the certificate's alpha
again (app/reliability/live_bound.py). `--force` clears regardless: for after a new card
from `moeprune eval` was loaded. The gateway logs each decision as a JSON line.
Exit status: 0 when no named pair is left in fallback, 1 when one is, 2 on an error.
"""

from __future__ import annotations

import argparse
import json
import os

from moeprune.errors import UserError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--gateway", default="http://127.0.0.1:8080", help="the gateway's base URL (default http://127.0.0.1:8080)"
    )
    parser.add_argument("--variant", help="only this variant (default: every variant in fallback)")
    parser.add_argument("--domain", help="only this domain, e.g. in_domain (default: every domain)")
    parser.add_argument(
        "--force",
        action="store_true",
        help="clear even without enough fresh labels (after loading a re-evaluated card)",
    )
    parser.add_argument(
        "--api-key-env",
        default="MOEPRUNE_API_KEY",
        help="environment variable holding the gateway API key (default MOEPRUNE_API_KEY)",
    )


def run(args: argparse.Namespace) -> int:
    import httpx

    key = os.environ.get(args.api_key_env)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    body = {
        "force": args.force,
        **{name: value for name, value in (("variant", args.variant), ("domain", args.domain)) if value},
    }
    url = args.gateway.rstrip("/").removesuffix("/v1") + "/v1/admin/recertify"
    try:
        response = httpx.post(url, json=body, headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise UserError(f"cannot reach the gateway at {url}: {exc}; check --gateway") from None
    if response.status_code != 200:
        try:
            message = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = response.text[:300]
        raise UserError(f"the gateway answered {response.status_code}: {message}")
    answer = response.json()
    for pair in answer["pairs"]:
        print(json.dumps(pair))
    if not answer["pairs"]:
        print("no (variant, domain) in fallback" + (" matches" if args.variant or args.domain else ""))
    return 1 if any(not pair.get("cleared") for pair in answer["pairs"]) else 0
