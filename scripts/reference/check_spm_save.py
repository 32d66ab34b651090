"""Loads the SentencePiece tokenizers Lathe writes in Hugging Face `tokenizers`, transformers and transformers'
GGUF loader, and compares their ids with the committed fixtures (Tests/Fixtures/tokenizers/<name>.json).

Run the Swift tests that write them first:
  LATHE_KEEP_TOKENIZER_JSON=/tmp/lathe-spm-saved swift test --filter "SentencePieceTests/testSaved|SentencePieceTests/testSentencePieceGGUF"
  python3 scripts/reference/check_spm_save.py /tmp/lathe-spm-saved
"""
import importlib.util
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path = [p for p in sys.path if os.path.abspath(p or ".") != HERE]

import tokenizers
import transformers
from tokenizers import Tokenizer
from transformers import AutoTokenizer

_spec = importlib.util.spec_from_file_location("spm_tokenizer_ids", os.path.join(HERE, "spm_tokenizer_ids.py"))
spm_tokenizer_ids = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(spm_tokenizer_ids)

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(HERE)), "Tests", "Fixtures", "tokenizers")


def compare(label, encode, name):
    with open(os.path.join(FIXTURES, f"{name}.json"), encoding="utf-8") as fh:
        cases = json.load(fh)["cases"]
    bad = [c["text"] for c in cases if encode(c["text"]) != c["ids"]]
    print(f"{label}: {len(cases) - len(bad)}/{len(cases)} equal" + (f", differ on {[t[:30] for t in bad[:6]]}" if bad else ""))
    return not bad


def main(folder):
    print("tokenizers", tokenizers.__version__, "transformers", transformers.__version__)
    ok = True
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isdir(path):
            tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json"))
            ok &= compare(f"{name}: tokenizers", lambda t: tok.encode(t).ids, name)
            auto = AutoTokenizer.from_pretrained(path)
            ok &= compare(f"{name}: transformers {type(auto).__name__}", lambda t: auto(t)["input_ids"], name)
        elif name.endswith(".gguf"):
            auto = spm_tokenizer_ids.gguf_tokenizer(path)
            ok &= compare(f"{name}: transformers GGUF loader", lambda t: auto(t)["input_ids"], name[:-len(".gguf")])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/tmp/lathe-spm-saved")
