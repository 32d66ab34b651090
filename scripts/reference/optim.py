"""Reference fixtures for LatheTraining's optimizers, learning-rate schedules and gradient clipping.

Run from the package root:  python scripts/reference/optim.py
Writes into Tests/Fixtures/optim/:
  optimizers.json  small random parameters, 10 steps of seeded random gradients, and for each optimizer run
                   (torch.optim.AdamW / SGD, single-tensor implementation, foreach=False) the learning rate, the
                   gradient norm returned by clip_grad_norm_(max_norm=1.0) and every parameter after each step.
                   The learning rate follows transformers' get_cosine_schedule_with_warmup(3 warmup, 10 total).
  schedules.json   transformers' constant / linear / cosine (and cosine with min_lr) schedules with warmup,
                   multiplied by the peak rate, at every step of a 20-step run with 5 warmup steps.
Floats are written as JSON numbers holding float32 values exactly (parameters) or as Python doubles (rates).
"""
import json
import os
import sys

# This folder holds tokenizers.py, which would shadow the `tokenizers` package that transformers imports.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [entry for entry in sys.path if os.path.abspath(entry or ".") != HERE]

import torch  # noqa: E402
from transformers.optimization import (  # noqa: E402
    get_constant_schedule_with_warmup,
    get_cosine_schedule_with_warmup,
    get_cosine_with_min_lr_schedule_with_warmup,
    get_linear_schedule_with_warmup,
)

ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "optim")

SHAPES = {"layer.weight": [7, 5], "layer.bias": [13], "block.scale": [3, 4, 2]}
STEPS = 10
PEAK_RATE = 0.05
WARMUP, TOTAL = 3, 10
MAX_NORM = 1.0

generator = torch.Generator().manual_seed(20261122)
initial = {name: torch.randn(shape, generator=generator) for name, shape in SHAPES.items()}
# Gradients at a few scales so that clipping both triggers (norm > 1) and does not (norm < 1).
scales = [3.0, 0.05, 1.0, 0.2, 2.0, 0.1, 5.0, 0.02, 0.5, 1.5]
gradients = [{name: torch.randn(shape, generator=generator) * scales[step] for name, shape in SHAPES.items()}
             for step in range(STEPS)]


def values(tensor):
    return tensor.detach().reshape(-1).tolist()


def run(name, make_optimizer):
    parameters = {n: torch.nn.Parameter(t.clone()) for n, t in initial.items()}
    ordered = [parameters[n] for n in SHAPES]
    optimizer = make_optimizer(ordered)
    schedule = get_cosine_schedule_with_warmup(optimizer, WARMUP, TOTAL)
    rates, norms, after = [], [], []
    for step in range(STEPS):
        optimizer.zero_grad()
        for n, p in parameters.items():
            p.grad = gradients[step][n].clone()
        rates.append(schedule.get_last_lr()[0])
        norms.append(torch.nn.utils.clip_grad_norm_(ordered, max_norm=MAX_NORM).item())
        optimizer.step()
        schedule.step()
        after.append({n: values(p) for n, p in parameters.items()})
    return {"name": name, "rates": rates, "norms": norms, "parameters_after_step": after}


runs = [
    run("adamw weight_decay 0.1",
        lambda ps: torch.optim.AdamW(ps, lr=PEAK_RATE, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, foreach=False)),
    run("adamw defaults",
        lambda ps: torch.optim.AdamW(ps, lr=PEAK_RATE, foreach=False)),
    run("adamw amsgrad betas (0.8, 0.95) eps 1e-6",
        lambda ps: torch.optim.AdamW(ps, lr=PEAK_RATE, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.01, amsgrad=True,
                                     foreach=False)),
    run("sgd momentum 0.9 weight_decay 0.01",
        lambda ps: torch.optim.SGD(ps, lr=PEAK_RATE, momentum=0.9, weight_decay=0.01, foreach=False)),
    run("sgd momentum 0.9 nesterov weight_decay 0.01",
        lambda ps: torch.optim.SGD(ps, lr=PEAK_RATE, momentum=0.9, nesterov=True, weight_decay=0.01, foreach=False)),
    run("sgd momentum 0.5 dampening 0.3",
        lambda ps: torch.optim.SGD(ps, lr=PEAK_RATE, momentum=0.5, dampening=0.3, foreach=False)),
    run("sgd plain",
        lambda ps: torch.optim.SGD(ps, lr=PEAK_RATE, foreach=False)),
]

optimizers = {
    "shapes": SHAPES,
    "names": list(SHAPES),
    "peak_rate": PEAK_RATE,
    "warmup_steps": WARMUP,
    "total_steps": TOTAL,
    "max_norm": MAX_NORM,
    "initial": {n: values(t) for n, t in initial.items()},
    "gradients": [{n: values(t) for n, t in step.items()} for step in gradients],
    "runs": runs,
}


def schedule_rates(make, peak, steps):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=peak)
    schedule = make(optimizer)
    rates = []
    for _ in range(steps):
        rates.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return rates


S_PEAK, S_WARMUP, S_TOTAL, S_MIN = 3e-4, 5, 20, 3e-5
schedules = {
    "peak_rate": S_PEAK,
    "warmup_steps": S_WARMUP,
    "total_steps": S_TOTAL,
    "minimum_rate": S_MIN,
    "constant": schedule_rates(lambda o: get_constant_schedule_with_warmup(o, S_WARMUP), S_PEAK, S_TOTAL),
    "linear": schedule_rates(lambda o: get_linear_schedule_with_warmup(o, S_WARMUP, S_TOTAL), S_PEAK, S_TOTAL),
    "cosine": schedule_rates(lambda o: get_cosine_schedule_with_warmup(o, S_WARMUP, S_TOTAL), S_PEAK, S_TOTAL),
    "cosine_minimum": schedule_rates(
        lambda o: get_cosine_with_min_lr_schedule_with_warmup(o, S_WARMUP, S_TOTAL, min_lr=S_MIN), S_PEAK, S_TOTAL),
}

os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "optimizers.json"), "w") as f:
    json.dump(optimizers, f)
with open(os.path.join(OUT, "schedules.json"), "w") as f:
    json.dump(schedules, f, indent=1)
print("wrote", OUT)
