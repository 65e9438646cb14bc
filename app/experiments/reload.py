"""Re-read variants.yaml without a restart (SIGHUP, or POST /v1/admin/reload): experiments change, state stays.

Weights, `control`, `decide` margins, `alpha`, guardrails and `sticky` may
change, and experiments may be added or removed; the stored counts are kept
(they are keyed by experiment and arm name). The variants (and the launcher)
must stay as they are: engines are started at boot, so such a file is refused
with a message and the running configuration stays. A reload also clears every
guardrail stop: the operator has looked; an unchanged guardrail that still sees
the same evidence stops the arm again at its next evaluation.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator

from app.config.variants import load_config
from moeprune.errors import UserError

log = logging.getLogger("moeprune.experiments")


async def reload_config(gateway) -> dict:
    """Load the variants file again and apply its experiments; UserError when it cannot be applied."""
    path = gateway.settings.config_path
    if path is None:
        raise UserError("this gateway was given its configuration in-process, not a file: nothing to reload")
    config = await asyncio.to_thread(load_config, path)
    fixed = {"variants", "launcher"}
    if config.model_dump(include=fixed) != gateway.config.model_dump(include=fixed):
        raise UserError(
            f"{path}: the variants (or the launcher) changed; that needs a restart. "
            "A reload applies experiment changes only (weights, control, decide, guardrail)"
        )
    gateway.config = config
    cleared = await gateway.experiments.apply_config(config)
    log.info("configuration reloaded", extra={"experiments": sorted(config.experiments), "stops_cleared": cleared})
    arms = {name: experiment.arms for name, experiment in config.experiments.items()}
    return {"object": "reload", "experiments": arms, "stops_cleared": cleared}


@contextlib.contextmanager
def reload_on_sighup(gateway) -> Iterator[None]:
    """While the gateway serves, SIGHUP reloads (main thread only: an app served from a thread has no signals)."""
    loop = asyncio.get_running_loop()
    pending: set[asyncio.Task] = set()

    async def reload() -> None:
        try:
            await reload_config(gateway)
        except (UserError, OSError) as exc:
            log.error("configuration reload refused; the running configuration stays", extra={"error": str(exc)})
        except Exception:  # a reload must never take the gateway down
            log.exception("configuration reload failed; the running configuration stays")

    def on_signal() -> None:
        task = loop.create_task(reload())
        pending.add(task)
        task.add_done_callback(pending.discard)

    try:
        loop.add_signal_handler(signal.SIGHUP, on_signal)
        installed = True
    except (RuntimeError, ValueError, NotImplementedError):
        installed = False
    try:
        yield
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGHUP)
