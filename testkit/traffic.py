"""Client traffic through the gateway: both variants directly and the A/B experiment,
plain and streamed, so every dashboard series has something to show."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx

PROMPTS = (
    "Which organ does hepatitis affect?",
    "What is the capital of France?",
    "What does aspirin inhibit?",
    "What is the symbol of gold?",
)


def one_request(gateway_url: str, model: str, index: int, stream: bool, session: str | None) -> int:
    """Send one chat request; return the HTTP status (a stream is read to its end)."""
    body = {
        "model": model,
        "max_tokens": 8,
        "stream": stream,
        "messages": [{"role": "user", "content": PROMPTS[index % len(PROMPTS)]}],
    }
    headers = {"x-session-id": session} if session else {}
    with httpx.Client(timeout=120) as client:
        if not stream:
            response = client.post(f"{gateway_url}/v1/chat/completions", json=body, headers=headers)
            if model == "ab" and response.status_code == 200:  # the app's outcome, for the outcome panel
                client.post(
                    f"{gateway_url}/v1/feedback",
                    json={"id": response.json()["id"], "label": "good" if index % 3 else "bad"},
                )
            return response.status_code
        with client.stream("POST", f"{gateway_url}/v1/chat/completions", json=body, headers=headers) as response:
            for _ in response.iter_lines():
                pass
            return response.status_code


def send_traffic(
    gateway_url: str, per_variant: int = 8, experiment_sessions: int = 10, concurrency: int = 4
) -> list[int]:
    """Requests to each variant (every third streamed) and to the `ab` experiment with distinct sessions."""
    jobs = [(variant, i, i % 3 == 0, None) for variant in ("base", "pruned-50") for i in range(per_variant)]
    jobs += [("ab", i, i % 2 == 0, f"session-{i}") for i in range(experiment_sessions)]
    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(one_request, gateway_url, *job) for job in jobs]
        return [future.result() for future in futures]
