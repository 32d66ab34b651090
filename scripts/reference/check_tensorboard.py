"""Checks that TensorBoard reads what Lathe's training commands write to OUTPUT/tb, and finds metrics.jsonl in it.

    python3 scripts/reference/check_tensorboard.py [RUN ...]      (needs `pip install tensorboard`; checked with 2.21.0)
Without RUN: runs a 3-step `lathe sft` of SmolLM2 on the bundled orders data (validation every 2 steps, a checkpoint
at step 2), then resumes it from that checkpoint (as after a kill at step 3), so that the run has two event files
and TensorBoard must drop the first file's step 3. The binary is $LATHE or .build/debug/lathe.

For each run folder: every record's two masked CRC32Cs (tensorboard's own crc code), the first event's
file_version, then tensorboard's EventAccumulator over OUTPUT/tb against metrics.jsonl (the last line of a step
wins, as after a resume): the same (tag, step) pairs, each value equal to metrics.jsonl's rounded to float32, and
a tag ending in `loss` with one value per training step.
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import tensorboard
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.compat.proto import event_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LATHE = os.environ.get("LATHE", os.path.join(ROOT, ".build", "debug", "lathe"))
NOT_PLOTTED = {"step", "total_steps", "eta_s"}


def tag(key):
    """metrics.jsonl's key as Lathe tags it (transformers' rewrite_logs, with lr as learning_rate)."""
    if key.startswith("eval_"):
        return "eval/" + key[len("eval_"):]
    return "train/" + ("learning_rate" if key == "lr" else key)


def records(path):
    """The Event messages of one file, each record's CRCs checked."""
    data = open(path, "rb").read()
    at, events = 0, []
    while at < len(data):
        header = data[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (header_crc,) = struct.unpack("<I", data[at + 8:at + 12])
        assert header_crc == masked_crc32c(header), f"{path}: bad length CRC at byte {at}"
        body = data[at + 12:at + 12 + length]
        (body_crc,) = struct.unpack("<I", data[at + 12 + length:at + 16 + length])
        assert body_crc == masked_crc32c(body), f"{path}: bad data CRC at byte {at}"
        events.append(event_pb2.Event.FromString(body))
        at += 16 + length
    return events


def check(run):
    tb = os.path.join(run, "tb")
    files = sorted(f for f in os.listdir(tb) if "tfevents" in f)
    assert files, f"{tb}: no event files"
    count = 0
    for name in files:
        events = records(os.path.join(tb, name))
        assert events[0].file_version == "brain.Event:2", f"{name}: first event {events[0]}"
        count += len(events)
    expected, train_steps = {}, set()
    for line in open(os.path.join(run, "metrics.jsonl")):
        row = json.loads(line)
        if "loss" in row:
            train_steps.add(row["step"])
        for key, value in row.items():
            if key not in NOT_PLOTTED:
                expected[(tag(key), row["step"])] = value
    acc = event_accumulator.EventAccumulator(tb, size_guidance={event_accumulator.SCALARS: 0})
    acc.Reload()
    seen = {}
    for t in acc.Tags()["scalars"]:
        for e in acc.Scalars(t):
            assert (t, e.step) not in seen, f"{t} has two values at step {e.step}"
            seen[(t, e.step)] = e.value
    assert set(seen) == set(expected), f"only in TensorBoard: {sorted(set(seen) - set(expected))}, " \
                                       f"only in metrics.jsonl: {sorted(set(expected) - set(seen))}"
    worst = 0.0
    for key, value in expected.items():
        assert np.float32(seen[key]) == np.float32(value), f"{key}: TensorBoard {seen[key]}, metrics.jsonl {value}"
        worst = max(worst, abs(seen[key] - value) / max(abs(value), 1e-30))
    losses = [t for t in acc.Tags()["scalars"] if t.split("/")[-1] == "loss" and
              sorted(e.step for e in acc.Scalars(t)) == sorted(train_steps)]
    assert losses, f"no loss tag with one value per training step {sorted(train_steps)}"
    print(f"{run}: {len(files)} event files, {count} records with valid CRCs; {len(seen)} scalars in "
          f"{len(acc.Tags()['scalars'])} tags equal metrics.jsonl's (float32; largest relative rounding {worst:.1e}); "
          f"per-step loss tag {losses[0]}: {[round(e.value, 4) for e in acc.Scalars(losses[0])]}")


def train():
    run = os.path.join(tempfile.mkdtemp(prefix="lathe-tb-check-"), "run")
    valid = os.path.join(os.path.dirname(run), "valid.jsonl")
    with open(os.path.join(ROOT, "examples", "orders", "valid.jsonl")) as f, open(valid, "w") as out:
        out.writelines(f.readlines()[:8])
    args = [LATHE, "sft", os.path.join(ROOT, "examples", "orders", "sft.yaml"), "--output", run, "--valid", valid,
            "--max-steps", "3", "--save-every", "2", "--eval-every", "2"]
    subprocess.run(args, check=True, cwd=ROOT)
    subprocess.run(args + ["--resume"], check=True, cwd=ROOT)
    return run


def main():
    print(f"tensorboard {tensorboard.__version__}")
    for run in sys.argv[1:] or [train()]:
        check(run)


if __name__ == "__main__":
    main()
