"""A stand-in for a vLLM server in supervision tests (stdlib only; starts in milliseconds).

Takes vLLM's flags (ignores the ones it does not use) and answers like vLLM does
with an API key: `/health` always, `/v1/models` only with `Authorization: Bearer
$VLLM_API_KEY`. Behaviour switches, all through the environment (a variant's
`engine.env`):
  FAKE_ENGINE_ENV_DUMP=path    write {"environ": ..., "argv": ..., "pid": ...} there at start
  FAKE_ENGINE_IGNORE_TERM=1    ignore SIGTERM (only SIGKILL ends it), children too
  FAKE_ENGINE_CHILD=path       start a child in the same process group, write its pid there
  FAKE_ENGINE_LOG_BYTES=n      print n bytes of log lines at start
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import subprocess
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--served-model-name", default="fake")
    args, _ = parser.parse_known_args()
    key = os.environ.get("VLLM_API_KEY")
    if dump := os.environ.get("FAKE_ENGINE_ENV_DUMP"):
        with open(dump, "w") as handle:
            json.dump({"environ": dict(os.environ), "argv": sys.argv, "pid": os.getpid()}, handle)
    ignore = bool(os.environ.get("FAKE_ENGINE_IGNORE_TERM"))
    if ignore:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if child_file := os.environ.get("FAKE_ENGINE_CHILD"):
        code = "import signal, time\n" + ("signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" if ignore else "")
        child = subprocess.Popen([sys.executable, "-c", code + "time.sleep(600)"])
        with open(child_file, "w") as handle:
            handle.write(str(child.pid))
    if log_bytes := int(os.environ.get("FAKE_ENGINE_LOG_BYTES", "0")):
        line = b"INFO fake engine log line " + b"x" * 73 + b"\n"  # 100 bytes
        for _ in range(log_bytes // len(line)):
            sys.stdout.buffer.write(line)
        sys.stdout.flush()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path == "/health":
                return self.answer(200, b"")
            if self.path == "/v1/models":
                if key and self.headers.get("Authorization") != f"Bearer {key}":
                    return self.answer(401, b'{"error": "Unauthorized"}')
                return self.answer(200, json.dumps({"data": [{"id": args.served_model_name}]}).encode())
            return self.answer(404, b"{}")

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            return None

    print(f"fake engine serving {args.served_model_name} on {args.host}:{args.port}", flush=True)
    http.server.ThreadingHTTPServer((args.host, args.port), Handler).serve_forever()


if __name__ == "__main__":
    main()
