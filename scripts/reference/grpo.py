"""Reference GRPO losses, gradients, metrics and advantages for Lathe, from TRL's own code.

TRL 1.16.0, torch 2.15.0, CPU. Run: python3 scripts/reference/grpo.py (pip install trl==1.16.0). Writes
Tests/Fixtures/grpo/objective.json:

cases       Each case's synthetic per-token log-probabilities go through TRL's real GRPOTrainer._compute_loss
            (trl/trainer/grpo_trainer.py), called on a stub `self` whose _get_per_token_logps_and_entropies returns
            them (a float64 leaf, so autograd gives d loss / d logps), with one process, token-level importance
            sampling, no vLLM, no entropy bonus, steps_per_generation = gradient accumulation.
              logps, old_logps, ref_logps  [B][T]  per completion token (old_logps null: on-policy, TRL's
                                                   num_iterations = 1, where it uses logps.detach())
              mask        [B][T]   completion_mask (1 for the completion's tokens; a truncated row all 0 when
                                   mask_truncated_completions)
              advantages  [B]
              params      loss_type, epsilon, epsilon_high, beta, max_completion_length,
                          gradient_accumulation_steps, num_items_in_batch (dapo: the generation batch's tokens)
              loss, grad [B][T] (0 where mask is 0), metrics (TRL's names; entropy left out: it needs logits)
advantages  The weighted rewards of a generation batch (NaN: unscored) through the lines of
            GRPOTrainer._generate_and_score_completions that make advantages (sum_then_normalize, lines ~2760-2790
            of the file above: nanmean over the group, trl.trainer.utils.nanstd, + 1e-4), for scale_rewards group,
            batch and none.
"""
import json
import math
import os
import types

import torch
import trl
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import nanstd

assert trl.__version__ == "1.16.0", trl.__version__
torch.manual_seed(0)
OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "Fixtures", "grpo")


class Accelerator:
    num_processes = 1
    sync_gradients = True

    def gather(self, x):
        return x

    def gather_for_metrics(self, x):
        return x

    def reduce(self, x, reduction="sum"):
        return x


def stub(params, logps):
    s = types.SimpleNamespace()
    s.loss_type = params["loss_type"]
    s.epsilon_low = params["epsilon"]
    s.epsilon_high = params["epsilon_high"] if params["epsilon_high"] is not None else params["epsilon"]
    s.beta = params["beta"]
    s.max_completion_length = params["max_completion_length"]
    s.current_gradient_accumulation_steps = params["gradient_accumulation_steps"]
    s.args = types.SimpleNamespace(delta=None, use_bias_correction_kl=False,
                                   steps_per_generation=params["gradient_accumulation_steps"])
    s.accelerator = Accelerator()
    s.model = types.SimpleNamespace(training=True)
    s._metrics = {"train": {}, "eval": {}}
    for mode in s._metrics:
        s._metrics[mode] = __import__("collections").defaultdict(list)
    s.top_entropy_quantile = 1.0
    s.off_policy_mask_threshold = None
    s.importance_sampling_level = "token"
    s.use_vllm = False
    s.vllm_importance_sampling_correction = False
    s._entropy_bonus_enabled = False
    s.aux_loss_enabled = False
    s._get_per_token_logps_and_entropies = lambda *a, **k: (logps, torch.zeros_like(logps), None)
    return s


def case(name, B=4, T=6, loss_type="dapo", beta=0.0, epsilon=0.2, epsilon_high=None, off_policy=True,
         accumulation=1, truncated_row=None, lengths=None, extra_tokens=0):
    lengths = lengths or [T - (i % 3) for i in range(B)]
    mask = torch.zeros(B, T, dtype=torch.float64)
    for i, n in enumerate(lengths):
        mask[i, :n] = 1
    if truncated_row is not None:
        mask[truncated_row] = 0
    logps = (torch.rand(B, T, dtype=torch.float64) * -3).requires_grad_(True)
    # Off-policy rows: old log-probabilities spread around the new ones so that ratios fall outside [1-ε, 1+ε].
    old = (logps.detach() + torch.randn(B, T, dtype=torch.float64) * 0.4) if off_policy else None
    ref = logps.detach() + torch.randn(B, T, dtype=torch.float64) * 0.3
    advantages = torch.randn(B, dtype=torch.float64)
    params = dict(loss_type=loss_type, epsilon=epsilon, epsilon_high=epsilon_high, beta=beta, max_completion_length=T + 2,
                  gradient_accumulation_steps=accumulation,
                  num_items_in_batch=float(mask.sum().item()) + extra_tokens)
    inputs = {
        "prompt_ids": torch.zeros(B, 1, dtype=torch.long), "prompt_mask": torch.ones(B, 1, dtype=torch.long),
        "completion_ids": torch.zeros(B, T, dtype=torch.long), "completion_mask": mask,
        "advantages": advantages, "num_items_in_batch": torch.tensor(params["num_items_in_batch"], dtype=torch.float64),
    }
    if old is not None:
        inputs["old_per_token_logps"] = old
    if beta != 0:
        inputs["ref_per_token_logps"] = ref
    s = stub(params, logps)
    loss = GRPOTrainer._compute_loss(s, None, inputs)
    loss.backward()
    metrics = {k: v[0] for k, v in s._metrics["train"].items() if k != "entropy"}
    return dict(name=name, params=params, logps=logps.detach().tolist(), old_logps=None if old is None else old.tolist(),
                ref_logps=ref.tolist(), mask=mask.tolist(), advantages=advantages.tolist(), loss=loss.item(),
                grad=(logps.grad * mask).tolist(),
                metrics={k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()})


def advantages(rewards, G, scale):
    rewards = torch.tensor([float("nan") if r is None else r for r in rewards], dtype=torch.float64)
    unscorable = torch.isnan(rewards)
    mean = torch.nanmean(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    if scale in ["group", "none"]:
        std = nanstd(rewards.view(-1, G), dim=1).repeat_interleave(G, dim=0)
    else:
        std = nanstd(rewards).expand_as(rewards)
    adv = rewards - mean
    if scale != "none":
        adv = adv / (std + 1e-4)
    adv[unscorable] = 0.0  # TRL: "their advantage is forced to 0 afterwards"
    return adv.tolist()


cases = [
    case("dapo_on_policy", off_policy=False),
    case("dapo_off_policy_kl", beta=0.04),
    case("dapo_two_micro_batches", accumulation=2, extra_tokens=7),
    case("grpo_off_policy", loss_type="grpo", truncated_row=2),
    case("bnpo_kl_accumulated", loss_type="bnpo", beta=0.1, accumulation=2),
    case("dr_grpo_asymmetric_clip", loss_type="dr_grpo", epsilon=0.1, epsilon_high=0.28),
]
rewards = [1.0, 0.0, 0.5, 1.0, 0.2, 0.2, 0.2, 0.2, None, 1.0, 0.0, 0.3]
out = dict(cases=cases, advantages=dict(rewards=rewards, num_generations=4,
                                        **{scale: advantages(rewards, 4, scale) for scale in ["group", "batch", "none"]}))
os.makedirs(OUT, exist_ok=True)
with open(os.path.join(OUT, "objective.json"), "w") as f:
    json.dump(out, f)
print("wrote", os.path.join(OUT, "objective.json"), [c["name"] for c in cases])
