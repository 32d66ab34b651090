"""Reference data for Lathe's BPE trainer (Tests/Fixtures/toktrain/).

1. Writes a seeded corpus (prose, code, numbers, unicode) and a held-out text.
2. Trains Hugging Face `tokenizers`' BpeTrainer on the corpus with SmolLM's pre-tokenizer (individual digits,
   then byte-level GPT-2 regex), the same vocabulary size, minimum frequency and special tokens that the Swift
   tests use, and saves its vocabulary (in id order) and merges as hf_trained.json.
3. When lathe/tokenizer.json exists (written by `lathe tokenizer train`, see below), loads it with Hugging Face
   and saves the ids of the held-out text as heldout_ids.json, with the ChatML rendering transformers gives
   from that folder's tokenizer_config.json.

Run:  python scripts/reference/toktrain.py
      swift run lathe tokenizer train --input Tests/Fixtures/toktrain/corpus.txt --vocab-size 1024 \
          --output Tests/Fixtures/toktrain/lathe --chat-template chatml
      python scripts/reference/toktrain.py
"""
import json
import random
import sys
from pathlib import Path

# a script named like a package (as tokenizer_ids.py once was) would shadow that package.
sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

OUT = Path(__file__).resolve().parents[2] / "Tests" / "Fixtures" / "toktrain"
VOCAB_SIZE = 1024
MIN_FREQUENCY = 2
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi 42"}]

NOUNS = ("river lathe model token engine garden window forest letter circuit teacher market harbor "
         "question number theory kernel matrix vector language student morning mountain island").split()
VERBS = ("turns reads writes finds learns builds carries opens measures follows explains compiles "
         "returns counts divides shapes").split()
ADJECTIVES = "quiet bright small ancient careful quick heavy open narrow gentle final random".split()
UNICODE_LINES = [
    "Café au lait, crème brûlée et pâtisserie française.",
    "Straße, Übergröße, Fräulein und Mädchen in München.",
    "Ελληνικά γράμματα: αλφα, βήτα, γάμμα, δέλτα.",
    "Русский текст: привет, мир, спасибо.",
    "中文分词测试：我们喜欢机器学习和语言模型。",
    "日本語のテキスト：こんにちは世界。",
    "Emoji 🙂🚀🎉 and symbols ∑ ∫ √ ≈ ≠ ± °C €£¥.",
    "Tabs\tand  double  spaces   and\r\nwindows line ends.",
]


SYLLABLES = "ka to ri se mu na lo vi pe dra quo ste il an or ex um bri tha gle wen zo cy".split()


def made_up_word(rng):
    """A word from a few syllables, frequent ones far more likely (roughly Zipf), for a varied vocabulary."""
    return "".join(SYLLABLES[min(int(rng.paretovariate(1.2)) - 1, len(SYLLABLES) - 1)]
                   for _ in range(rng.randint(1, 4)))


def sentence(rng):
    words = [rng.choice(ADJECTIVES), rng.choice(NOUNS), rng.choice(VERBS), "the", made_up_word(rng),
             rng.choice(NOUNS)]
    if rng.random() < 0.3:
        words += ["and", rng.choice(VERBS), "it's", rng.choice(NOUNS) + "'s", rng.choice(NOUNS)]
    text = " ".join(words)
    return text[0].upper() + text[1:] + rng.choice([".", ".", "!", "?", ";"])


def code(rng):
    name = rng.choice(NOUNS)
    other = rng.choice(NOUNS)
    n = rng.randint(2, 99)
    if rng.random() < 0.5:
        return (f"def {name}_{other}(x, y={n}):\n    if x > {n}:\n        return x * y + {rng.randint(0, 9)}\n"
                f"    return [{name} for {name} in range(x)]\n")
    return (f"func {name}(_ {other}: [Int]) -> Int {{\n    var total = {n}\n    for value in {other} {{ total += value }}\n"
            f"    return total // {rng.choice(ADJECTIVES)}\n}}\n")


def numbers(rng):
    return (f"On {rng.randint(1, 28):02d}/{rng.randint(1, 12):02d}/{rng.randint(1990, 2030)} the price was "
            f"${rng.randint(1, 9999)}.{rng.randint(0, 99):02d} (up {rng.random() * 10:.2f}%), "
            f"order #{rng.randint(10000, 99999)}, phone +1-{rng.randint(200, 999)}-{rng.randint(1000, 9999)}.")


def document(rng, size):
    parts = []
    while sum(len(p) for p in parts) < size:
        kind = rng.random()
        if kind < 0.55:
            parts.append(" ".join(sentence(rng) for _ in range(rng.randint(1, 5))) + "\n")
        elif kind < 0.75:
            parts.append(code(rng))
        elif kind < 0.9:
            parts.append(numbers(rng) + "\n")
        else:
            parts.append(rng.choice(UNICODE_LINES) + "\n")
        if rng.random() < 0.2:
            parts.append("\n")
    return "".join(parts)


def smollm_trainer_tokenizer():
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    corpus = document(random.Random(1234), 150_000)
    heldout = document(random.Random(99), 3_000) + "<|im_start|>user\nHi 42!<|im_end|>\n<|endoftext|>"
    (OUT / "corpus.txt").write_bytes(corpus.encode("utf-8"))
    (OUT / "heldout.txt").write_bytes(heldout.encode("utf-8"))

    tokenizer = smollm_trainer_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, min_frequency=MIN_FREQUENCY, show_progress=False,
                                  special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator([corpus], trainer=trainer)
    saved = json.loads(tokenizer.to_str())
    vocab = saved["model"]["vocab"]
    by_id = [None] * len(vocab)
    for token, index in vocab.items():
        by_id[index] = token
    merges = [m if isinstance(m, list) else m.split(" ") for m in saved["model"]["merges"]]
    reference = {"vocab_size": VOCAB_SIZE, "min_frequency": MIN_FREQUENCY, "special_tokens": SPECIAL_TOKENS,
                 "vocab": by_id, "merges": merges}
    (OUT / "hf_trained.json").write_text(json.dumps(reference, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"HF: {len(by_id)} tokens, {len(merges)} merges")

    lathe_file = OUT / "lathe" / "tokenizer.json"
    if lathe_file.exists():
        lathe = Tokenizer.from_file(str(lathe_file))
        ids = lathe.encode(heldout).ids
        assert lathe.decode(ids, skip_special_tokens=False) == heldout
        corpus_ids = lathe.encode(corpus).ids
        # transformers loads the whole folder (tokenizer_config.json too) and renders its ChatML template.
        from transformers import AutoTokenizer
        chat = AutoTokenizer.from_pretrained(str(lathe_file.parent)).apply_chat_template(
            CHAT, tokenize=False, add_generation_prompt=True)
        (OUT / "heldout_ids.json").write_text(json.dumps({"text": heldout, "ids": ids,
                                                          "corpus_token_count": len(corpus_ids),
                                                          "chat": CHAT, "chat_rendered": chat},
                                                         ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"held-out text: {len(ids)} ids with HF loading Lathe's tokenizer.json")
    else:
        print("no lathe/tokenizer.json yet: run `lathe tokenizer train` (see the docstring), then this again")


if __name__ == "__main__":
    main()
