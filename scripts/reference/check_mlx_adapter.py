"""Checks Lathe's MLX-LM adapters in MLX-LM itself. Not run in CI (needs `pip install "mlx[cpu]" mlx-lm`; mlx runs on
Linux's CPU).

    python3 scripts/reference/check_mlx_adapter.py [--lathe .build/release/lathe]

1. PEFT → MLX: Tests/Fixtures/training/peft-tiny-llama (saved by PEFT 0.21.2) converted with `lathe adapter convert
   --to mlx` and loaded by mlx_lm.tuner.utils.load_adapters onto the tiny Llama (Tests/Fixtures/models/tiny-llama):
   its logits against the ones transformers + PEFT computed (training/peft-tiny-llama-logits.json).
2. MLX → PEFT → MLX: an adapter made by mlx_lm itself (linear_to_lora_layers, random lora_b, saved as mlx_lm.lora
   saves adapters.safetensors and adapter_config.json) converted to PEFT and back by Lathe: the PEFT folder's ΔW
   (lora_alpha / r · B·A) against mlx_lm's (scale · lora_bᵀ·lora_aᵀ), and mlx_lm's logits with the adapter back
   against those with its own.
"""
import argparse, glob, json, os, subprocess, sys, tempfile
import numpy as np
import mlx.core as mx
from mlx.utils import tree_flatten
import mlx_lm
from mlx_lm.models import llama
from mlx_lm.tuner.utils import linear_to_lora_layers, load_adapters

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "Tests", "Fixtures")
parser = argparse.ArgumentParser()
parser.add_argument("--lathe", default=os.path.join(ROOT, ".build", "release", "lathe"))
args = parser.parse_args()
work = tempfile.mkdtemp(prefix="lathe-mlx-")
tiny = os.path.join(FIXTURES, "models", "tiny-llama")


def base_model():
    config = json.load(open(os.path.join(tiny, "config.json")))
    config["rope_theta"] = config["rope_parameters"]["rope_theta"]
    model = llama.Model(llama.ModelArgs.from_dict(config))
    weights = {}
    for shard in glob.glob(os.path.join(tiny, "*.safetensors")):
        weights.update(mx.load(shard))
    model.load_weights(list(model.sanitize(weights).items()))
    return model


def logits(model, ids):
    return np.array(model(mx.array(ids)).astype(mx.float32))


def lathe(*arguments):
    subprocess.run([args.lathe, "adapter", "convert", *arguments], check=True)


# 1. PEFT → MLX against PEFT's logits.
expected = json.load(open(os.path.join(FIXTURES, "training", "peft-tiny-llama-logits.json")))
converted = os.path.join(work, "from-peft")
lathe("--input", os.path.join(FIXTURES, "training", "peft-tiny-llama"), "--to", "mlx", "--output", converted)
model = load_adapters(base_model(), converted)
gap = np.abs(logits(model, expected["ids"]) - np.array(expected["logits"])).max()
print(f"PEFT → MLX: mlx_lm {mlx_lm.__version__} logits against transformers + PEFT: largest difference {gap:.2e}")

# 2. An adapter mlx_lm made, through Lathe's PEFT and back.
model = base_model()
model.freeze()
parameters = {"rank": 4, "scale": 1.7, "dropout": 0.0, "keys": ["self_attn.q_proj", "self_attn.k_proj", "mlp.up_proj"]}
linear_to_lora_layers(model, 2, parameters)
for layer in model.layers:
    for module in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.mlp.up_proj):
        module.lora_b = mx.random.uniform(-0.5, 0.5, module.lora_b.shape, key=mx.random.key(3))
ids = expected["ids"]
own = logits(model, ids)
mlx_folder = os.path.join(work, "mlx-made")
os.makedirs(mlx_folder)
mx.save_safetensors(os.path.join(mlx_folder, "adapters.safetensors"), dict(tree_flatten(model.trainable_parameters())))
with open(os.path.join(mlx_folder, "adapter_config.json"), "w") as fh:
    json.dump({"fine_tune_type": "lora", "num_layers": 2, "lora_parameters": parameters, "model": tiny}, fh)
peft_folder, back = os.path.join(work, "peft"), os.path.join(work, "back")
lathe("--input", mlx_folder, "--to", "peft", "--output", peft_folder)
lathe("--input", peft_folder, "--to", "mlx", "--output", back)
# The PEFT folder in between, read as PEFT reads it (scale = lora_alpha / r), against mlx_lm's own ΔW = scale·lora_bᵀ·lora_aᵀ.
peft = mx.load(os.path.join(peft_folder, "adapter_model.safetensors"))
peft_config = json.load(open(os.path.join(peft_folder, "adapter_config.json")))
peft_scale = peft_config["lora_alpha"] / peft_config["r"]
gap_delta = 0.0
for i, layer in enumerate(model.layers):
    for path, module in (("self_attn.q_proj", layer.self_attn.q_proj), ("self_attn.k_proj", layer.self_attn.k_proj),
                         ("mlp.up_proj", layer.mlp.up_proj)):
        key = f"base_model.model.model.layers.{i}.{path}"
        theirs = np.array(parameters["scale"] * module.lora_b.T @ module.lora_a.T)
        ours = np.array(peft_scale * peft[key + ".lora_B.weight"] @ peft[key + ".lora_A.weight"])
        gap_delta = max(gap_delta, float(np.abs(ours - theirs).max() / np.abs(theirs).max()))
print(f"MLX → PEFT: the PEFT folder's ΔW against mlx_lm's: largest relative difference {gap_delta:.2e}")
gap2 = np.abs(logits(load_adapters(base_model(), back), ids) - own).max()
moved = np.abs(own - logits(base_model(), ids)).max()
print(f"MLX → PEFT → MLX: logits against mlx_lm's own adapter: largest difference {gap2:.2e} (the adapter moves them {moved:.2e})")
sys.exit(0 if gap < 2e-4 and gap_delta < 1e-5 and gap2 < 1e-4 else 1)
