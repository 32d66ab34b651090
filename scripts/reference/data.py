"""Reference data for LatheData's dedup tests, and the 100k-row dedup benchmark set.

    python scripts/reference/data.py                      # writes Tests/Fixtures/data/near_duplicates.json
    python scripts/reference/data.py --benchmark OUT.jsonl # writes 100k rows for timing `lathe data dedup`:
        swift build -c release --product lathe
        time .build/release/lathe data dedup --input OUT.jsonl --output /tmp/kept.jsonl --near 0.8
    (about 10 s on the 2-core build machine, most of it JSON parsing; 19,038 near-duplicates dropped)

The fixture holds a small generated set with near-duplicate variants and what an all-pairs, brute-force
deduplication keeps (exact Jaccard over word 3-shingles after lower-casing and splitting on whitespace; a row
is dropped when it equals a kept row after normalising, or when its similarity with a kept row is at least
the threshold). Lathe's MinHash + LSH must keep the same rows.
"""
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def shingles(text, size=3):
    words = text.lower().split()
    if not words:
        return set()
    width = min(size, len(words))
    return {" ".join(words[i:i + width]) for i in range(len(words) - width + 1)}


def jaccard(a, b):
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def brute_force_kept(texts, threshold):
    kept, normalised_kept, sets = [], {}, []
    for i, text in enumerate(texts):
        normalised = " ".join(text.lower().split())
        s = shingles(text)
        if normalised in normalised_kept:
            continue
        if s and any(jaccard(s, sets[j]) >= threshold for j in kept if sets[j]):
            sets.append(s)
            continue
        sets.append(s)
        kept.append(i)
        normalised_kept[normalised] = i
    return kept


def generated_set(rng, documents, words_per_document, vocabulary_size):
    vocabulary = [f"w{i}" for i in range(vocabulary_size)]
    texts = []
    for _ in range(documents):
        words = [rng.choice(vocabulary) for _ in range(words_per_document)]
        texts.append(" ".join(words))
        for _ in range(rng.randint(0, 2)):
            variant = list(words)
            for _ in range(rng.randint(1, 5)):
                variant[rng.randrange(len(variant))] = rng.choice(vocabulary)
            text = " ".join(variant)
            texts.append(text.upper() if rng.random() < 0.2 else text)
    rng.shuffle(texts)
    return texts


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--benchmark":
        rng = random.Random(1)
        texts = generated_set(rng, 51_000, 60, 20_000)[:100_000]
        with open(sys.argv[2], "w") as f:
            for i, text in enumerate(texts):
                f.write(json.dumps({"id": i, "text": text}) + "\n")
        print(f"wrote {len(texts)} rows to {sys.argv[2]}")
        return
    rng = random.Random(6)
    texts = generated_set(rng, 40, 30, 500)
    cases = [{"threshold": t, "kept": brute_force_kept(texts, t)} for t in (0.5, 0.7, 0.8, 0.9)]
    out = ROOT / "Tests/Fixtures/data/near_duplicates.json"
    out.write_text(json.dumps({"texts": texts, "cases": cases}, indent=1) + "\n")
    print(f"wrote {out}: {len(texts)} rows, kept " + ", ".join(f"{len(c['kept'])} at {c['threshold']}" for c in cases))


if __name__ == "__main__":
    main()
