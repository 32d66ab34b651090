"""Reference files for Lathe's adapter conversions and merges, written with gguf-py and numpy only.

Writes Tests/Fixtures/adapters/:
  rslora-tiny-llama/       a PEFT LoRA folder for Tests/Fixtures/models/tiny-llama: every linear, r = 3, alpha = 5,
                           use_rslora (random A and B, seed 7)
  rslora-tiny-llama.gguf   the same adapter as llama.cpp's convert_lora_to_gguf.py writes it (llama.cpp at commit
                           0b03adaa): general.type = adapter, adapter.type = lora, adapter.lora.alpha, F32
                           blk.N.<ggml name>.weight.lora_a = A ([r, in], ggml dims [in, r]) and .lora_b = B with the rows
                           of Q (4 heads) and K (2 KV heads) permuted as convert_hf_to_gguf.py's LlamaModel permutes
                           q_proj / k_proj. llama.cpp (src/llama-adapter.h get_scale) scales by alpha / r and has no
                           rsLoRA, so alpha / sqrt(r) is written as alpha' = alpha * sqrt(r) (the converter itself
                           writes lora_alpha unchanged and so overscales rsLoRA adapters).
  rslora-tiny-llama-mlx/   the same adapter as mlx-lm (commit d78bf58) saves it: adapters.safetensors with
                           model.layers.N.self_attn.q_proj.lora_a = A^T [in, r] and .lora_b = B^T [r, out]
                           (mlx_lm/tuner/lora.py: y += scale * (x @ lora_a) @ lora_b), adapter_config.json with
                           fine_tune_type, num_layers, lora_parameters {rank, scale = alpha / sqrt(r), dropout, keys}
  second-tiny-llama/       a second PEFT adapter on the same targets as Tests/Fixtures/training/peft-tiny-llama
                           (q_proj, v_proj, down_proj; that one r = 4, alpha = 8; this one r = 4, alpha = 3, seed 11)
  merges.safetensors       ΔW of each linear for merges of peft-tiny-llama and second-tiny-llama with weights
                           (0.7, -0.4), as PEFT's add_weighted_adapter (peft commit 5d602fd, src/peft/tuners/lora/
                           model.py) computes the result: keys cat.<linear>, linear.<linear>, svd4.<linear> (truncated
                           SVD of the summed update at rank 4) and svd8.<linear> (full rank), in float64 then float32.
                           The summed update is Σ w_i·s_i·B_i·A_i, each adapter scaled once (PEFT's svd branch multiplies
                           get_delta_weight, already scaled, by weight·scaling again; here the scaling is not squared).

Run: python3 scripts/reference/adapters.py   (needs gguf (gguf-py 0.19.0 here) and numpy)
"""
import json, math, os, struct
import numpy as np
import gguf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
OUT = os.path.join(FIXTURES, "adapters")
os.makedirs(OUT, exist_ok=True)

# Tests/Fixtures/models/tiny-llama/config.json
HIDDEN, INTERMEDIATE, LAYERS, HEADS, KV_HEADS, HEAD_DIM = 32, 64, 2, 4, 2, 8
SHAPES = {  # [out, in]
    "self_attn.q_proj": (HEADS * HEAD_DIM, HIDDEN), "self_attn.k_proj": (KV_HEADS * HEAD_DIM, HIDDEN),
    "self_attn.v_proj": (KV_HEADS * HEAD_DIM, HIDDEN), "self_attn.o_proj": (HIDDEN, HEADS * HEAD_DIM),
    "mlp.gate_proj": (INTERMEDIATE, HIDDEN), "mlp.up_proj": (INTERMEDIATE, HIDDEN), "mlp.down_proj": (HIDDEN, INTERMEDIATE),
}
GGML = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
PREFIX = "base_model.model."


def read_safetensors(path):
    with open(path, "rb") as fh:
        n = struct.unpack("<Q", fh.read(8))[0]
        header = json.loads(fh.read(n))
        data = fh.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        s, e = info["data_offsets"]
        out[name] = np.frombuffer(data[s:e], dtype="<f4").reshape(info["shape"]).astype(np.float64)
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, array in tensors.items():
        blob = np.ascontiguousarray(array, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def random_adapter(modules, rank, seed):
    rng = np.random.default_rng(seed)
    pairs = {}
    for layer in range(LAYERS):
        for module in modules:
            out, inp = SHAPES[module]
            pairs[f"model.layers.{layer}.{module}"] = (rng.uniform(-0.5, 0.5, (rank, inp)), rng.uniform(-0.5, 0.5, (out, rank)))
    return pairs


def write_peft(folder, pairs, rank, alpha, rslora, base):
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for module, (a, b) in pairs.items():
        tensors[PREFIX + module + ".lora_A.weight"] = a
        tensors[PREFIX + module + ".lora_B.weight"] = b
    write_safetensors(os.path.join(folder, "adapter_model.safetensors"), tensors, {"format": "pt"})
    targets = sorted({m.split(".")[-1] for m in pairs})
    config = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
              "target_modules": targets, "use_rslora": rslora, "bias": "none", "fan_in_fan_out": False,
              "base_model_name_or_path": base, "rank_pattern": {}, "alpha_pattern": {}}
    with open(os.path.join(folder, "adapter_config.json"), "w") as fh:
        json.dump(config, fh, indent=2)


def ggml_rows(w, heads):
    # Within each head, HF's rotate-half rows [first half; second half] become interleaved pairs (ggml's RoPE).
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf_lora(path, pairs, rank, alpha, rslora):
    w = gguf.GGUFWriter(path, "llama")
    w.add_type(gguf.GGUFType.ADAPTER)
    w.add_string(gguf.Keys.Adapter.TYPE, "lora")
    w.add_float32(gguf.Keys.Adapter.LORA_ALPHA, alpha * math.sqrt(rank) if rslora else alpha)
    for module, (a, b) in pairs.items():
        layer, name = module.split(".")[2], ".".join(module.split(".")[3:])
        if name == "self_attn.q_proj":
            b = ggml_rows(b, HEADS)
        if name == "self_attn.k_proj":
            b = ggml_rows(b, KV_HEADS)
        base = f"blk.{layer}.{GGML[name]}.weight"
        w.add_tensor(base + ".lora_a", a.astype(np.float32))
        w.add_tensor(base + ".lora_b", b.astype(np.float32))
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def write_mlx(folder, pairs, rank, scale):
    os.makedirs(folder, exist_ok=True)
    tensors = {}
    for module, (a, b) in pairs.items():
        tensors[module + ".lora_a"] = a.T
        tensors[module + ".lora_b"] = b.T
    write_safetensors(os.path.join(folder, "adapters.safetensors"), tensors, {"format": "mlx"})
    keys = [m for m in SHAPES if any(p.endswith(m) for p in pairs)]
    config = {"fine_tune_type": "lora", "num_layers": LAYERS, "model": "tiny-llama",
              "lora_parameters": {"rank": rank, "scale": scale, "dropout": 0.0, "keys": keys}}
    with open(os.path.join(folder, "adapter_config.json"), "w") as fh:
        json.dump(config, fh, indent=2)


def peft_pairs(folder):
    tensors = read_safetensors(os.path.join(folder, "adapter_model.safetensors"))
    config = json.load(open(os.path.join(folder, "adapter_config.json")))
    r, alpha = config["r"], config["lora_alpha"]
    scale = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    pairs = {}
    for name in tensors:
        if name.endswith(".lora_A.weight"):
            module = name[len(PREFIX):-len(".lora_A.weight")]
            pairs[module] = (tensors[name], tensors[name.replace("lora_A", "lora_B")], scale)
    return pairs, config


def write_merges():
    first, config = peft_pairs(os.path.join(FIXTURES, "training", "peft-tiny-llama"))
    second, _ = peft_pairs(os.path.join(OUT, "second-tiny-llama"))
    weights = (0.7, -0.4)
    out = {}
    for module in first:
        (a1, b1, s1), (a2, b2, s2) = first[module], second[module]
        c1, c2 = weights[0] * s1, weights[1] * s2
        summed = c1 * b1 @ a1 + c2 * b2 @ a2
        out["cat." + module] = np.concatenate([b1, b2], 1) @ np.concatenate([c1 * a1, c2 * a2], 0)
        root1, root2 = math.sqrt(abs(c1)), math.sqrt(abs(c2))
        a_lin = math.copysign(root1, c1) * a1 + math.copysign(root2, c2) * a2
        b_lin = root1 * b1 + root2 * b2
        out["linear." + module] = b_lin @ a_lin
        u, s, vh = np.linalg.svd(summed, full_matrices=False)
        for r in (4, 8):
            out[f"svd{r}." + module] = (u[:, :r] * s[:r]) @ vh[:r]
    write_safetensors(os.path.join(OUT, "merges.safetensors"), out, {"weights": "0.7,-0.4"})


if __name__ == "__main__":
    base = json.load(open(os.path.join(FIXTURES, "training", "peft-tiny-llama", "adapter_config.json")))["base_model_name_or_path"]
    rank, alpha = 3, 5.0
    pairs = random_adapter(list(SHAPES), rank, seed=7)
    # Stored as float32 in every file: round once so that all three hold the same numbers.
    pairs = {m: (a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for m, (a, b) in pairs.items()}
    write_peft(os.path.join(OUT, "rslora-tiny-llama"), pairs, rank, alpha, True, base)
    write_gguf_lora(os.path.join(OUT, "rslora-tiny-llama.gguf"), pairs, rank, alpha, True)
    write_mlx(os.path.join(OUT, "rslora-tiny-llama-mlx"), pairs, rank, alpha / math.sqrt(rank))
    second = random_adapter(["self_attn.q_proj", "self_attn.v_proj", "mlp.down_proj"], 4, seed=11)
    second = {m: (a.astype(np.float32).astype(np.float64), b.astype(np.float32).astype(np.float64)) for m, (a, b) in second.items()}
    write_peft(os.path.join(OUT, "second-tiny-llama"), second, 4, 3.0, False, base)
    write_merges()
    print("wrote", OUT)
