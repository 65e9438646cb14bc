"""A byte-level BPE tokenizer trained locally with `tokenizers` (no download), saved with a chat template.

The demo trains one on its corpus; the tests' tiny models use the default texts.
"""

from __future__ import annotations

from pathlib import Path

# A plain chat template: role tags and an end-of-turn token, so chat requests
# work in vLLM and the tokens a template adds are visible in tests.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SPECIAL_TOKENS = ["<pad>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]

DEFAULT_TEXTS = """
Metformin is a biguanide used to treat type 2 diabetes. Aspirin inhibits cyclooxygenase.
The liver metabolises many drugs; the kidney filters the blood. Vitamin C deficiency causes scurvy.
Paris is the capital of France. The symbol of gold is Au. The violin is a string instrument.
Question: Which organ does hepatitis affect? Answer: the liver. I don't know the answer to that.
Mixture-of-experts models route every token to a few experts chosen by a learned router.
""".strip()


def train_tokenizer(out_dir: str | Path, vocab_size: int = 512, texts: list[str] | None = None):
    """Train a byte-level BPE tokenizer locally and save it (with the chat template) to out_dir."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts or DEFAULT_TEXTS.splitlines(), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        pad_token="<pad>",
        eos_token="<|end|>",
        bos_token=None,
        unk_token=None,
        chat_template=CHAT_TEMPLATE,
    )
    fast.save_pretrained(str(out_dir))
    return fast
