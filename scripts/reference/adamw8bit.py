"""Reference fixtures for LatheTraining's AdamW8bit: bitsandbytes 0.50.2's AdamW8bit run on CPU.

Run from the package root:  python scripts/reference/adamw8bit.py
(needs torch and `pip install --no-deps bitsandbytes==0.50.2`; the Swift tests need neither.)

Parameters and gradients come from a counter hash that the Swift test recomputes bit for bit (`hashed` below), so
the fixture holds only bitsandbytes' outputs:
  adamw8bit.json  the run's shapes, rates and hyper-parameters; bitsandbytes' signed and unsigned dynamic maps
                  (create_dynamic_map); the optimizer state after step 1 and after the last step (8-bit codes and
                  per-block absmax for the tensor of >= 4096 elements, float32 moments for the small one), byte
                  arrays and float arrays as base64 of little-endian bytes; and a few hashed values as a check.
                  A second run of 3 steps with betas (0.8, 0.95), eps 1e-6 and no weight decay: its parameters and
                  state after the last step.
  trajectory.bin  every parameter after every step, float32 little-endian, steps in order, tensors in `names`
                  order within a step.
It also checks, before writing, that a numpy re-implementation of bitsandbytes' CPU blockwise quantizer (a
65536-entry lookup table over [-1, 1] built from the midpoints between codes) reproduces bitsandbytes' bytes.
"""
import base64
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [entry for entry in sys.path if os.path.abspath(entry or ".") != HERE]

import numpy as np  # noqa: E402
import torch  # noqa: E402
import bitsandbytes as bnb  # noqa: E402
import bitsandbytes.functional as F  # noqa: E402

assert bnb.__version__ == "0.50.2", f"expected bitsandbytes 0.50.2, found {bnb.__version__}"

ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "adamw8bit")

NAMES = ["big.weight", "small.bias"]
SHAPES = {"big.weight": [64, 67], "small.bias": [100]}  # 4288 elements: 16 full blocks of 256 and one of 192
STEPS = 10
RATES = [float(np.float32(r)) for r in [0.01, 0.02, 0.02, 0.015, 0.01, 0.01, 0.008, 0.005, 0.003, 0.001]]
GRADIENT_SCALES = [float(np.float32(s)) for s in [1.0, 0.5, 2.0, 0.1, 1.0, 0.01, 3.0, 0.5, 0.2, 1.0]]
BETAS, EPS, WEIGHT_DECAY = (0.9, 0.999), 1e-8, 0.01
ZERO_BLOCK = (512, 768)  # big.weight's third block gets zero gradients at step 1: absmax 0, codes 0

f32 = np.float32


def hash32(x):
    """lowbias32 (Chris Wellons) on uint32 arrays, wrapping."""
    x = x.astype(np.uint32)
    x ^= x >> np.uint32(16)
    x *= np.uint32(0x7FEB352D)
    x ^= x >> np.uint32(15)
    x *= np.uint32(0x846CA68B)
    x ^= x >> np.uint32(16)
    return x


def hashed(stream, count, scale):
    """w³·scale with w = 2u − 1, u = (hash32(i + stream·0x9E3779B9) >> 8)·2⁻²⁴; every step rounded to float32.
    Cubing puts many values near zero, where the dynamic map's small codes are exercised."""
    index = (np.arange(count, dtype=np.uint64) + np.uint64(stream) * np.uint64(0x9E3779B9)) % np.uint64(2**32)
    u = (hash32(index) >> np.uint32(8)).astype(f32) * f32(2.0**-24)
    w = (u * f32(2) - f32(1)).astype(f32)
    return (((w * w).astype(f32) * w).astype(f32) * f32(scale)).astype(f32)


def initial_values(t, count):
    return hashed(1000 + t, count, 1.0)


def gradient_values(step, t, count):
    values = hashed(100 * (step + 1) + t, count, GRADIENT_SCALES[step])
    if step == 0 and t == 0:
        values[ZERO_BLOCK[0]:ZERO_BLOCK[1]] = 0
    return values


def lut_quantize(x, code, blocksize=256):
    """bitsandbytes' CPU quantize_blockwise re-done in numpy (see the module docstring)."""
    code = code.astype(f32)
    midpoints = (f32(0.5) * (code[:-1] + code[1:])).astype(f32)
    grid = (f32(-1) + (f32(2) * np.arange(65536).astype(f32)) / f32(65535)).astype(f32)
    lut = np.searchsorted(midpoints, grid, side="left").astype(np.uint8)
    out = np.zeros(x.size, np.uint8)
    absmax = []
    for start in range(0, x.size, blocksize):
        block = x[start:start + blocksize]
        top = f32(np.max(np.abs(block)))
        absmax.append(top)
        if top == 0:
            continue
        v = np.clip((block * f32(f32(1) / top)).astype(f32), f32(-1), f32(1))
        t = ((((v + f32(1)) * f32(0.5)).astype(f32) * f32(65535)).astype(f32) + f32(0.5)).astype(f32)
        out[start:start + blocksize] = lut[t.astype(np.int64)]
    return out, np.array(absmax, f32)


def check_quantizer():
    generator = np.random.default_rng(7)
    for signed in (True, False):
        code = F.create_dynamic_map(signed=signed)
        for scale in (1.0, 1e-3, 1e-7):
            x = (generator.standard_normal(4288) * scale).astype(f32)
            if not signed:
                x = (x * x).astype(f32)
            x[256:512] = 0
            out, absmax = torch.ops.bitsandbytes.quantize_blockwise(torch.from_numpy(x), code, 256)
            mine, mine_absmax = lut_quantize(x, code.numpy())
            assert np.array_equal(out.numpy(), mine) and np.array_equal(absmax.numpy(), mine_absmax), \
                f"numpy quantizer differs from bitsandbytes (signed {signed}, scale {scale})"


def b64(array):
    return base64.b64encode(np.ascontiguousarray(array).tobytes()).decode("ascii")


def state_record(optimizer, parameters):
    record = {}
    for name, p in zip(NAMES, parameters):
        state = optimizer.state[p]
        if state["state1"].dtype == torch.uint8:
            record[name] = {"step": state["step"],
                            "state1": b64(state["state1"].numpy().reshape(-1)),
                            "state2": b64(state["state2"].numpy().reshape(-1)),
                            "absmax1": b64(state["absmax1"].numpy().astype("<f4")),
                            "absmax2": b64(state["absmax2"].numpy().astype("<f4"))}
        else:
            record[name] = {"step": state["step"],
                            "exp_avg": b64(state["state1"].numpy().reshape(-1).astype("<f4")),
                            "exp_avg_sq": b64(state["state2"].numpy().reshape(-1).astype("<f4"))}
    return record


def run(rates, betas, eps, weight_decay, on_step):
    """bitsandbytes' AdamW8bit from the hashed initial values, with the hashed gradients of steps 0, 1, …"""
    parameters = [torch.nn.Parameter(torch.from_numpy(initial_values(t, int(np.prod(SHAPES[n])))).reshape(SHAPES[n]))
                  for t, n in enumerate(NAMES)]
    optimizer = bnb.optim.AdamW8bit(parameters, lr=rates[0], betas=betas, eps=eps, weight_decay=weight_decay)
    for step, rate in enumerate(rates):
        for group in optimizer.param_groups:
            group["lr"] = rate
        for t, p in enumerate(parameters):
            p.grad = torch.from_numpy(gradient_values(step, t, p.numel())).reshape(p.shape)
        optimizer.step()
        on_step(step, optimizer, parameters)
    return optimizer, parameters


# A second, short run with other hyper-parameters and no weight decay (bitsandbytes then skips the decay multiply).
SECOND = {"rates": RATES[:3], "beta1": 0.8, "beta2": 0.95, "epsilon": 1e-6, "weight_decay": 0.0}


def main():
    check_quantizer()
    trajectory = []
    after_first = {}

    def record(step, optimizer, parameters):
        for p in parameters:
            trajectory.append(p.detach().numpy().reshape(-1).astype("<f4"))
        if step == 0:
            after_first.update(state_record(optimizer, parameters))

    optimizer, parameters = run(RATES, BETAS, EPS, WEIGHT_DECAY, record)
    second_optimizer, second_parameters = run(SECOND["rates"], (SECOND["beta1"], SECOND["beta2"]), SECOND["epsilon"],
                                              SECOND["weight_decay"], lambda *_: None)
    second = dict(SECOND)
    second["parameters_after_last_step"] = {n: b64(p.detach().numpy().reshape(-1).astype("<f4"))
                                            for n, p in zip(NAMES, second_parameters)}
    second["state_after_last_step"] = state_record(second_optimizer, second_parameters)
    big = optimizer.state[parameters[0]]
    assert big["state1"].dtype == torch.uint8 and optimizer.state[parameters[1]]["state1"].dtype == torch.float32

    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "trajectory.bin"), "wb") as file:
        file.write(np.concatenate(trajectory).tobytes())
    fixture = {
        "bitsandbytes": bnb.__version__,
        "names": NAMES,
        "shapes": SHAPES,
        "rates": RATES,
        "gradient_scales": GRADIENT_SCALES,
        "zero_block": list(ZERO_BLOCK),
        "beta1": BETAS[0], "beta2": BETAS[1], "epsilon": EPS, "weight_decay": WEIGHT_DECAY,
        "signed_map": [float(v) for v in F.create_dynamic_map(signed=True).tolist()],
        "unsigned_map": [float(v) for v in F.create_dynamic_map(signed=False).tolist()],
        "state_after_first_step": after_first,
        "state_after_last_step": state_record(optimizer, parameters),
        "second_run": second,
        "hash_check": {"initial_0_first4": initial_values(0, 4).tolist(),
                       "gradient_3_1_first4": gradient_values(3, 1, 4).tolist()},
    }
    with open(os.path.join(OUT, "adamw8bit.json"), "w") as file:
        json.dump(fixture, file, indent=1)
        file.write("\n")
    print(f"wrote {OUT}: {STEPS} steps; big.weight absmax1 after the last step {big['absmax1'][:3].tolist()} ...")


if __name__ == "__main__":
    main()
