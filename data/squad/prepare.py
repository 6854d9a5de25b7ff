"""
SQuAD v1.1 (Rajpurkar et al. 2016, CC BY-SA 4.0): extractive QA on Wikipedia paragraphs, scored by
exact match and F1 (data.tasks.score_squad, the official v1.1 normalisation).

    python data/squad/prepare.py --src ../shared/data/squad_v1.1    # a local copy: no network
    python data/squad/prepare.py                                     # download, checked by sha256
    python -m data.squad.prepare --src ../shared/data/squad_v1.1 --out_dir /tmp/squad

Writes into --out_dir (default: this folder):
    dev.jsonl             the complete official dev set (10,570 questions): report numbers on this
    train.jsonl           the official train set (87,599), when --src holds train-v1.1.json or when
                          downloading
    devsplit_train.jsonl  "dev-split protocol", for machines without the train file: the dev
    devsplit_eval.jsonl   articles split in order, the first 38 to fine-tune, the last 10 to evaluate
                          (label numbers on devsplit_eval "dev-split protocol"; never mix with dev)
Row: id (question id), input "question: ... context: ...", target (first gold answer), answers (all
gold answers, duplicates kept as in the file).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from data.common import cli, download, read_json, write_jsonl, write_meta  # noqa: E402

BASE = "https://rajpurkar.github.io/SQuAD-explorer/dataset/"
FILES = {  # split -> (canonical file name, sha256)
    "train": ("train-v1.1.json", "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955"),
    "dev": ("dev-v1.1.json", "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"),
}
# a rebuilt copy of the dev set (answer_start approximated, which EM/F1 never read)
LOCAL_ALIASES = {"dev": ["dev-v1.1.json", "dev-v1.1.reconstructed.json"], "train": ["train-v1.1.json"]}


def articles_to_rows(articles, path):
    rows = []
    for article in articles:
        for paragraph in article["paragraphs"]:
            context = paragraph["context"].strip()
            for qa in paragraph["qas"]:
                answers = [a["text"] for a in qa["answers"]]
                if not answers:
                    raise ValueError(f"{path}: question {qa['id']} has no answer (not SQuAD v1.1?)")
                rows.append({"id": qa["id"],
                             "input": f"question: {qa['question'].strip()} context: {context}",
                             "target": answers[0], "answers": answers})
    return rows


def find_local(src, split):
    for name in LOCAL_ALIASES[split]:
        if os.path.exists(os.path.join(src, name)):
            return os.path.join(src, name)
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--src", default=None,
                        help="local folder with dev-v1.1.json (or dev-v1.1.reconstructed.json) and "
                             "optionally train-v1.1.json (default: download both)")
    parser.add_argument("--out_dir", default=os.path.dirname(os.path.abspath(__file__)),
                        help="where to write the splits and meta.json (default: data/squad)")
    parser.add_argument("--devsplit_eval_articles", type=int, default=10,
                        help="dev-split protocol: the last N dev articles evaluate, the rest train")
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)

    paths, sources = {}, []
    for split, (name, sha256) in FILES.items():
        if args.src:
            paths[split] = find_local(args.src, split)
            if paths[split] is None and split == "dev":
                raise FileNotFoundError(f"--src {args.src}: no {' or '.join(LOCAL_ALIASES['dev'])} there")
        else:
            paths[split] = download(BASE + name, os.path.join(args.out_dir, "raw", name), sha256)
        if paths[split]:
            sources.append(os.path.abspath(paths[split]) if args.src else BASE + name)

    counts, dev_articles = {}, None
    for split, path in paths.items():
        if path:
            articles = read_json(path)["data"]
            rows = articles_to_rows(articles, path)
            write_jsonl(os.path.join(args.out_dir, f"{split}.jsonl"), rows)
            counts[split] = len(rows)
            if split == "dev":
                dev_articles = articles
    n_eval = args.devsplit_eval_articles
    if not 0 < n_eval < len(dev_articles):
        raise ValueError(f"--devsplit_eval_articles must be in 1..{len(dev_articles) - 1}")
    for split, articles in (("devsplit_train", dev_articles[:-n_eval]),
                            ("devsplit_eval", dev_articles[-n_eval:])):
        rows = articles_to_rows(articles, paths["dev"])
        write_jsonl(os.path.join(args.out_dir, f"{split}.jsonl"), rows)
        counts[split] = len(rows)

    n_train = len(dev_articles) - n_eval
    meta = {
        "task": "squad", "metric": "squad", "splits": counts, "sources": sources,
        "license": "CC BY-SA 4.0 (SQuAD v1.1)",
        "notes": f"dev = the complete official dev set: report numbers on it. devsplit_train / "
                 f"devsplit_eval = dev-split protocol (the first {n_train} dev articles to fine-tune, "
                 f"the last {n_eval} to evaluate, for when train-v1.1.json is unavailable): label such "
                 f"numbers 'dev-split protocol'; they are not comparable with official dev numbers."
                 + ("" if "train" in counts else " No train split: train-v1.1.json was not given."),
    }
    write_meta(args.out_dir, meta, __file__, argv)
    print(f"squad: {counts} -> {args.out_dir}")
    return meta


if __name__ == "__main__":
    cli(main)
