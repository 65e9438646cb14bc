"""TESTING ONLY: one observation pass in a fresh process, reporting its peak RSS and speed as one JSON line.

    python -m testkit.observe_child stream|whole|forward SOURCE_DIR TOKENS [--seq-len N] [--dtype D]
        [--batch-tokens N] [--ean-max-tokens N] [--forward-first]

`stream` is the layer-streamed pass, `whole` the whole-model pass (load_model + observe), `forward`
a plain whole-model forward over the same tokens with no hooks (the speed reference).
`compute_seconds` excludes loading the weights (whole, forward) or reading them (stream:
`read_seconds`). Peak RSS is
the process's own high-water mark (ru_maxrss), so every mode is measured from a clean start.
"""

from __future__ import annotations

import argparse
import json
import resource
import time


def calibration_tokens(vocab: int, tokens: int, seq_len: int) -> list[list[int]]:
    """Deterministic pseudo-random token ids, cut into samples of `seq_len` (the last may be shorter)."""
    import torch

    ids = torch.randint(2, vocab, (tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    return [ids[start : start + seq_len] for start in range(0, tokens, seq_len)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("stream", "whole", "forward"))
    parser.add_argument("source")
    parser.add_argument("tokens", type=int)
    parser.add_argument("--seq-len", type=int, default=512)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--batch-tokens", type=int, default=8192)
    parser.add_argument("--ean-max-tokens", type=int, default=4096)
    parser.add_argument(
        "--forward-first",
        action="store_true",
        help="whole: time a plain forward (no hooks) over the same tokens before the observe pass",
    )
    args = parser.parse_args(argv)

    import torch

    from moeprune.formats.checkpoint import load_config
    from moeprune.formats.families import family_for
    from pruning.observe import load_model, observe, padded_batch, token_batches

    config = load_config(args.source)
    family = family_for(config)
    sequences = calibration_tokens(int(family.text_config(config)["vocab_size"]), args.tokens, args.seq_len)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    started = time.perf_counter()
    compute = forward = read = None
    if args.mode == "stream":
        from pruning.layer_stream import observe_streamed

        result = observe_streamed(
            args.source,
            family,
            config,
            sequences,
            dtype=args.dtype,
            batch_tokens=args.batch_tokens,
            ean_max_tokens=args.ean_max_tokens,
            progress=False,
        )
        compute, read = result.compute_seconds, result.read_seconds
    else:
        model = load_model(args.source, family, dtype=args.dtype)
        loaded = time.perf_counter()
        if args.forward_first or args.mode == "forward":
            with torch.no_grad():
                for batch in token_batches(sequences, args.batch_tokens):
                    ids, mask = padded_batch(batch, 0)
                    model(input_ids=ids, attention_mask=mask, use_cache=False)
            forward = time.perf_counter() - loaded
        compute = forward if args.mode == "forward" else None
        if args.mode == "whole":
            observing = time.perf_counter()
            observe(
                model,
                family,
                config,
                sequences,
                batch_tokens=args.batch_tokens,
                ean_max_tokens=args.ean_max_tokens,
                progress=False,
            )
            compute = time.perf_counter() - observing
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "mode": args.mode,
                "tokens": args.tokens,
                "seconds": seconds,
                "compute_seconds": compute,
                "forward_seconds": forward,
                "read_seconds": read,
                "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                "rss_before_pass": baseline,
            }
        )
    )


if __name__ == "__main__":
    main()
