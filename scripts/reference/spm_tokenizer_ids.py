"""Reference token ids for LatheTokenizers' SentencePiece tokenizers (GGUF `llama` and tokenizer.json BPE/Unigram).

Writes into Tests/Fixtures/tokenizers/:
  gemma3-gguf.json         ids and decodes of Gemma 3 270M's GGUF tokenizer, as transformers'
                           AutoTokenizer.from_pretrained(dir, gguf_file=...) builds it
  spm-bpe/tokenizer.json   a tiny SentencePiece BPE model (trained with `sentencepiece`, byte_fallback) converted
                           with transformers' SpmConverter.build_tokenizer_from_spm_proto
  spm-bpe.json             its ids and decodes (and SentencePiece's own ids, to show where the two differ)
  spm-unigram/...          the same for a tiny Unigram model
The test corpus is tokenizer_ids.py's (corpus.json) plus SentencePiece-specific strings.
Run: python3 scripts/reference/spm_tokenizer_ids.py
"""
import json
import os
import shutil
import sys
import tempfile

# This file sits beside one named like the `tokenizers` package: keep its own folder off the import path.
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import importlib.util

import sentencepiece as spm
import tokenizers
import transformers

# The fixture writers of tokenizer_ids.py (loaded by path: its folder is off the import path, see above).
_spec = importlib.util.spec_from_file_location("tokenizer_ids", os.path.join(HERE, "tokenizer_ids.py"))
tokenizer_ids = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(tokenizer_ids)
cases, write = tokenizer_ids.cases, tokenizer_ids.write

ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "Tests", "Fixtures", "tokenizers")
GEMMA = "/work/models/gemma-3-270m-q4_k_m.gguf"
VERSIONS = {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
            "sentencepiece": spm.__version__}

EXTRA = [
    "", " ", "hello", " hello", "  hello", "hello  world", "a\tb\t\tc", "\t\t\t", "x\n\n\ny", "\n\n\n\n",
    "        eight spaces", "end with spaces    ", "<bos>hello", "<start_of_turn>user\nHi there!<end_of_turn>\n"
    "<start_of_turn>model\n", "<start_of_turn>", "<end_of_turn>", "<eos>", "<pad><unk><mask>", "[multimodal]",
    "<start_of_image>", "text <start_of_turn> spaced <end_of_turn> ", "<start_of", "▁already▁metaspace",
    "▁", "▁▁x", "ünïcödé 😀 ok", "𝕳𝖊𝖑𝖑𝖔", "\u0000", "日本語", "🏳️‍🌈", "def f(x):\n\treturn x  # two\n",
]


def corpus():
    with open(os.path.join(OUT, "corpus.json"), encoding="utf-8") as fh:
        texts = json.load(fh)
    return texts + [t for t in EXTRA if t not in texts]


def gguf_tokenizer(path):
    """transformers' tokenizer for a GGUF file (it wants a folder and a file name)."""
    from transformers import AutoTokenizer
    d = tempfile.mkdtemp()
    try:
        os.symlink(path, os.path.join(d, "model.gguf"))
        return AutoTokenizer.from_pretrained(d, gguf_file="model.gguf")
    finally:
        shutil.rmtree(d)


def gemma(texts):
    hf = gguf_tokenizer(GEMMA)
    backend = hf.backend_tokenizer
    for t in texts:
        assert hf(t, add_special_tokens=True)["input_ids"] == backend.encode(t).ids, t

    # Special tokens in the text left as plain text (HF split_special_tokens, llama.cpp parse_special=false).
    backend.encode_special_tokens = True
    plain = [{"text": t, "ids": backend.encode(t).ids} for t in texts if "<" in t]
    backend.encode_special_tokens = False
    # Byte-fallback tokens alone and broken: "€" is E2 82 AC, its tokens <0xE2> <0x82> <0xAC>.
    vocab = backend.get_vocab()
    e2, x82, xac = vocab["<0xE2>"], vocab["<0x82>"], vocab["<0xAC>"]
    odd = [[e2], [e2, x82], [x82, xac], [e2, x82, xac], [xac, e2, x82, xac, e2], [e2, 2, x82, xac]]
    write("gemma3-gguf.json", {
        "versions": VERSIONS, "source": "AutoTokenizer.from_pretrained(dir, gguf_file=gemma-3-270m-q4_k_m.gguf)",
        "vocabularySize": len(vocab), "cases": cases(backend, texts), "specialTokensAsText": plain,
        "decodes": [{"ids": ids, "decoded": backend.decode(ids, skip_special_tokens=False)} for ids in odd],
    })
    print("gemma3: vocabulary", len(vocab), "cases", len(texts))


TRAIN = [
    "the cat sat on the mat", "the dog ate the bone", "a cat and a dog", "then there was the end",
    "hello there hello world", "at the theatre", "cats and dogs", "def hello(name):\n    return name",
    "The quick brown fox jumps over the lazy dog.", "1234 5678 numbers 42", "café naïve résumé",
    "Русский текст", "中文文本", "  leading and   inner spaces", "tabs\tand\nnewlines",
]


def train(model_type, vocab_size):
    from transformers.convert_slow_tokenizer import SpmConverter, import_protobuf
    d = tempfile.mkdtemp()
    try:
        with open(os.path.join(d, "train.txt"), "w", encoding="utf-8") as fh:
            fh.write("\n".join(TRAIN * 30) + "\n")
        prefix = os.path.join(d, "m")
        spm.SentencePieceTrainer.train(
            input=os.path.join(d, "train.txt"), model_prefix=prefix, model_type=model_type, vocab_size=vocab_size,
            byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
            add_dummy_prefix=True, split_digits=True, character_coverage=1.0, hard_vocab_limit=False,
            bos_id=1, eos_id=2, unk_id=0, pad_id=-1, minloglevel=2, num_threads=1)
        processor = spm.SentencePieceProcessor(model_file=prefix + ".model")
        proto = import_protobuf().ModelProto()
        with open(prefix + ".model", "rb") as fh:
            proto.ParseFromString(fh.read())
    finally:
        shutil.rmtree(d)
    pieces = [(p.piece, p.score) for p in proto.pieces]
    vocab = {p: i for i, (p, _) in enumerate(pieces)} if model_type == "bpe" else pieces
    tok = SpmConverter.build_tokenizer_from_spm_proto(proto, vocab, legacy=False)
    # The special pieces as transformers adds them, and BOS in front (LlamaTokenizer's post-processor).
    tok.add_special_tokens([tokenizers.AddedToken(p.piece, special=True, normalized=False)
                            for p in proto.pieces if p.type in (2, 3)])
    tok.post_processor = tokenizers.processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok, processor


def sentencepiece_models(texts):
    for name, model_type, size in (("spm-bpe", "bpe", 420), ("spm-unigram", "unigram", 420)):
        tok, processor = train(model_type, size)
        os.makedirs(os.path.join(OUT, name), exist_ok=True)
        tok.save(os.path.join(OUT, name, "tokenizer.json"))
        own = cases(tok, texts)
        # SentencePiece itself, for the report: where the converted tokenizer differs from the original.
        differ = [t for t in texts if [1] + processor.encode(t) != tok.encode(t).ids]
        write(f"{name}.json", {"versions": VERSIONS, "cases": own, "sentencePieceDiffers": differ})
        print(name, "vocabulary", tok.get_vocab_size(), "cases", len(texts), "SentencePiece differs on", len(differ))


def main():
    texts = corpus()
    sentencepiece_models(texts)
    if os.path.exists(GEMMA):
        gemma(texts)
    else:
        print("skipping Gemma 3:", GEMMA, "is absent")


if __name__ == "__main__":
    main()
