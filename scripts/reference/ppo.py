"""Reference rollout processing, advantages, losses, gradients and metrics for Lathe's PPO objective, from TRL's own code.

TRL 0.29.1 (its last release with PPOTrainer: trl/experimental/ppo/ppo_trainer.py), torch 2.15.0, numpy 2.4.6, CPU.
Get it beside the installed TRL without installing it:
    mkdir -p /tmp/trlold && pip download --no-deps trl==0.29.1 -d /tmp/trlold
    unzip -q -o /tmp/trlold/trl-0.29.1-*.whl -d /tmp/trlold/trl-0.29.1
Run: TRL_0291=/tmp/trlold/trl-0.29.1 python3 scripts/reference/ppo.py. Writes Tests/Fixtures/ppo/objective.json.

PPOTrainer.train() is one long function, so this script does not re-type its formulas: it reads the exact source
lines of train() named below out of ppo_trainer.py (checking the first and last line of each block, so that another
version of the file fails loudly), and executes them on fixed random float64 tensors with the names train() uses.
The helpers those lines call (truncate_response, first_true_indices, masked_mean, masked_whiten, INVALID_LOGPROB)
are TRL's own, imported. Stubs stand in only for what is model or device work:
    lines 714-723   Response Processing 1-2: truncate after the stop token, sequence lengths (per rollout chunk; the
                    whole batch is one chunk here).
    lines 751-794   Response Processing 3 to 6: missing-EOS penalty, padding masks, INVALID_LOGPROB / 0 fills, the
                    k1/k3 KL, per-token rewards with the score at the end, optional whitening, GAE, returns, whitened
                    advantages.
    lines 798-876   The PPO epochs: np.random.permutation minibatches (numpy seeded per case), the clipped surrogate,
                    the clipped value loss, the loss, the statistics. The model is a stub: `forward` returns an output
                    whose values, read at TRL's slice [context_length - 1 : -1], are a leaf tensor `new_values[rows]`,
                    and `selective_log_softmax` returns the leaf `new_logprobs[rows]` (one leaf pair per update, so that
                    each update's gradient d loss / d new log-prob and d loss / d new value is that leaf's .grad).
                    `accelerator.backward` is loss.backward(); optimizer.step() does nothing (the leaves are given).
                    per_device_train_batch_size = the minibatch size: gradient_accumulation_steps = 1.
                    The entropy statistic reads the logits, which the stub has not got: policy/entropy_avg is dropped.
    lines 877-900   The logged metrics (eps, lr, episode and policy/entropy_avg dropped).
Conventions of objective.json, per case (R rows, W response columns, row-major lists of lists):
    params          TRL's PPOConfig names; pad_token_id, eos_token_id, stop_token_id (null: no stop token).
    responses       [R][W] the generated tokens as HF generate returns them (pad after the end; some rows carry
                    tokens after their stop token, which truncation must remove, or no stop token at all).
    logprobs_raw, ref_logprobs_raw, values_raw [R][W], scores_raw [R]: what the policy, the reference, the value
                    model and the reward model gave, with garbage where TRL's masks must discard it.
    outputs         every intermediate train() names: postprocessed_responses, sequence_lengths, contain_eos_token,
                    scores (penalised), logprobs, ref_logprobs, values (masked), padding_mask, padding_mask_p1, kl,
                    non_score_reward, rewards, advantages, returns.
    updates         in order: epoch, minibatch, rows (the minibatch's row indices), new_logprobs and new_values
                    [len(rows)][W] (raw: garbage where masked), loss, pg_loss, vf_loss, pg_clipfrac, vf_clipfrac,
                    approxkl, ratio_mean, grad_logprobs / grad_values [len(rows)][W].
    metrics         as logged by train().
Running it twice writes identical files.
"""
import json
import os
import pathlib
import sys
import textwrap
import types
import warnings

warnings.filterwarnings("ignore")
os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
TRL_ROOT = pathlib.Path(os.environ.get("TRL_0291", "/tmp/trlold/trl-0.29.1"))
sys.path.insert(0, str(TRL_ROOT))

import numpy as np
import torch
import trl
from trl.experimental.ppo import ppo_trainer
from trl.experimental.ppo.ppo_trainer import INVALID_LOGPROB, masked_mean, masked_whiten, truncate_response
from trl.experimental.utils import first_true_indices

assert trl.__version__ == "0.29.1", f"needs TRL 0.29.1 (PPOTrainer), found {trl.__version__} at {trl.__file__}"
ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "ppo"
SOURCE = pathlib.Path(ppo_trainer.__file__).read_text().split("\n")
F64 = torch.float64
torch.use_deterministic_algorithms(True)


def block(first, last, starts, ends):
    """Lines first..last (1-based, inclusive) of ppo_trainer.py, dedented, after checking they are the ones meant."""
    lines = SOURCE[first - 1:last]
    assert lines[0].strip().startswith(starts), f"line {first} is {lines[0]!r}"
    assert lines[-1].strip().startswith(ends), f"line {last} is {lines[-1]!r}"
    return compile(textwrap.dedent("\n".join(lines)), f"ppo_trainer.py:{first}-{last}", "exec")


TRUNCATE = block(714, 723, "# Response Processing 1.", "sequence_length = first_true_indices(")
REWARDS = block(751, 794, "# Response Processing 3.", "advantages = torch.masked_fill(advantages, padding_mask, 0)")
EPOCHS = block(798, 876, "for ppo_epoch_idx in range(args.num_ppo_epochs):", "empty_cache()")
METRICS = block(878, 900, "mean_kl = kl.sum(1).mean()", 'metrics["val/num_eos_tokens"]')


def rounded(t):
    if isinstance(t, torch.Tensor):
        t = t.tolist()
    if isinstance(t, float):
        return float(f"{t:.17g}")
    if isinstance(t, list):
        return [rounded(x) for x in t]
    return t


def run_case(name, R, W, pad, eos, stop, rows_end, params, seed):
    """rows_end[r]: ("stop", k): the stop token at column k, then pad (or garbage tokens with "stop_garbage");
    ("full", None): W generated tokens without a stop token."""
    gen = torch.Generator().manual_seed(seed)
    np.random.seed(seed)
    context_length = 3
    vocab = 11
    # Ordinary tokens avoid the pad and EOS ids so that only the placed ones are special.
    ordinary = [t for t in range(vocab) if t not in (pad, eos)]
    pick = lambda n: torch.tensor([ordinary[i] for i in torch.randint(len(ordinary), (n,), generator=gen).tolist()])
    responses = torch.zeros(R, W, dtype=torch.long)
    for r, (kind, k) in enumerate(rows_end):
        responses[r] = pick(W)
        if kind == "full":
            continue
        responses[r, k] = stop if stop is not None else eos
        if kind == "stop":
            responses[r, k + 1:] = pad
        elif kind == "eos_inside":  # no stop token: an EOS mid-row stays, generation went on
            pass
        # "stop_garbage": tokens after the stop token, which truncate_response must turn into pad
    garbage = lambda shape: torch.where(torch.rand(shape, generator=gen) < 0.5, torch.tensor(-37.25, dtype=F64),
                                        torch.tensor(11.5, dtype=F64))
    logprobs_raw = -6 * torch.rand(R, W, generator=gen, dtype=F64) ** 1.5 - 0.01
    ref_logprobs_raw = logprobs_raw + 0.4 * torch.randn(R, W, generator=gen, dtype=F64)
    values_raw = torch.randn(R, W, generator=gen, dtype=F64)
    scores_raw = 2 * torch.randn(R, generator=gen, dtype=F64)

    args = types.SimpleNamespace(**params)
    args.local_batch_size = R
    args.local_mini_batch_size = R // args.num_mini_batches
    args.per_device_train_batch_size = args.local_mini_batch_size
    args.gradient_accumulation_steps = 1
    processing_class = types.SimpleNamespace(pad_token_id=pad, eos_token_id=eos)
    trainer = types.SimpleNamespace(stop_token_id=stop, processing_class=processing_class, args=args)
    env = dict(torch=torch, np=np, args=args, self=trainer, processing_class=processing_class,
               truncate_response=truncate_response, first_true_indices=first_true_indices, masked_mean=masked_mean,
               masked_whiten=masked_whiten, INVALID_LOGPROB=INVALID_LOGPROB, empty_cache=lambda: None)

    # Response Processing 1-2 (one rollout chunk: the whole batch).
    queries = torch.full((R, context_length), 5, dtype=torch.long)
    env.update(query=queries, response=responses)
    exec(TRUNCATE, env)
    # What the rollout loop collects; garbage where the masks must discard a value.
    valid_raw = torch.arange(W).repeat(R, 1) <= (env["sequence_length"] + 1).unsqueeze(1)
    env.update(responses=responses, postprocessed_responses=env["postprocessed_response"],
               logprobs=torch.where(valid_raw, logprobs_raw, garbage((R, W))),
               ref_logprobs=torch.where(valid_raw, ref_logprobs_raw, garbage((R, W))),
               values=torch.where(valid_raw, values_raw, garbage((R, W))),
               sequence_lengths=env["sequence_length"], scores=scores_raw.clone())
    inputs = dict(responses=responses, logprobs_raw=env["logprobs"], ref_logprobs_raw=env["ref_logprobs"],
                  values_raw=env["values"], scores_raw=scores_raw)
    exec(REWARDS, env)
    outputs = {k: env[k] for k in ("postprocessed_responses", "sequence_lengths", "contain_eos_token", "scores",
                                   "logprobs", "ref_logprobs", "values", "padding_mask", "padding_mask_p1", "kl",
                                   "non_score_reward", "rewards", "advantages", "returns")}
    outputs = {k: v.int() if v.dtype == torch.bool else v for k, v in outputs.items()}

    # The PPO epochs, on a stub model whose new log-probabilities and values are given leaves.
    updates = []
    # query_responses: column 0 carries the row index, so that the stub forward knows which rows it was given.
    query_responses = torch.cat((torch.arange(R).unsqueeze(1), torch.zeros(R, context_length - 1 + W, dtype=torch.long)), 1)

    def forward(model, mb_query_responses, pad_token_id):
        rows = mb_query_responses[:, 0].tolist()
        noise = lambda: torch.randn(len(rows), W, generator=gen, dtype=F64)
        new_logprobs = (env["logprobs"][rows] + 0.25 * noise()).clamp(max=-1e-3)
        new_values = env["values"][rows] + 0.3 * noise()
        # Garbage where TRL's masked_fill must discard the model's value.
        new_logprobs = torch.where(env["padding_mask"][rows], garbage((len(rows), W)), new_logprobs).requires_grad_()
        new_values = torch.where(env["padding_mask_p1"][rows], garbage((len(rows), W)), new_values).requires_grad_()
        updates.append(dict(epoch=env["ppo_epoch_idx"], minibatch=env["minibatch_idx"], rows=rows,
                            new_logprobs=new_logprobs, new_values=new_values))
        vpred_temp = torch.cat((torch.zeros(len(rows), context_length - 1, dtype=F64), new_values,
                                torch.zeros(len(rows), 1, dtype=F64)), 1).unsqueeze(-1)
        logits = torch.zeros(len(rows), context_length + W, 2, dtype=F64)
        return types.SimpleNamespace(logits=logits), vpred_temp

    def backward(loss):
        loss.backward()
        u = updates[-1]
        u.update(loss=loss, grad_logprobs=u["new_logprobs"].grad, grad_values=u["new_values"].grad)

    class Accumulate:
        def __enter__(self): return self
        def __exit__(self, *a): return False

    stats_shape = (args.num_ppo_epochs, args.num_mini_batches, args.gradient_accumulation_steps)
    stats = {k: torch.zeros(stats_shape, dtype=F64) for k in ("approxkl_stats", "pg_clipfrac_stats", "pg_loss_stats",
                                                               "vf_loss_stats", "vf_clipfrac_stats", "entropy_stats",
                                                               "ratio_stats")}
    env.update(stats)
    env.update(forward=forward, model=types.SimpleNamespace(), query_responses=query_responses,
               context_length=context_length,
               selective_log_softmax=lambda logits, index: updates[-1]["new_logprobs"],
               accelerator=types.SimpleNamespace(backward=backward, accumulate=lambda m: Accumulate()),
               optimizer=types.SimpleNamespace(step=lambda: None, zero_grad=lambda: None))
    exec(EPOCHS, env)
    for u in updates:
        i = (u["epoch"], u["minibatch"], 0)
        u.update(pg_loss=stats["pg_loss_stats"][i], vf_loss=stats["vf_loss_stats"][i],
                 pg_clipfrac=stats["pg_clipfrac_stats"][i], vf_clipfrac=stats["vf_clipfrac_stats"][i],
                 approxkl=stats["approxkl_stats"][i], ratio_mean=stats["ratio_stats"][i])
        u["new_logprobs"] = u["new_logprobs"].detach()
        u["new_values"] = u["new_values"].detach()

    env.update(time=types.SimpleNamespace(time=lambda: 1.0), start_time=0.0)
    trainer.state = types.SimpleNamespace(episode=R)
    trainer.accelerator = types.SimpleNamespace(gather_for_metrics=lambda x: x)
    trainer.lr_scheduler = types.SimpleNamespace(get_last_lr=lambda: [0.0])
    trainer.train_dataset_len = R
    exec(METRICS, env)
    metrics = {k: v for k, v in env["metrics"].items() if k not in ("eps", "lr", "episode", "policy/entropy_avg")}

    return dict(name=name, params=dict(params, pad_token_id=pad, eos_token_id=eos, stop_token_id=stop),
                context_length=context_length, **{k: rounded(v) for k, v in inputs.items()},
                outputs={k: rounded(v) for k, v in outputs.items()},
                updates=[{k: rounded(v) for k, v in u.items()} for u in updates],
                metrics={k: rounded(v) for k, v in metrics.items()})


def config(**overrides):
    base = dict(num_ppo_epochs=4, num_mini_batches=1, kl_coef=0.05, kl_estimator="k1", cliprange=0.2, vf_coef=0.1,
                cliprange_value=0.2, gamma=1.0, lam=0.95, whiten_rewards=False, missing_eos_penalty=None,
                temperature=0.7)
    base.update(overrides)
    return base


def main():
    cases = [
        # pad distinct from EOS (TRL's example adds a [PAD] token); one row without EOS, one with EOS in the last
        # column (its score cannot go one past it), one with tokens after EOS; two epochs of two minibatches.
        run_case("pad_distinct_k1_penalty", R=6, W=8, pad=0, eos=2, stop=2,
                 rows_end=[("stop", 3), ("full", None), ("stop", 7), ("stop_garbage", 1), ("stop", 0), ("stop", 5)],
                 params=config(num_ppo_epochs=2, num_mini_batches=2, missing_eos_penalty=1.0), seed=1),
        # pad is EOS (the tokenizer has no pad token): EOS counts as padding, a row opening with EOS has length -1.
        run_case("pad_is_eos_k3_whitened", R=8, W=7, pad=2, eos=2, stop=2,
                 rows_end=[("stop", 2), ("stop", 0), ("full", None), ("stop", 6), ("stop", 4), ("stop_garbage", 3),
                           ("stop", 1), ("full", None)],
                 params=config(num_ppo_epochs=1, num_mini_batches=4, kl_estimator="k3", whiten_rewards=True,
                               gamma=0.99, lam=0.9, cliprange=0.1, cliprange_value=0.05, vf_coef=0.3,
                               missing_eos_penalty=0.5), seed=2),
        # No stop token: nothing is truncated, an EOS mid-row stays and counts as found.
        run_case("no_stop_token", R=4, W=6, pad=0, eos=2, stop=None,
                 rows_end=[("full", None), ("eos_inside", 2), ("full", None), ("eos_inside", 5)],
                 params=config(num_ppo_epochs=3, num_mini_batches=2, kl_coef=0.2, missing_eos_penalty=2.0), seed=3),
    ]
    OUT.mkdir(parents=True, exist_ok=True)
    doc = dict(source=f"trl {trl.__version__} trl/experimental/ppo/ppo_trainer.py", torch=torch.__version__,
               cases=cases)
    (OUT / "objective.json").write_text(json.dumps(doc, indent=None, separators=(",", ":")) + "\n")
    print(f"wrote {OUT / 'objective.json'}: {len(cases)} cases, "
          f"{sum(len(c['updates']) for c in cases)} updates")


if __name__ == "__main__":
    main()
