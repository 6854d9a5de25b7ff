"""Data preparation: the embedded synthetic world (tasks + pretraining text) and the real pretraining
corpora (local mixture, FineWeb-Edu --src path). Seeded, CPU, a few seconds each."""
import gzip
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from data.common import read_json, read_jsonl
from data.embedded import prepare as embedded
from data.tokenizer import WORD_PIECES, get_tokenizer

TASKS = {"translation": "bleu", "qa": "squad", "code": "pass@k"}
SPLITS = ("train", "validation", "test")
SMALL = ["--train", "200", "--validation", "40", "--test", "40", "--pretrain_tokens", "100000"]


def corpus_docs(folder, split):
    """Documents of a .bin corpus as token arrays (split at eos), with the tokenizer of its meta."""
    meta = read_json(os.path.join(folder, "meta.json"))
    tok = get_tokenizer(meta["tokenizer"])
    ids = np.fromfile(os.path.join(folder, f"{split}.bin"), dtype=np.uint16)
    assert len(ids) == meta[f"{split}_tokens"]
    assert len(ids) == 0 or ids[-1] == tok.eos_id  # every document, the last included, ends with eos
    cuts = np.flatnonzero(ids == tok.eos_id)
    return tok, np.split(ids, cuts + 1)[:-1]


def run_candidate(row, completion):
    """How the pass@k evaluation runs a completion (our own code here, so a plain exec)."""
    program = row["test_setup_code"] + "\n" + completion + "\n" + "\n".join(row["test_list"])
    try:
        exec(program, {})
        return True
    except Exception:
        return False


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The embedded default at its default sizes, generated once for the module (~4 s)."""
    out = tmp_path_factory.mktemp("embedded")
    embedded.prepare(embedded.get_args(["--out_dir", str(out)]))
    rows = {t: {s: read_jsonl(out / t / f"{s}.jsonl") for s in SPLITS} for t in TASKS}
    return out, rows


def test_embedded_deterministic_by_seed(tmp_path):
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        embedded.prepare(embedded.get_args(SMALL + ["--seed", seed, "--out_dir", str(tmp_path / name)]))
    files = sorted(str(p.relative_to(tmp_path / "a")) for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files) == 3 * 4 + 3
    for f in files:  # meta.json holds no command here, so every file must match byte for byte
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    for f in ["pretrain/train.bin"] + [f"{t}/{s}.jsonl" for t in TASKS for s in SPLITS]:
        assert (tmp_path / "a" / f).read_bytes() != (tmp_path / "c" / f).read_bytes(), f


def test_embedded_tasks_contract(world):
    out, rows = world
    for task, metric in TASKS.items():
        meta = read_json(out / task / "meta.json")
        assert meta["task"] == task and meta["metric"] == metric
        assert meta["splits"] == {"train": 4000, "validation": 200, "test": 200}
        assert meta["sources"] and meta["license"] and meta["notes"]
        ids = [r["id"] for s in SPLITS for r in rows[task][s]]
        assert len(ids) == len(set(ids)) == 4400
        for split in SPLITS:
            assert len(rows[task][split]) == meta["splits"][split]
            for r in rows[task][split]:
                assert isinstance(r["input"], str) and isinstance(r["target"], str) and r["target"]
                # one byte per character; every prefix fits the 256-token block beside the task's
                # longest target + eos + a spare (diffusion pads all targets to the longest)
                limit = embedded.TARGET_BYTES[task]
                assert len(r["target"].encode()) <= limit and len(r["input"].encode()) + limit + 2 <= 256, r["id"]
                assert r["input"].isascii() and r["target"].isascii()
        # no validation/test example is also a train example (nothing to memorise)
        train = {r["input"] for r in rows[task]["train"]} | {r["target"] for r in rows[task]["train"]}
        if task == "qa":  # short answers repeat across examples by design; contexts must not
            train = {r["input"] for r in rows[task]["train"]}
        held = [r for s in ("validation", "test") for r in rows[task][s]]
        assert not [r["id"] for r in held if r["input"] in train or (task != "qa" and r["target"] in train)]


def test_embedded_task_lengths_follow_the_paper(world):
    """QA answers are short, translations and functions longer, as in SQuAD vs WMT / MBPP."""
    _, rows = world
    mean = {t: np.mean([len(r["target"]) for r in rows[t]["train"]]) for t in TASKS}
    assert 2 <= mean["qa"] <= 10
    assert 20 <= mean["translation"] <= 60 and 25 <= mean["code"] <= 80
    assert all(r["input"].startswith("translate English to French: ") for r in rows["translation"]["test"])


def test_embedded_qa_answers_are_context_spans(world):
    _, rows = world
    kinds = set()
    for split in SPLITS:
        for r in rows["qa"][split]:
            question, context = r["input"].split(" context: ")
            assert question.startswith("question: ")
            assert r["answers"] == [r["target"]] and r["target"] in context
            kinds.add(r["target"][0].isupper())
    assert kinds == {True, False}  # names and cities as well as common words


def test_embedded_code_targets_pass_and_wrong_functions_fail(world):
    _, rows = world
    all_rows = [r for s in SPLITS for r in rows["code"][s]]
    moved = checked = 0
    for r in all_rows:
        assert len(r["test_list"]) == 3 and r["test_setup_code"] == ""
        # the prompt is one line that names the function and its argument, as the target's head does
        assert "\n" not in r["input"] and r["target"].split("\n")[0][4:-1] in r["input"]
        assert run_candidate(r, r["target"]), r["id"]
        head = r["target"].split("\n")[0]
        assert not run_candidate(r, head + "\n    return None"), r["id"]
        assert not run_candidate(r, ""), r["id"]
        # a constant moved by one: the tests were drawn to catch it
        body = r["target"][len(head):]
        numbers = list(re.finditer(r"\b\d+\b", body))
        if numbers:
            n = numbers[-1]
            wrong = head + body[:n.start()] + str(int(n.group()) + 1) + body[n.end():]
            checked += 1
            moved += not run_candidate(r, wrong)
    assert checked > 1000 and moved / checked > 0.95
    # and another example's function, renamed, fails this one's tests
    swapped = [run_candidate(r, re.sub(r"def \w+", "def " + r["target"][4:r["target"].index("(")], o["target"], 1))
               for r, o in zip(all_rows, all_rows[1:] + all_rows[:1])]
    assert sum(swapped) / len(swapped) < 0.02


def test_embedded_heldout_examples_not_in_pretraining(world):
    out, rows = world
    texts = []
    for split in ("train", "val"):
        tok, docs = corpus_docs(out / "pretrain", split)
        texts += [tok.decode(d) for d in docs]
    text = "\n".join(texts)
    assert len(text) > 1_500_000
    for split in ("validation", "test"):
        for r in rows["translation"][split]:
            assert r["input"].split(": ", 1)[1] not in text and r["target"] not in text, r["id"]
        for r in rows["qa"][split]:
            assert r["input"].split(" context: ")[1] not in text, r["id"]
        for r in rows["code"][split]:
            assert r["target"] not in text, r["id"]
    # the same world is there, though: the skills transfer, the examples do not
    assert "English: " in text and "French: " in text and "def " in text and "Where does " in text


def test_embedded_pretraining_meta_and_mixture(world):
    out, rows = world
    meta = read_json(out / "pretrain" / "meta.json")
    tok = get_tokenizer(meta["tokenizer"])  # the words tokenizer, its list kept in meta.json
    assert tok.name == "words" and 250 < len(tok.vocab) < 1000
    for task in TASKS:  # the list covers the world: no held-out word falls back to bytes
        for r in rows[task]["test"]:
            for piece in WORD_PIECES.findall(" " + r["input"]) + WORD_PIECES.findall(" " + r["target"]):
                assert len(piece) == 1 or piece in tok.vocab, (r["id"], piece)
    assert len(tok.encode(rows["qa"]["test"][0]["target"])) == 1
    assert meta["train_tokens"] + meta["val_tokens"] == 2_000_000
    assert abs(meta["val_tokens"] / 2_000_000 - 0.05) < 0.005
    mix = {s["name"]: s["fraction"] for s in meta["sources"]}
    expected = {"english": 0.05, "french": 0.05, "facts": 0.2, "code": 0.25, "bilingual": 0.45}
    assert mix == pytest.approx(expected, abs=1e-3)
    n_docs = sum(len(corpus_docs(out / "pretrain", s)[1]) for s in ("train", "val"))
    assert n_docs == sum(s["docs"] for s in meta["sources"])


def test_embedded_baselines_in_meta(world):
    out, _ = world
    b = {t: read_json(out / t / "meta.json")["baselines"] for t in TASKS}
    for split in ("validation", "test"):
        assert 0 <= b["translation"][split]["copy_input"] < 5  # names and cities are all that match
        assert b["translation"][split]["copy_input"] < b["translation"][split]["word_by_word_dictionary"] < 50
        assert b["qa"][split]["empty"] == {"em": 0.0, "f1": 0.0}
        assert 0 < b["qa"][split]["most_frequent_answer_of_kind"]["f1"] < 45
        assert 10 < b["qa"][split]["first_value"]["f1"] < 60  # the question must be read
        assert "first_span_of_kind" not in b["qa"][split]  # one person: it would always be right
        assert b["code"][split]["empty_function_pass_rate"] == 0.0


def test_embedded_squad_metric_normalises():
    assert embedded.squad_em_f1("The Paris!", ["paris"]) == (100.0, 100.0)
    assert embedded.squad_em_f1("", ["Paris"]) == (0.0, 0.0)
    em, f1 = embedded.squad_em_f1("a red car", ["red bike"])
    assert em == 0 and f1 == pytest.approx(50.0)


def test_embedded_difficulty_knobs(tmp_path):
    embedded.prepare(embedded.get_args(SMALL + ["--out_dir", str(tmp_path / "easy"), "--code_families", "arith"]))
    embedded.prepare(embedded.get_args(SMALL + ["--out_dir", str(tmp_path / "hard"), "--people", "3"]))
    # more people per context: the asked fact gets a distractor of the same kind, so a reader that
    # ignores the name (first span of the right kind) is right only about half the time
    hard = read_json(tmp_path / "hard" / "qa" / "meta.json")["baselines"]["test"]["first_span_of_kind"]["em"]
    assert 20 < hard < 70
    for r in read_jsonl(tmp_path / "hard" / "qa" / "train.jsonl"):
        assert len({s.split()[0] for s in r["input"].split(" context: ")[1].split(". ")}) == 3
    code = read_jsonl(tmp_path / "easy" / "code" / "train.jsonl")
    assert all("[" not in r["target"] and '"' not in r["target"] and "(" not in r["target"][4:].split("\n")[1]
               for r in code)  # arithmetic only: no lists, strings or calls


def test_embedded_byte_tokenizer(tmp_path):
    embedded.prepare(embedded.get_args(SMALL + ["--out_dir", str(tmp_path), "--tokenizer", "byte"]))
    tok, docs = corpus_docs(tmp_path / "pretrain", "train")
    assert tok.state() == get_tokenizer("byte").state() and len(docs) > 100
    assert all(tok.decode(d).isascii() for d in docs[:50])


def test_embedded_gpt2_tokenizer(tmp_path, shared_data):
    embedded.prepare(embedded.get_args(SMALL + ["--out_dir", str(tmp_path), "--tokenizer", "gpt2"]))
    tok, docs = corpus_docs(tmp_path / "pretrain", "train")
    assert tok.name == "gpt2" and len(docs) > 100
    assert all(tok.decode(d).isascii() for d in docs[:50])


def test_cli_forms_and_errors(root):
    env = dict(os.environ, PYTHONPATH="")
    for cmd in (["data/embedded/prepare.py"], ["-m", "data.embedded.prepare"], ["data/pretrain/prepare.py"],
                ["-m", "data.fineweb_edu.prepare"]):
        r = subprocess.run([sys.executable, *cmd, "--help"], cwd=root, env=env, capture_output=True, text=True)
        assert r.returncode == 0 and "python" in r.stdout, (cmd, r.stderr)
    argv = ["data/embedded/prepare.py", "--mix", "english=0.5", "--out_dir", "/nonexistent"]
    # refused before anything is written
    r = subprocess.run([sys.executable, *argv], cwd=root, env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "--mix" in r.stderr and "Traceback" not in r.stderr


# ------------------------------------------------------------------------------------------------
# Real corpora

def test_pretrain_local_mixture(tmp_path, shared_data):
    from data.pretrain import prepare as pretrain
    src = shared_data / "pretrain"
    args = ["--src", str(src), "--max_tokens", "150000", "--val_frac", "0.05", "--code_frac", "0.25"]
    pretrain.main(args + ["--out_dir", str(tmp_path / "a")])
    meta = read_json(tmp_path / "a" / "meta.json")
    total = meta["train_tokens"] + meta["val_tokens"]
    assert total == 150_000 and {s["name"] for s in meta["sources"]} == set(sum(pretrain.GROUPS.values(), []))
    code = sum(s["tokens"] for s in meta["sources"] if s["name"] in pretrain.GROUPS["code"])
    assert abs(code / total - 0.25) < 0.01
    assert meta["val_tokens"] > 0 and sum(s["tokens"] for s in meta["sources"]) == total
    # every document decodes back to a source document (at most one per group was cut to fit)
    originals = {text for name in sum(pretrain.GROUPS.values(), [])
                 for _, text in pretrain.read_jsonl_texts(str(src / f"{name}.jsonl.gz"), name)}
    n_docs, cut = 0, 0
    for split in ("train", "val"):
        tok, docs = corpus_docs(tmp_path / "a", split)
        for d in docs:
            assert tok.eos_id not in d[:-1]
            text = tok.decode(d)
            n_docs += 1
            if text not in originals:
                cut += 1
                assert any(o.startswith(text.rstrip("\ufffd")) for o in originals)
    assert n_docs == sum(s["docs"] for s in meta["sources"]) and cut <= 2
    # deterministic by seed
    pretrain.main(args + ["--out_dir", str(tmp_path / "b")])
    assert (tmp_path / "a" / "train.bin").read_bytes() == (tmp_path / "b" / "train.bin").read_bytes()


def test_fineweb_edu_local_src(tmp_path):
    from data.fineweb_edu import prepare as fineweb
    texts = [f"Lesson {i}: the water cycle moves water between sea, air and land. " * (1 + i % 5) for i in range(200)]
    src = tmp_path / "shard.jsonl.gz"
    with gzip.open(src, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts))
    fineweb.main(["--src", str(src), "--out_dir", str(tmp_path / "out"), "--tokenizer", "byte", "--val_frac", "0.05"])
    meta = read_json(tmp_path / "out" / "meta.json")
    decoded = []
    for split in ("val", "train"):
        tok, docs = corpus_docs(tmp_path / "out", split)
        decoded += [tok.decode(d) for d in docs]
    assert sorted(decoded) == sorted(texts)
    assert meta["sources"][0]["name"] == "fineweb_edu" and meta["sources"][0]["docs"] == 200
    assert 0 < meta["val_tokens"] <= 0.05 * (meta["train_tokens"] + meta["val_tokens"])
    # a malformed line is reported with its file and line number
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(SystemExit, match=r"bad.jsonl:2"):
        fineweb.main(["--src", str(bad), "--out_dir", str(tmp_path / "bad"), "--tokenizer", "byte"])


def test_fineweb_edu_parquet_src(tmp_path):
    pa = pytest.importorskip("pyarrow")  # optional: only users who download shards need it
    import pyarrow.parquet as pq
    from data.fineweb_edu import prepare as fineweb
    texts = [f"Document {i} about photosynthesis." for i in range(50)]
    pq.write_table(pa.table({"text": texts, "id": list(range(50))}), tmp_path / "000_00000.parquet")
    fineweb.main(["--src", str(tmp_path), "--out_dir", str(tmp_path / "out"), "--tokenizer", "byte",
                  "--val_frac", "0.1"])
    decoded = []
    for split in ("val", "train"):
        tok, docs = corpus_docs(tmp_path / "out", split)
        decoded += [tok.decode(d) for d in docs]
    assert sorted(decoded) == sorted(texts)


# ---------------------------------------------------------------------------------------------
# Multi30k En->Fr: a small fake copy laid out like the real files (gzipped, line-aligned)

def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in lines))


@pytest.fixture
def fake_multi30k(tmp_path):
    src, shared = tmp_path / "multi30k_enfr", tmp_path / "shared"
    src.mkdir()
    n = {"train": 60, "val": 6, "test_2016_flickr": 5, "test_2017_flickr": 4}
    for stem, count in n.items():
        write_gz(src / f"{stem}.en.gz", [f"A dog number {i} runs in {stem}." for i in range(count)])
        write_gz(src / f"{stem}.fr.gz", [f"Un chien numéro {i} court dans {stem}." for i in range(count)])
    # a held-out sentence that also appears (by chance) among the train captions must leave the corpus
    write_gz(src / "train.fr.gz", ["Un chien numéro 0 court dans val."] +
             [f"Un chien numéro {i} court dans train." for i in range(1, 60)])
    (shared / "wmt14_enfr").mkdir(parents=True)
    (shared / "pretrain").mkdir()
    for lang, word in (("en", "Parliament"), ("fr", "Parlement")):
        with open(shared / f"wmt14_enfr/europarl-v7.fr-en.subset20k.{lang}", "w", encoding="utf-8") as f:
            f.writelines(f"{word} line {i} ({lang}).\n" for i in range(40))
    with gzip.open(shared / "pretrain/english_nltk.jsonl.gz", "wt", encoding="utf-8") as f:
        for i in range(30):
            f.write(json.dumps({"source": "nltk/x", "id": str(i), "text": f"Some English prose {i}.\n\nMore."}) + "\n")
    return src, shared


def multi30k(*argv):
    from data.multi30k import prepare as m30k
    return m30k.main([str(a) for a in argv])


def test_multi30k_task_and_extra_split(fake_multi30k, tmp_path):
    src, _ = fake_multi30k
    out = tmp_path / "task"
    meta = multi30k("--src", src, "--out_dir", out, "--extra_splits", "test_2017_flickr")
    assert meta["task"] == "multi30k_enfr" and meta["metric"] == "bleu"
    assert read_json(out / "meta.json")["command"] == meta["command"] == \
        f"python data/multi30k/prepare.py --src {src} --out_dir {out} --extra_splits test_2017_flickr"
    assert meta["splits"] == {"train": 60, "validation": 6, "test": 5, "test_2017_flickr": 4}
    test = read_jsonl(out / "test.jsonl")
    assert [r["id"] for r in test] == list(range(5))  # file order: hypothesis files follow it
    assert test[2] == {"id": 2, "input": "translate English to French: A dog number 2 runs in test_2016_flickr.",
                       "target": "Un chien numéro 2 court dans test_2016_flickr."}
    assert read_jsonl(out / "test_2017_flickr.jsonl")[3]["target"] == "Un chien numéro 3 court dans test_2017_flickr."
    assert set(meta["baselines"]) == {"validation", "test", "test_2017_flickr"}
    assert 0 <= meta["baselines"]["test"]["copy the source"] < 100 and meta["baselines"]["test"]["empty output"] == 0
    tok = get_tokenizer(meta["tokenizer"])  # SentencePiece BPE of the train inputs and targets
    assert tok.name == "spm" and len(tok.encode("chien")) == 1 and tok.encode("Un chien")[-1:] == tok.encode("chien")
    assert len(tok.encode("translate English to French:")) <= 5  # the prompt's words are pieces, not bytes
    assert tok.decode(tok.encode(test[0]["target"])) == test[0]["target"]  # byte fallback: any text round-trips
    words = get_tokenizer(multi30k("--src", src, "--out_dir", tmp_path / "w", "--tokenizer", "words")["tokenizer"])
    assert words.name == "words" and " chien" in words.vocab
    # the task loads as evaluate.py loads it; a split the folder lacks names the ones it has
    from data.tasks import load_split
    assert len(load_split(str(out), "test_2017_flickr")) == 4
    with pytest.raises(FileNotFoundError, match=r"no such split.*'test', 'test_2017_flickr', 'train', 'validation'"):
        load_split(str(out), "test_2018_flickr")


def test_multi30k_pretraining_corpus_is_monolingual(fake_multi30k, tmp_path):
    src, shared = fake_multi30k
    meta = multi30k("--src", src, "--out_dir", tmp_path / "task", "--pretrain_src", shared,
                    "--pretrain_dir", tmp_path / "pre", "--val_frac", "0.1")
    cmeta = read_json(tmp_path / "pre" / "meta.json")
    assert {s["name"] for s in cmeta["sources"]} == {"multi30k_en", "multi30k_fr", "europarl_en", "europarl_fr",
                                                     "nltk_en"}
    assert cmeta["tokenizer"] == meta["tokenizer"] and cmeta["dropped_held_out_lines"]["multi30k_fr"] == 1
    tok, docs = corpus_docs(tmp_path / "pre", "train")
    _, val_docs = corpus_docs(tmp_path / "pre", "val")
    text = "\n".join(tok.decode(d[:-1]) for d in docs + val_docs)
    assert "dans val." not in text and "test_2016" not in text  # no held-out sentence, either side
    assert "Parliament line 5 (en)" in text and "Parlement line 5 (fr)" not in text  # first half En
    assert "Parlement line 25 (fr)" in text and "Parliament line 25 (en)" not in text  # second half Fr
    for d in docs:  # no document holds a caption beside its translation
        lines = tok.decode(d[:-1]).split("\n")
        assert not (any("A dog" in x for x in lines) and any("Un chien" in x for x in lines))


def test_multi30k_bad_input_names_flag_and_file(fake_multi30k, tmp_path, capsys):
    src, _ = fake_multi30k
    (src / "val.fr.gz").unlink()
    with pytest.raises(SystemExit):
        multi30k("--src", src, "--out_dir", tmp_path / "a")
    err = capsys.readouterr().err
    assert f"--src {src}: val.fr.gz is missing" in err
    (src / "val.fr.gz").write_bytes(b"not gzip at all")
    with pytest.raises(SystemExit):
        multi30k("--src", src, "--out_dir", tmp_path / "a")
    assert "--src" in (err := capsys.readouterr().err) and "val.fr.gz is malformed" in err
    write_gz(src / "val.fr.gz", ["Une ligne."])  # 1 line against 6 English lines
    with pytest.raises(SystemExit):
        multi30k("--src", src, "--out_dir", tmp_path / "a")
    assert "must be line-aligned" in capsys.readouterr().err
    write_gz(src / "val.fr.gz", [f"Ligne {i}." for i in range(6)])
    with pytest.raises(SystemExit):
        multi30k("--src", src, "--out_dir", tmp_path / "a", "--extra_splits", "test_2018_flickr")
    assert "test_2018_flickr.en.gz is missing" in capsys.readouterr().err


def test_humaneval_meta_records_the_command_that_remakes_it(tmp_path):
    """write_meta (shared by the real-data prepare scripts): meta.json keeps the command, as run."""
    from data.humaneval import prepare as humaneval
    problem = {"task_id": "HumanEval/0", "prompt": "def f(x):\n", "canonical_solution": "    return x\n",
               "test": "def check(f):\n    assert f(1) == 1\n", "entry_point": "f"}
    (tmp_path / "HumanEval.jsonl").write_text(json.dumps(problem) + "\n")
    meta = humaneval.main(["--src", str(tmp_path), "--out_dir", str(tmp_path / "out")])
    on_disk = read_json(tmp_path / "out" / "meta.json")
    assert on_disk == meta and list(meta)[-1] == "command"
    assert meta["command"] == f"python data/humaneval/prepare.py --src {tmp_path} --out_dir {tmp_path / 'out'}"
    assert meta["splits"] == {"test": 1} and read_jsonl(tmp_path / "out" / "test.jsonl")[0]["id"] == "HumanEval/0"
