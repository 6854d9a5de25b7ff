"""
The embedded default: a small synthetic world, generated offline in seconds and deterministic by
--seed, that gives a pretraining corpus and three tasks mirroring the paper's (WMT14 En-Fr -> BLEU,
SQuAD -> EM/F1, MBPP -> pass@k), sized so that a ~1M-parameter model learns them on a 2-core CPU
within the minutes runs/tiny.sh gives it.

    python data/embedded/prepare.py                       # words tokenizer, seed 1337 -> data/embedded/
    python -m data.embedded.prepare --tokenizer byte --out_dir out/embedded_byte
    python -m data.embedded.prepare --tokenizer gpt2 --out_dir out/embedded_gpt2
    python data/embedded/prepare.py --people 2 --mix english=0.2,french=0.2,facts=0.2,code=0.2,bilingual=0.2

The world is deliberately small (~50 content words, plain ASCII, so one character is one byte):
every output token follows from a word of the input through a fixed dictionary or template, so a
tiny model can learn each task from a few thousand examples, while the combinations keep every
test input new.
  - English and a French-like second language: real French words with accents dropped and a
    deterministic grammar: word-by-word dictionary, adjective after the noun, articles and adjectives
    agree in gender and number (le/la/l'/les, un/une, vert/verte/verts/vertes), the verb agrees with
    its subject (voit/voient), "in <city>" -> "a <city>".
  - People with a city, a pet, a job and a favourite colour, ten values of each (re-drawn for
    every text), so a QA answer must be read from its context.
  - One-line Python functions in 4 families (arith, string, list, predicate), whose description
    says the constant in words ("times four" -> `* 4`).

Outputs (--out_dir, default this folder; the generated files are git-ignored):
  pretrain/{train.bin,val.bin,meta.json}    mixture by tokens (--mix): English/French sentence pairs
                                            and glossaries, profiles followed by questions and short
                                            answers, Python modules (a comment or docstring says what
                                            each function does) with asserts, and a little English
                                            and French running text
  translation/ (bleu)   "translate English to French: <sentence>" -> its French     (~15-60 bytes, 4-11 words)
  qa/ (squad)           "question: <q> context: <facts>" -> a span of the context   (3-7 bytes, one word)
  code/ (pass@k)        "Write a function f(x) that <what>." -> a Python function   (~30-60 bytes, 10-16 words)
                        (3 asserts per problem, all run; the prompt does not show them: at this
                        scale they would only lengthen it, and their numbers distract from the
                        description's)
  each {train,validation,test}.jsonl + meta.json, with trivial baselines (copying the input, a
  word-by-word dictionary, an empty, most-frequent or first answer, an empty function) in
  meta.json["baselines"].

No validation/test example appears in train or verbatim in the pretraining text (sentences, fact
paragraphs and functions that collide are re-drawn). Targets are at most 64 / 12 / 64 bytes and
every input fits beside its task's longest target + 2 in --max_len (256, the tiny model's block).

Difficulty knobs (defaults in brackets):
  --people N    [1]   people in each QA context. With N >= 2 the asked fact has a distractor of the
                      same kind about someone else, so the name must be read (SQuAD-like, but
                      beyond what the tiny model learns in minutes: it picks between the two)
  --code_families [arith,string,list,predicate]  function families
  --train/--validation/--test [4000/200/200] examples per task; --pretrain_tokens [2000000]
  --mix         share of each pretraining source; "bilingual" is the direct signal for translation,
                "facts" for QA and "code" for code: lowering one makes its task depend on fine-tuning
"""
import argparse
import functools
import os
import random
import re
import string
import sys
from collections import Counter

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from data.common import INT, cli, command_line, take_tokens, write_corpus, write_json, write_jsonl  # noqa: E402
from data.tokenizer import TOKENIZERS, Tokenizer, build_vocab, get_tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# The longest target of each task (bytes), and room for the EOS that ends a target plus one spare.
# Every input fits beside its task's longest target: a diffusion loader pads all targets of a task to
# one length (paper §3: the model learns the length from the padding) and must never cut a prefix.
TARGET_BYTES = {"translation": 64, "qa": 12, "code": 64}
SPECIALS = 2


def fits(prefix, target, task, max_len):
    budget = TARGET_BYTES[task]
    return len(target.encode()) <= budget and len(prefix.encode()) + budget + SPECIALS <= max_len

# ----------------------------------------------------------------------------------------------
# The lexicon. Nouns: English singular and plural, French singular, gender, class (P person,
# A animal, T thing, F food), and the French plural where the -s/-x rule does not give it.
NOUNS = """
boy boys garcon m P | girl girls fille f P | cat cats chat m A | dog dogs chien m A | bird birds oiseau m A
car cars voiture f T | apple apples pomme f F | cake cakes gateau m F
"""
# Adjectives: English, French masculine, feminine.
ADJECTIVES = "red rouge rouge | green vert verte | black noir noire | big grand grande"
# Verbs: English 3rd person singular and plural, French singular and plural, object classes
# ("-": intransitive). Subjects are always people or animals.
VERBS = ("sees see voit voient PATF | likes like aime aiment PATF | eats eat mange mangent F | "
         "sleeps sleep dort dorment -")
NUMBERS = {"two": "deux", "three": "trois"}
NAMES = "Ann Bob Leo Mia Sam Zoe Eva Max Tom Ida Ben Lea".split()
# The values of the facts: ten of each kind, so the answer is read from the context, not guessed
CITIES = "Paris Rome Oslo Berlin Madrid Lisbon Vienna Dublin Prague Athens".split()
JOBS = "baker pilot doctor nurse farmer teacher painter singer lawyer driver".split()
COLOURS = "red green black blue white yellow pink grey brown purple".split()
PETS = "cat dog bird fish horse rabbit mouse parrot turtle snake".split()


def parse_table(text):
    return [row.split() for row in re.split(r"[|\n]", text) if row.split()]


def french_plural(word):
    if word.endswith(("s", "x", "z")):
        return word
    return word + ("x" if word.endswith("eau") else "s")


def build_lexicon():
    nouns = [dict(en=r[0], en_pl=r[1], fr=r[2], gender=r[3], cls=r[4],
                  fr_pl=r[5] if len(r) > 5 else french_plural(r[2])) for r in parse_table(NOUNS)]
    adjectives = [dict(en=r[0], m=r[1], f=r[2]) for r in parse_table(ADJECTIVES)]
    verbs = [dict(en=r[0], en_pl=r[1], fr=r[2], fr_pl=r[3], obj=r[4]) for r in parse_table(VERBS)]
    return dict(nouns=nouns, adjectives=adjectives, verbs=verbs, names=NAMES, cities=CITIES, jobs=JOBS,
                colours=COLOURS, pets=PETS)


# ----------------------------------------------------------------------------------------------
# Sentences: one English sentence and its French translation by the rules, built side by side.

def noun_phrase(rng, lex, classes):
    """(English, French, plural) for a determiner + noun [+ adjective]."""
    noun = rng.choice([n for n in lex["nouns"] if n["cls"] in classes])
    adj = rng.choice(lex["adjectives"]) if rng.random() < 0.5 else None
    plural = rng.random() < 0.3
    fem = noun["gender"] == "f"
    en, fr = (noun["en_pl"], noun["fr_pl"]) if plural else (noun["en"], noun["fr"])
    if adj:  # French: the adjective follows the noun and agrees with it
        fr_adj = adj["f"] if fem else adj["m"]
        en, fr = f"{adj['en']} {en}", f"{fr} {french_plural(fr_adj) if plural else fr_adj}"
    definite = rng.random() < 0.5
    if plural:
        if definite:
            return f"the {en}", f"les {fr}", True
        number = rng.choice(list(NUMBERS))
        return f"{number} {en}", f"{NUMBERS[number]} {fr}", True
    if definite:
        elide = noun["fr"][0] in "aeiouh"  # l'oiseau
        return f"the {en}", ("l'" if elide else "la " if fem else "le ") + fr, False
    return f"{'an' if en[0] in 'aeiou' else 'a'} {en}", f"{'une' if fem else 'un'} {fr}", False


def sentence(rng, lex):
    """Subject verb [object] [in <city>]. -> (English, French)."""
    subj_en, subj_fr, plural = noun_phrase(rng, lex, "PA")
    verb = rng.choice(lex["verbs"])
    en = [subj_en, verb["en_pl"] if plural else verb["en"]]
    fr = [subj_fr, verb["fr_pl"] if plural else verb["fr"]]
    if verb["obj"] != "-":
        obj_en, obj_fr, _ = noun_phrase(rng, lex, verb["obj"])
        en.append(obj_en)
        fr.append(obj_fr)
    if rng.random() < 0.3:
        city = rng.choice(lex["cities"])
        en.append(f"in {city}")
        fr.append(f"a {city}")
    return as_sentence(en), as_sentence(fr)


def as_sentence(words):
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


# ----------------------------------------------------------------------------------------------
# Facts about people, for QA and for the pretraining fact paragraphs. Each attribute is its own
# kind of span; a reverse question's answer is a name.
ATTRIBUTES = {  # attribute: (fact, question, reverse question or None)
    "city": ("{n} lives in {v}.", "Where does {n} live?", "Who lives in {v}?"),
    "pet": ("{n} has a {v}.", "What pet does {n} have?", "Who has a {v}?"),
    "job": ("{n} works as a {v}.", "What is the job of {n}?", "Who works as a {v}?"),
    "colour": ("{n} likes {v}.", "What colour does {n} like?", None),
}


def draw_value(rng, lex, attr, other_than=None):
    pool = {"city": lex["cities"], "colour": lex["colours"], "pet": lex["pets"], "job": lex["jobs"]}[attr]
    return rng.choice([v for v in pool if v != other_than] or pool)


def draw_person(rng, lex, n_facts):
    """{attribute: value} for n_facts different attributes."""
    return {a: draw_value(rng, lex, a) for a in rng.sample(list(ATTRIBUTES), n_facts)}


def fact_text(name, attr, value):
    return ATTRIBUTES[attr][0].format(n=name, v=value)


def qa_example(rng, lex, n_people, max_len):
    """A context of facts (2-3 per person), a question about one fact, and its answer span."""
    names = rng.sample(lex["names"], n_people)
    people = {n: draw_person(rng, lex, rng.randint(2, 3)) for n in names}
    name, attr = names[0], rng.choice(list(people[names[0]]))
    value = people[name][attr]
    # with more people, someone else has another value of the same kind: the name must be read
    for other in names[1:2]:
        people[other][attr] = draw_value(rng, lex, attr, other_than=value)
    reverse = ATTRIBUTES[attr][2]
    unique = sum(p.get(attr) == value for p in people.values()) == 1
    if reverse and unique and rng.random() < 0.25:
        question, answer, kind = reverse.format(v=value), name, "name"
    else:
        question, answer, kind = ATTRIBUTES[attr][1].format(n=name), value, attr
    facts = [(n, a, v) for n in people for a, v in people[n].items()]
    rng.shuffle(facts)
    text = f"question: {question} context: {' '.join(fact_text(*f) for f in facts)}"
    if not fits(text, answer, "qa", max_len):
        raise SystemExit(f"--max_len {max_len} is too short for {n_people} people per QA context")
    # what a reader that ignores the name picks: the first value of the right kind; and one that
    # ignores the question too: the first value of the context
    spans = [f[0] if kind == "name" else f[2] for f in facts if kind == "name" or f[1] == kind]
    return dict(input=text, target=answer, answers=[answer], kind=kind, first_of_kind=spans[0],
                first_value=facts[0][2])


# ----------------------------------------------------------------------------------------------
# Python functions: (family, argument kind, what it does, body). The description names the
# function and says its constant in words ("times four" -> `* 4`): names, argument names and
# constants are drawn per example, so the model must read them (MBPP-like: a memorised solution fails).
CODE_TEMPLATES = [
    ("arith", "int", "returns {a} plus {K}", "return {a} + {k}"),
    ("arith", "int", "returns {a} minus {K}", "return {a} - {k}"),
    ("arith", "int", "returns {a} times {K}", "return {a} * {k}"),
    ("arith", "int", "returns {a} modulo {K}", "return {a} % {k}"),
    ("string", "str", "returns {a} in upper case", "return {a}.upper()"),
    ("string", "str", "returns {a} reversed", "return {a}[::-1]"),
    ("string", "str", "returns the length of {a} plus {K}", "return len({a}) + {k}"),
    ("string", "str", "returns the first {K} characters of {a}", "return {a}[:{k}]"),
    ("list", "list", "returns the largest number in {a}", "return max({a})"),
    ("list", "list", "returns the sum of {a} times {K}", "return sum({a}) * {k}"),
    ("list", "list", "returns {a} with {K} added to every number", "return [x + {k} for x in {a}]"),
    ("predicate", "int", "checks whether {a} is greater than {K}", "return {a} > {k}"),
    ("predicate", "int", "checks whether {a} is divisible by {K}", "return {a} % {k} == 0"),
    ("predicate", "list", "checks whether {K} is in {a}", "return {k} in {a}"),
]
CODE_FAMILIES = ("arith", "string", "list", "predicate")
DIGITS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine"}
ARG_NAMES = {"int": ["x", "n"], "str": ["s", "word"], "list": ["xs", "nums"]}
NAME_VERBS = ["get", "make", "calc", "find", "compute"]
NAME_NOUNS = ["score", "total", "value", "size", "count", "level", "price", "result"]
PREDICATE_NAMES = ["is_big", "is_good", "is_valid", "is_high", "is_ok", "is_long", "check", "test_it"]


def literal(v):
    return f'"{v}"' if isinstance(v, str) else repr(v)


def run_tests(code, tests):
    """True if `code` passes every assert (our own generated code: plain exec is enough here)."""
    try:
        exec("\n".join(tests), dict(defined(code)))
        return True
    except Exception:
        return False


@functools.lru_cache(maxsize=None)
def defined(code):  # the names `code` defines; one compilation per distinct text (they repeat often)
    namespace = {}
    exec(code, namespace)
    return namespace


def function_of(code, name):
    return defined(code)[name]


def passes(fn, inputs, outputs):
    try:
        return all(fn(*args) == out for args, out in zip(inputs, outputs))
    except Exception:
        return False


def code_example(rng, lex, families, max_len):
    templates = [t for t in CODE_TEMPLATES if t[0] in families]
    words = sorted({n["en"] for n in lex["nouns"]} | {a["en"] for a in lex["adjectives"]})  # test strings
    while True:
        family, kind, what, body = rng.choice(templates)
        k = rng.randint(2, 9)
        a = rng.choice(ARG_NAMES[kind])
        name = rng.choice(PREDICATE_NAMES) if family == "predicate" else \
            f"{rng.choice(NAME_VERBS)}_{rng.choice(NAME_NOUNS)}"
        sig = f"{name}({a})"
        code = f"def {sig}:\n    " + body.format(a=a, k=k)
        # wrong versions the tests must reject: the constant moved by one, returning None or the argument
        mutants = [f"def {sig}:\n    return None", f"def {sig}:\n    return {a}"]
        if "{k}" in body:
            mutants.append(f"def {sig}:\n    " + body.format(a=a, k=k + 1))
        fn, wrong = function_of(code, name), [function_of(m, name) for m in mutants]

        def discriminates(inputs, outputs):  # outputs vary and every wrong version fails a test
            return (len({repr(o) for o in outputs}) > 1 and len({repr(x) for x in inputs}) == len(inputs)
                    and not any(passes(w, inputs, outputs) for w in wrong))
        for _ in range(50):  # draw test inputs until they discriminate
            inputs = []
            for _ in range(3):
                if kind == "int":
                    inputs.append((rng.choice([k - 1, k, k + 1]) if rng.random() < 0.4 else rng.randint(0, 20),))
                elif kind == "str":
                    inputs.append((rng.choice(words),))
                else:
                    inputs.append(([rng.randint(0, 9) for _ in range(3)],))
            outputs = [fn(*args) for args in inputs]
            if discriminates(inputs, outputs):
                break
        else:
            continue
        tests = [f"assert {name}({', '.join(literal(x) for x in args)}) == {literal(out)}"
                 for args, out in zip(inputs, outputs)]
        assert run_tests(code, tests)  # the strings we write pass, not only the values
        what = what.format(a=a, K=DIGITS[k])
        text = f"Write a function {sig} that {what}."  # the tests are not shown: they would only lengthen it
        if fits(text, code, "code", max_len):
            return dict(input=text, target=code, test_list=tests, test_setup_code="", what=what, family=family)


# ----------------------------------------------------------------------------------------------
# Tasks: draw test, then validation, then train, each example unique within and across splits.

def make_split(n, draw, key, seen, what):
    rows, tries = [], 0
    while len(rows) < n:
        row = draw()
        tries += 1
        if tries > 20 * n + 1000:
            raise SystemExit(f"{what}: only {len(rows)} of {n} unique examples after {tries} draws; ask for fewer")
        if row[key] in seen:
            continue
        seen.add(row[key])
        rows.append(row)
    return rows


def translation_draw(rng, lex, max_len):
    prompt = "translate English to French: "
    while True:
        en, fr = sentence(rng, lex)
        if fits(prompt + en, fr, "translation", max_len):
            return dict(input=prompt + en, target=fr, source=en)


# ----------------------------------------------------------------------------------------------
# Trivial baselines stored in meta.json, so a report can show trained models are far above them.

def squad_em_f1(prediction, golds):
    """SQuAD v1.1-style EM and F1 (lower case, no punctuation or articles), max over golds, in %.
    A small stand-in for the official scorer, used only for the baselines below."""
    def norm(s):
        s = "".join(ch for ch in s.lower() if ch not in string.punctuation)
        return [w for w in s.split() if w not in ("a", "an", "the")]

    def f1(p, g):
        common = sum((Counter(p) & Counter(g)).values())
        if not p or not g:
            return float(p == g)
        return 0.0 if common == 0 else 2 * common / (len(p) + len(g))
    p = norm(prediction)
    return (100 * max(float(p == norm(g)) for g in golds), 100 * max(f1(p, norm(g)) for g in golds))


def qa_baselines(train, rows, people):
    most_frequent = {}
    for kind in {r["kind"] for r in train}:
        most_frequent[kind] = Counter(r["target"] for r in train if r["kind"] == kind).most_common(1)[0][0]
    guesses = {"empty": lambda r: "", "most_frequent_answer_of_kind": lambda r: most_frequent.get(r["kind"], ""),
               "first_value": lambda r: r["first_value"]}
    if people > 1:  # with one person the first span of the asked kind is always the answer
        guesses["first_span_of_kind"] = lambda r: r["first_of_kind"]
    out = {}
    for name, guess in guesses.items():
        scores = [squad_em_f1(guess(r), r["answers"]) for r in rows]
        out[name] = {"em": round(sum(s[0] for s in scores) / len(rows), 2),
                     "f1": round(sum(s[1] for s in scores) / len(rows), 2)}
    return out


def translation_baselines(lex, rows):
    import sacrebleu
    # word by word with the dictionary, in English order and without agreement: what a model
    # that learned only the lexicon would score
    words = {"the": "le", "a": "un", "an": "un", "in": "a", **NUMBERS}
    for n in lex["nouns"]:
        words.update({n["en"]: n["fr"], n["en_pl"]: n["fr_pl"]})
    words.update({a["en"]: a["m"] for a in lex["adjectives"]})
    for v in lex["verbs"]:
        words.update({v["en"]: v["fr"], v["en_pl"]: v["fr_pl"]})

    def word_by_word(en):
        out = " ".join(words.get(w.lower(), w) for w in en.rstrip(".").split()) + "."
        return out[0].upper() + out[1:]
    refs = [[r["target"] for r in rows]]
    return {"copy_input": round(sacrebleu.corpus_bleu([r["source"] for r in rows], refs).score, 2),
            "word_by_word_dictionary": round(sacrebleu.corpus_bleu(
                [word_by_word(r["source"]) for r in rows], refs).score, 2)}


# ----------------------------------------------------------------------------------------------
# Pretraining documents from the same world (never a validation/test sentence, context or
# function verbatim): the analogue of the paper's web text + code mixture, where parallel text,
# question-answer pages and commented code teach the skills the tasks use.

def english_doc(rng, lex, banned):
    sentences = (sentence(rng, lex)[0] for _ in range(rng.randint(3, 6)))
    return " ".join(s for s in sentences if s not in banned["exact"])


def french_doc(rng, lex, banned):
    sentences = (sentence(rng, lex)[1] for _ in range(rng.randint(3, 6)))
    return " ".join(s for s in sentences if s not in banned["exact"])


def bilingual_doc(rng, lex, banned):
    if rng.random() < 0.2:  # a glossary page
        lines = []
        for _ in range(rng.randint(4, 8)):
            kind = rng.choice(["noun", "adjective", "verb"])
            if kind == "noun":
                n = rng.choice(lex["nouns"])
                lines.append(f"{n['en']}: {n['fr']} ({n['gender']}), {n['en_pl']}: {n['fr_pl']}")
            elif kind == "adjective":
                a = rng.choice(lex["adjectives"])
                lines.append(f"{a['en']}: {a['m']} (m), {a['f']} (f)")
            else:
                v = rng.choice(lex["verbs"])
                lines.append(f"{v['en']}: {v['fr']}, {v['en_pl']}: {v['fr_pl']}")
        return "English - French\n" + "\n".join(lines)
    pairs = [sentence(rng, lex) for _ in range(rng.randint(2, 4))]
    return "\n".join(f"English: {en}\nFrench: {fr}" for en, fr in pairs
                     if en not in banned["exact"] and fr not in banned["exact"])


def facts_doc(rng, lex, banned):
    """Short profiles, each followed by questions and their short answers: finding the fact a
    question asks for is the skill the QA task needs."""
    parts = []
    for name in rng.sample(lex["names"], rng.randint(1, 3)):
        person = draw_person(rng, lex, rng.randint(2, len(ATTRIBUTES)))
        text = " ".join(fact_text(name, a, v) for a, v in person.items())
        if any(c in text for c in banned["contexts"]):  # not even inside a longer paragraph
            continue
        lines = [text]
        for a in rng.sample(list(person), rng.randint(1, 2)):
            reverse = ATTRIBUTES[a][2]
            if reverse and rng.random() < 0.25:
                lines.append(f"Q: {reverse.format(v=person[a])} A: {name}.")
            else:
                lines.append(f"Q: {ATTRIBUTES[a][1].format(n=name)} A: {person[a]}.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def code_doc(rng, lex, banned, families):
    """A small module: functions, each after a comment (or with a docstring) saying what it does,
    and a few asserts."""
    parts, asserts = [], []
    for _ in range(rng.randint(1, 3)):
        ex = code_example(rng, lex, families, max_len=10_000)
        if ex["target"] in banned["exact"]:
            continue
        head, body = ex["target"].split("\n", 1)
        if rng.random() < 0.7:
            parts.append(f"# {head[4:-1]} {ex['what']}.\n{ex['target']}")
        else:
            parts.append(f'{head}\n    """{ex["what"][0].upper() + ex["what"][1:]}."""\n{body}')
        asserts += ex["test_list"][:rng.randint(0, 1)]
    return "\n\n".join(parts + ["\n".join(asserts)] if asserts else parts)


# ----------------------------------------------------------------------------------------------

def parse_mix(text):
    mix = {}
    for item in text.split(","):
        name, _, value = item.partition("=")
        if name.strip() not in DOC_MAKERS:
            raise ValueError(f"unknown source {name.strip()!r}; expected some of {sorted(DOC_MAKERS)}")
        try:
            mix[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{item!r} is not name=fraction") from None
    if abs(sum(mix.values()) - 1) > 1e-6 or min(mix.values()) < 0:
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {mix}")
    return mix


DOC_MAKERS = {"english": english_doc, "french": french_doc, "facts": facts_doc, "code": code_doc,
              "bilingual": bilingual_doc}


def get_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out_dir", default=HERE, help="where pretrain/, translation/, qa/, code/ go")
    p.add_argument("--seed", type=int, default=1337, help="every random choice comes from this seed")
    p.add_argument("--tokenizer", default="words", choices=(*TOKENIZERS, "words"),
                   help="tokenizer of the pretraining .bin; words: the world's ~350 words + bytes (built here from "
                        "the train rows and sample documents, kept in meta.json); byte: 4x longer sequences")
    p.add_argument("--train", type=int, default=4000, help="train examples per task")
    p.add_argument("--validation", type=int, default=200, help="validation examples per task")
    p.add_argument("--test", type=int, default=200, help="test examples per task")
    p.add_argument("--pretrain_tokens", type=INT, default=2_000_000, help="pretraining tokens (train + val)")
    p.add_argument("--val_frac", type=float, default=0.05, help="pretraining tokens held out in val.bin")
    p.add_argument("--mix", default="english=0.05,french=0.05,facts=0.2,code=0.25,bilingual=0.45",
                   help="pretraining sources by share of tokens (paper: 80%% text, 20%% code)")
    p.add_argument("--people", type=int, default=1, help="people per QA context; the rest are distractors")
    p.add_argument("--code_families", default=",".join(CODE_FAMILIES), help="function families for code")
    p.add_argument("--max_len", type=int, default=256,
                   help=f"block in bytes: input + the task's longest target + {SPECIALS} must fit")
    args = p.parse_args(argv)
    args.code_families = [f for f in args.code_families.split(",") if f]
    bad = [f for f in args.code_families if f not in CODE_FAMILIES]
    if bad or not args.code_families:
        p.error(f"--code_families: unknown {bad}; choose from {CODE_FAMILIES}")
    if args.max_len < 128:
        p.error("--max_len must be >= 128 (a QA context needs room for a few facts)")
    if not 1 <= args.people <= 6:
        p.error("--people must be in 1..6")
    if min(args.train, args.validation, args.test) < 1:
        p.error("--train/--validation/--test must be >= 1")
    if not 0 < args.val_frac < 1:
        p.error("--val_frac must be in (0, 1)")
    try:
        args.mix = parse_mix(args.mix)
    except ValueError as e:
        p.error(f"--mix: {e}")
    return args


def prepare(args, command=""):
    rng = random.Random(args.seed)  # the one source of randomness: same seed, same bytes
    tok = None if args.tokenizer == "words" else get_tokenizer(args.tokenizer)
    lex = build_lexicon()
    sizes = {"test": args.test, "validation": args.validation, "train": args.train}
    common = {"sources": [{"name": "embedded synthetic world", "generator": "data/embedded/prepare.py",
                           "seed": args.seed}],
              "license": "generated by this repository's code; no third-party text",
              "seed": args.seed, "command": command, "max_len_bytes": args.max_len}
    words = sum(len(lex[k]) for k in ("nouns", "adjectives", "verbs", "names", "cities", "jobs")) + len(NUMBERS)
    print(f"world: {words} content words ({len(lex['nouns'])} nouns, {len(lex['adjectives'])} adjectives, "
          f"{len(lex['verbs'])} verbs, {len(lex['names'])} names, {len(lex['cities'])} cities, "
          f"{len(lex['jobs'])} jobs)")

    tasks = {
        "translation": ("bleu", lambda: translation_draw(rng, lex, args.max_len), "source"),
        "qa": ("squad", lambda: qa_example(rng, lex, args.people, args.max_len), "input"),
        "code": ("pass@k", lambda: code_example(rng, lex, args.code_families, args.max_len), "target"),
    }
    # validation/test sentences, contexts and functions: kept out of pretraining
    banned = {"exact": set(), "contexts": []}
    splits_of = {}
    for task, (metric, draw, key) in tasks.items():
        seen = set()
        splits = {s: make_split(n, draw, key, seen, f"{task}/{s}") for s, n in sizes.items()}
        for split in ("train", "validation", "test"):  # ids in file order
            for i, row in enumerate(splits[split]):
                row["id"] = f"{task}-{split}-{i:05d}"
        for row in splits["validation"] + splits["test"]:
            if task == "translation":
                banned["exact"] |= {row["source"], row["target"]}
            elif task == "qa":
                banned["contexts"].append(row["input"].split(" context: ", 1)[1])
            else:
                banned["exact"].add(row["target"])
        splits_of[task] = splits

    baselines = {
        "translation": {s: translation_baselines(lex, splits_of["translation"][s]) for s in ("validation", "test")},
        "qa": {s: qa_baselines(splits_of["qa"]["train"], splits_of["qa"][s], args.people)
               for s in ("validation", "test")},
        "code": {s: {"empty_function_pass_rate": 0.0} for s in ("validation", "test")},
    }
    notes = {
        "translation": "English -> French-like (real French words, no accents, simplified deterministic grammar: "
                       "adjective after the noun, gender/number agreement, verb agreement, 'in <city>' -> "
                       "'a <city>'). Baselines: BLEU of copying the English input, and of a word-by-word "
                       "dictionary translation in English order without agreement.",
        "qa": f"{args.people} people per context with 2-3 shuffled facts each; with 2+ people the question's fact "
              "has a distractor of the same kind about someone else. Answers are exact spans of the context. "
              "Baselines (SQuAD-style normalised EM/F1): empty answer; the most frequent train answer for the "
              "question's kind; the first span of the right kind in the context (ignores the name).",
        "code": "A one-line description naming the function and its argument, the constant in words -> a "
                f"one-line function, checked by 3 asserts (not shown in the prompt); families "
                f"{args.code_families}; names, argument names and constants drawn per "
                "example; the tests reject the function with any one constant moved by one, one returning its "
                "argument and one returning None, so an empty function passes 0%.",
    }
    keep = {"translation": ("id", "input", "target"), "qa": ("id", "input", "target", "answers"),
            "code": ("id", "input", "target", "test_list", "test_setup_code")}
    for task, (metric, _, _) in tasks.items():
        folder = os.path.join(args.out_dir, task)
        for split, rows in splits_of[task].items():
            write_jsonl(os.path.join(folder, f"{split}.jsonl"), [{k: r[k] for k in keep[task]} for r in rows])
        train = splits_of[task]["train"]
        write_json(os.path.join(folder, "meta.json"), {
            "task": task, "metric": metric, "splits": {s: len(r) for s, r in splits_of[task].items()},
            **common, "notes": notes[task], "baselines": baselines[task],
            "target_bytes_mean": round(sum(len(r["target"]) for r in train) / len(train), 1),
            "target_max_bytes": TARGET_BYTES[task],
            "input_max_bytes": max(len(r["input"]) for rows in splits_of[task].values() for r in rows)})
        print(f"{task:12s} {metric:7s} {dict((s, len(r)) for s, r in splits_of[task].items())} "
              f"baselines(test) {baselines[task]['test']}")

    if tok is None:  # the words tokenizer: the world's words, from train rows and sample documents
        tok = words_tokenizer(args, lex, banned, [splits_of[t]["train"] for t in tasks])
        print(f"tokenizer    words: {len(tok.vocab)} words + 256 bytes (vocab {tok.vocab_size})")

    # pretraining: each source makes documents until its share of the tokens, then all are shuffled
    docs = []
    for source, frac in args.mix.items():
        budget = round(frac * args.pretrain_tokens)
        made, used = [], 0
        while used < budget:
            extra = (args.code_families,) if source == "code" else ()
            text = DOC_MAKERS[source](rng, lex, banned, *extra)
            if text:
                ids = tok.encode(text)
                made.append((source, ids))
                used += len(ids) + 1
        docs += take_tokens(made, budget)
    rng.shuffle(docs)
    meta = write_corpus(os.path.join(args.out_dir, "pretrain"), docs, tok, args.val_frac, {
        "seed": args.seed, "command": command, "mix": args.mix,
        "notes": "Synthetic world shared with the tasks (data/embedded/prepare.py). 'bilingual' (glossary "
                 "pages and English/French sentence pairs) stands for the parallel text real web crawls "
                 "contain, 'facts' (paragraphs with questions and short answers) for question-answer pages "
                 "and 'code' (commented functions with asserts) for code. No validation/test sentence, QA "
                 "context or function appears in it."})
    print(f"pretrain     {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens ({tok.name}): "
          + ", ".join(f"{s['name']} {s['fraction']:.0%}" for s in meta["sources"]))
    return meta


def words_tokenizer(args, lex, banned, train_splits, docs_per_source=300):
    """A words tokenizer whose list comes from the task train rows and a sample of each pretraining
    source's documents (drawn from their own seeded stream, so the corpus draw is unchanged)."""
    rng = random.Random(f"words-{args.seed}")
    texts = [r[k] for rows in train_splits for r in rows for k in ("input", "target")]
    for source, frac in args.mix.items():
        extra = (args.code_families,) if source == "code" else ()
        texts += [DOC_MAKERS[source](rng, lex, banned, *extra) for _ in range(docs_per_source if frac else 0)]
    return Tokenizer("words", build_vocab(texts))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = get_args(argv)
    prepare(args, command=command_line(__file__, argv))
    print(f"wrote {args.out_dir}")


if __name__ == "__main__":
    cli(main)
