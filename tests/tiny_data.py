"""A tiny byte-level corpus and task, written by the training tests, and the flags of a tiny run."""
import os
import random

import pytest
import torch

from data.common import write_corpus, write_json, write_jsonl
from data.tokenizer import get_tokenizer

WORDS = "the cat sat on a mat and the dog ran to the red ball".split()


def write_tiny_corpus(folder, docs=300, seed=0):
    """Short repetitive sentences (fast to learn) as train.bin / val.bin / meta.json."""
    tok, rng = get_tokenizer("byte"), random.Random(seed)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16))) + "." for _ in range(docs)]
    write_corpus(os.fspath(folder), [("tiny", tok.encode(t)) for t in texts], tok, 0.2, {})
    return os.fspath(folder)


def write_tiny_task(folder, train=48, validation=12, seed=0):
    """'reverse: abc' -> 'cba' as train.jsonl / validation.jsonl / meta.json."""
    rng = random.Random(seed)

    def rows(n, split):
        out = []
        for i in range(n):
            word = "".join(rng.choice("abcdef") for _ in range(rng.randint(2, 6)))
            out.append(dict(id=f"{split}-{i}", input=f"reverse: {word}", target=word[::-1]))
        return out
    write_jsonl(os.path.join(folder, "train.jsonl"), rows(train, "train"))
    write_jsonl(os.path.join(folder, "validation.jsonl"), rows(validation, "validation"))
    write_json(os.path.join(folder, "meta.json"), {"task": "reverse", "metric": "exact_match"})
    return os.fspath(folder)


def tiny_flags(data, out_dir, **overrides):
    """train.py flags of a run that takes well under a second per ten steps on a CPU."""
    flags = dict(data=data, out_dir=out_dir, model="tiny", block_size=32, batch_size=8, micro_batch_size=4,
                 max_steps=8, eval_interval=4, eval_examples=8, eval_batch_size=4, warmup_steps=2, lr=3e-3)
    flags.update(overrides)
    return [s for k, v in flags.items() for s in (f"--{k}", str(v))]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one thread is fastest and does not fight other work on the machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def set_fixed_logits(model, logits):
    """Make every position's logits these {id: value} (0 for other ids), whatever the input: the final
    hidden state is e_0 for every input and the (tied) embeddings set each id's logit along it."""
    with torch.no_grad():
        model.transformer.ln_f.weight.zero_()
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 1.0
        model.transformer.wte.weight[:, 0] = 0.0
        for i, v in logits.items():
            model.transformer.wte.weight[i, 0] = v
    return model
