"""
The embedded default: a small synthetic world, generated offline in seconds and deterministic by
--seed, that gives a pretraining corpus and three tasks mirroring the paper's (WMT14 En-Fr -> BLEU,
SQuAD -> EM/F1, MBPP -> pass@k), sized so that a ~1M-parameter byte-level model learns them on a CPU
in minutes, well but not perfectly.

    python data/embedded/prepare.py                       # byte tokenizer, seed 1337 -> data/embedded/
    python -m data.embedded.prepare --tokenizer gpt2 --out_dir out/embedded_gpt2
    python data/embedded/prepare.py --vocab 0.5 --people 2   # an easier world

The world (all words plain ASCII, so one character is one byte):
  - English and a French-like second language: real French words with accents dropped and a
    deterministic grammar: word-by-word dictionary, adjective after the noun, articles and adjectives
    agree in gender and number (le/la/l'/les, un/une, vert/verte/verts/vertes), the verb agrees with
    its subject (voit/voient), adverbs move after the verb, "in <city>" -> "a <city>".
  - People with a city, a birthplace, an age, a favourite colour, a pet and a job (re-drawn for every
    text), and small Python functions in 4 families (arith, string, list, predicate).

Outputs (--out_dir, default this folder; the generated files are git-ignored):
  pretrain/{train.bin,val.bin,meta.json}    mixture by tokens (--mix): English and French paragraphs,
                                            fact paragraphs with questions answered in full sentences,
                                            Python modules with docstrings and asserts, and a few
                                            bilingual lines (glossaries, sentence pairs)
  translation/ (bleu)   "translate English to French: <sentence>" -> its French      (25-80 bytes)
  qa/ (squad)           "question: <q> context: <facts>" -> a span of the context    (2-8 bytes)
  code/ (pass@k)        "<description>\\ntests:\\n<asserts>" -> a Python function    (30-100 bytes)
                        (the prompt shows as many of the 3 tests as fit, MBPP-like; all 3 are run)
  each {train,validation,test}.jsonl + meta.json, with trivial baselines (copying the input, an
  empty or most-frequent answer, an empty function) in meta.json["baselines"].

No validation/test example appears in train or verbatim in the pretraining text (sentences, fact
paragraphs and functions that collide are re-drawn). Targets are at most 80 / 12 / 100 bytes and
every input fits beside its task's longest target + 2 in --max_len (256, the tiny model's block).

Difficulty knobs (defaults in brackets):
  --vocab F     [1.0] fraction of the word lists used (names, cities, nouns per class, adjectives,
                verbs): ~210 content words at 1.0; fewer words = easier translation, fewer QA values
  --people N    [3]   people in each QA context: the others' facts are distractors of the same kind,
                so N=1 needs no reading of the name and larger N needs more
  --code_families [arith,string,list,predicate]  function families (list has the loops, the longest)
  --train/--validation/--test [4000/200/200] examples per task; --pretrain_tokens [2000000]
  --mix         share of each pretraining source; "bilingual" is the direct signal for translation,
                "facts" for QA and "code" for code: lowering one makes its task depend on fine-tuning
"""
import argparse
import os
import random
import re
import shlex
import string
import sys
from collections import Counter

if __package__ in (None, ""):  # run as a script: make the repo root importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from data.common import take_tokens, write_corpus, write_json, write_jsonl  # noqa: E402
from data.tokenizer import TOKENIZERS, get_tokenizer  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
# The longest target of each task (bytes), and room for the EOS that ends a target plus one spare.
# Every input fits beside its task's longest target: a diffusion loader pads all targets of a task to
# one length (paper §3: the model learns the length from the padding) and must never cut a prefix.
TARGET_BYTES = {"translation": 80, "qa": 12, "code": 100}
SPECIALS = 2


def fits(prefix, target, task, max_len):
    budget = TARGET_BYTES[task]
    return len(target.encode()) <= budget and len(prefix.encode()) + budget + SPECIALS <= max_len

# ----------------------------------------------------------------------------------------------
# The lexicon. Nouns: English singular, plural, French singular, gender, classes (P person,
# A animal, T thing, F food, L place one can be "in", S surface one can be "on", R readable),
# and the French plural where the -s rule does not give it.
NOUNS = """
boy boys garcon m P | girl girls fille f P | man men homme m P | woman women femme f P
child children enfant m P | friend friends ami m P | teacher teachers professeur m P
doctor doctors medecin m P | farmer farmers fermier m P | king kings roi m P | queen queens reine f P
baby babies bebe m P | cat cats chat m A | dog dogs chien m A | bird birds oiseau m A
horse horses cheval m A chevaux | fish fish poisson m A | mouse mice souris f A | cow cows vache f A
rabbit rabbits lapin m A | frog frogs grenouille f A | duck ducks canard m A | wolf wolves loup m A
fox foxes renard m A | pig pigs cochon m A | goat goats chevre f A | lion lions lion m A
bear bears ours m A | car cars voiture f TS | book books livre m TR | letter letters lettre f TR
box boxes boite f TL | cup cups tasse f T | bottle bottles bouteille f T | key keys cle f T
bag bags sac m TL | hat hats chapeau m T | shoe shoes chaussure f T | boat boats bateau m TS
ball balls balle f T | chair chairs chaise f TS | table tables table f TS | door doors porte f T
window windows fenetre f T | picture pictures image f T | flower flowers fleur f T
tree trees arbre m T | bike bikes velo m TS | apple apples pomme f F | bread breads pain m F
cake cakes gateau m F | cheese cheeses fromage m F | egg eggs oeuf m F | orange oranges orange f F
soup soups soupe f F | carrot carrots carotte f F | house houses maison f L | garden gardens jardin m L
school schools ecole f L | kitchen kitchens cuisine f L | shop shops magasin m L | park parks parc m L
forest forests foret f L | street streets rue f L
"""
# Adjectives: English, French masculine, feminine, what they describe (a any, p animate, t not).
ADJECTIVES = """
red rouge rouge a | blue bleu bleue a | green vert verte a | black noir noire a
white blanc blanche a | yellow jaune jaune a | grey gris grise a | brown brun brune a
pink rose rose a | big grand grande a | small petit petite a | old vieux vieille a
new nouveau nouvelle t | young jeune jeune p | happy heureux heureuse p | sad triste triste p
tired fatigue fatiguee p | funny drole drole p | strong fort forte p | fast rapide rapide a
slow lent lente a | pretty joli jolie a | beautiful beau belle a | good bon bonne a
long long longue t | short court courte t | hot chaud chaude t | cold froid froide t
heavy lourd lourde t | clean propre propre t | dirty sale sale t
"""
COLOURS = "red blue green black white yellow grey brown pink".split()
# Verbs: English 3rd person singular and plural, French singular and plural, object classes
# ("-": intransitive). Subjects are always people or animals.
VERBS = """
sees see voit voient PATSLR | likes like aime aiment PATFSLR | watches watch regarde regardent PATS
eats eat mange mangent F | finds find trouve trouvent ATFSR | carries carry porte portent ATFR
buys buy achete achetent TFSR | sells sell vend vendent TFSR | opens open ouvre ouvrent TLR
reads read lit lisent R | draws draw dessine dessinent PATFSL | washes wash lave lavent ATS
takes take prend prennent TFR | follows follow suit suivent PA | helps help aide aident P
calls call appelle appellent PA | wants want veut veulent ATFSR | loves love adore adorent PATF
throws throw lance lancent T | prepares prepare prepare preparent F | paints paint peint peignent TSL
sleeps sleep dort dorment - | runs run court courent - | sings sing chante chantent -
dances dance danse dansent - | swims swim nage nagent - | works work travaille travaillent -
plays play joue jouent - | waits wait attend attendent - | laughs laugh rit rient -
walks walk marche marchent -
"""
NUMBERS = {"two": "deux", "three": "trois", "four": "quatre", "five": "cinq", "six": "six",
           "seven": "sept", "eight": "huit", "nine": "neuf"}
ADVERBS = {"often": "souvent", "always": "toujours", "sometimes": "parfois", "also": "aussi"}
# Prepositions: English, French, classes of the noun they take.
PREPOSITIONS = [("in", "dans", "L"), ("on", "sur", "S"), ("under", "sous", "TS"),
                ("behind", "derriere", "TSL"), ("with", "avec", "PA")]
NAMES = ("Alice Bob Clara David Emma Felix Hugo Ines Jules Lea Louis Marie Nina Oscar Paul Rosa Sam "
         "Tom Victor Zoe Anna Leo Maya Omar Lucas Chloe Ethan Iris Noah Sara").split()
CITIES = ("Paris Lyon Rome Berlin Madrid London Lisbon Vienna Prague Oslo Dublin Geneva Brussels "
          "Milan Nice Lille Tokyo Cairo Lima Quebec").split()
JOBS = ("baker teacher doctor farmer pilot nurse painter singer driver cook writer lawyer dancer "
        "builder gardener").split()


def parse_table(text, n_fields):
    return [row.split() for row in re.split(r"[|\n]", text) if len(row.split()) >= n_fields]


def french_plural(word):
    if word.endswith(("s", "x", "z")):
        return word
    return word + ("x" if word.endswith("eau") else "s")


def build_lexicon(rng, vocab):
    """The word lists in use: each list shuffled and cut to a `vocab` fraction of its length (at
    least 2 per noun class), so a seed also picks which words the world has."""
    def cut(items, minimum=2):
        items = list(items)
        rng.shuffle(items)
        return items[:max(minimum, round(vocab * len(items)))]
    nouns = []
    for cls in "PATFL":  # cut per primary class so every verb keeps objects
        rows = [r for r in parse_table(NOUNS, 5) if r[4][0] == cls]
        nouns += [dict(en=r[0], en_pl=r[1], fr=r[2], gender=r[3], cls=r[4],
                       fr_pl=r[5] if len(r) > 5 else french_plural(r[2])) for r in cut(rows)]
    adjectives = [dict(en=r[0], m=r[1], f=r[2], tag=r[3]) for r in cut(parse_table(ADJECTIVES, 4))]
    verbs = [dict(en=r[0], en_pl=r[1], fr=r[2], fr_pl=r[3], obj=r[4])
             for r in cut(parse_table(VERBS, 5), minimum=4)]
    verbs = [v for v in verbs if v["obj"] == "-" or any(c in n["cls"] for n in nouns for c in v["obj"])]
    prepositions = [p for p in PREPOSITIONS if any(c in n["cls"] for n in nouns for c in p[2])]
    return dict(nouns=nouns, adjectives=adjectives, verbs=verbs, prepositions=prepositions, names=cut(NAMES, 6),
                cities=cut(CITIES, 4), jobs=cut(JOBS, 4),
                colours=[c for c in COLOURS if c in {a["en"] for a in adjectives}] or COLOURS[:2],
                pets=[n["en"] for n in nouns if n["cls"][0] == "A"])


# ----------------------------------------------------------------------------------------------
# Sentences: one English sentence and its French translation by the rules, built side by side.

def starts_with_vowel(word):
    return word[0] in "aeiou"


def noun_phrase(rng, lex, classes, allow_name):
    """(English, French, plural) for a name or a determiner + optional adjective + noun."""
    if allow_name and "P" in classes and rng.random() < 0.25:
        name = rng.choice(lex["names"])
        return name, name, False
    cache = lex.setdefault("nouns_of", {})
    if classes not in cache:
        cache[classes] = [n for n in lex["nouns"] if any(c in n["cls"] for c in classes)]
    noun = rng.choice(cache[classes])
    animate = noun["cls"][0] in "PA"
    adjs = [a for a in lex["adjectives"] if a["tag"] == "a" or (a["tag"] == "p") == animate]
    adj = rng.choice(adjs) if adjs and rng.random() < 0.5 else None
    plural = rng.random() < 0.3
    fem = noun["gender"] == "f"
    en_noun, fr_noun = (noun["en_pl"], noun["fr_pl"]) if plural else (noun["en"], noun["fr"])
    en = f"{adj['en']} {en_noun}" if adj else en_noun
    fr = fr_noun
    if adj:  # French: the adjective follows the noun and agrees with it
        fr_adj = adj["f"] if fem else adj["m"]
        fr += " " + (french_plural(fr_adj) if plural else fr_adj)
    definite = rng.random() < 0.5
    if plural:
        if definite:
            return f"the {en}", f"les {fr}", True
        number = rng.choice(list(NUMBERS))
        return f"{number} {en}", f"{NUMBERS[number]} {fr}", True
    if definite:
        elide = starts_with_vowel(fr_noun) or fr_noun.startswith("h")  # l'arbre, l'homme
        article = "l'" if elide else ("la " if fem else "le ")
        return f"the {en}", article + fr, False
    return (f"{'an' if starts_with_vowel(en) else 'a'} {en}", f"{'une' if fem else 'un'} {fr}", False)


def sentence(rng, lex):
    """Subject [adverb] verb [object] [place]. -> (English, French)."""
    subj_en, subj_fr, plural = noun_phrase(rng, lex, "PA", allow_name=True)
    verb = rng.choice(lex["verbs"])
    en, fr = [subj_en], [subj_fr]
    adverb = rng.choice(list(ADVERBS)) if rng.random() < 0.2 else None
    if adverb:
        en.append(adverb)
    en.append(verb["en_pl"] if plural else verb["en"])
    fr.append(verb["fr_pl"] if plural else verb["fr"])
    if adverb:  # French: the adverb follows the verb
        fr.append(ADVERBS[adverb])
    if verb["obj"] != "-":
        obj_en, obj_fr, _ = noun_phrase(rng, lex, verb["obj"], allow_name=True)
        en.append(obj_en)
        fr.append(obj_fr)
    if rng.random() < 0.5:
        if rng.random() < 0.3:
            city = rng.choice(lex["cities"])
            en.append(f"in {city}")
            fr.append(f"a {city}")
        else:
            prep_en, prep_fr, classes = rng.choice(lex["prepositions"])
            np_en, np_fr, _ = noun_phrase(rng, lex, classes, allow_name=False)
            en.append(f"{prep_en} {np_en}")
            fr.append(f"{prep_fr} {np_fr}")
    return as_sentence(en), as_sentence(fr)


def as_sentence(words):
    text = " ".join(words)
    return text[0].upper() + text[1:] + "."


# ----------------------------------------------------------------------------------------------
# Facts about people, for QA and for the pretraining fact paragraphs.
ATTRIBUTES = {  # attribute: (fact phrasings, question, reverse question or None)
    "city": (["{n} lives in {v}.", "{n} has a home in {v}."], "Where does {n} live?", "Who lives in {v}?"),
    "birth": (["{n} was born in {v}.", "{n} comes from {v}."], "Where was {n} born?", None),
    "age": (["{n} is {v} years old.", "The age of {n} is {v}."], "How old is {n}?", "Who is {v} years old?"),
    "colour": (["{n} likes the colour {v}.", "The favourite colour of {n} is {v}."],
               "What is the favourite colour of {n}?", None),
    "pet": (["{n} has a pet {v}.", "{n} owns a {v}."], "What pet does {n} have?", None),
    "job": (["{n} works as a {v}.", "{n} is a {v} by trade."], "What is the job of {n}?",
            "Who works as a {v}?"),
}
# the kind of span each attribute's value is: a baseline guesses the first span of the right kind
KIND = {"city": "place", "birth": "place", "age": "number", "colour": "colour", "pet": "pet", "job": "job"}


def draw_value(rng, lex, attr):
    pool = {"city": lex["cities"], "birth": lex["cities"], "colour": lex["colours"],
            "pet": lex["pets"], "job": lex["jobs"]}.get(attr)
    return str(rng.randint(18, 89)) if attr == "age" else rng.choice(pool)


def draw_people(rng, lex, n_people, facts_per_person=(1, 3)):
    """n people with distinct names, each with a few (attribute, value) facts."""
    names = rng.sample(lex["names"], n_people)
    return {n: {a: draw_value(rng, lex, a) for a in rng.sample(list(ATTRIBUTES), rng.randint(*facts_per_person))}
            for n in names}


def fact_text(rng, name, attr, value):
    return rng.choice(ATTRIBUTES[attr][0]).format(n=name, v=value)


def qa_example(rng, lex, n_people, max_len):
    """A context of shuffled facts about n_people, a question about one fact, its answer span."""
    people = draw_people(rng, lex, n_people)
    name = rng.choice(list(people))
    attr = rng.choice(list(ATTRIBUTES))
    people[name][attr] = draw_value(rng, lex, attr)
    # a distractor: someone else has a value of the same kind, so the name must be read
    others = [n for n in people if n != name]
    protected = {(name, attr)}
    if others:
        other = rng.choice(others)
        other_attr = rng.choice([a for a in ATTRIBUTES if KIND[a] == KIND[attr]])
        people[other][other_attr] = draw_value(rng, lex, attr)
        protected.add((other, other_attr))
    value = people[name][attr]
    reverse = ATTRIBUTES[attr][2]
    holders = [n for n in people if people[n].get(attr) == value]
    if reverse and len(holders) == 1 and rng.random() < 0.3:
        question, answer, kind = reverse.format(v=value), name, "name"
    else:
        question, answer, kind = ATTRIBUTES[attr][1].format(n=name), value, KIND[attr]
    facts = [(n, a, v) for n in people for a, v in people[n].items()]
    rng.shuffle(facts)
    sentences = [fact_text(rng, *f) for f in facts]
    # drop other facts until the example fits
    while True:
        context = " ".join(sentences)
        text = f"question: {question} context: {context}"
        if fits(text, answer, "qa", max_len):
            break
        droppable = [i for i, f in enumerate(facts) if f[:2] not in protected]
        if not droppable:
            return qa_example(rng, lex, n_people, max_len)
        i = rng.choice(droppable)
        del facts[i], sentences[i]
    assert answer in context
    # the span a reader that ignores the name would pick: the first value of the right kind
    spans = [f[0] if kind == "name" else f[2] for f in facts if kind == "name" or KIND[f[1]] == kind]
    return dict(input=text, target=answer, answers=[answer], kind=kind, first_of_kind=spans[0])


# ----------------------------------------------------------------------------------------------
# Python functions: (family, argument kind, what it does, body). The description says what the
# function does with its name and constants; names and constants are drawn per example, so the
# model must read them (MBPP-like, where copying a memorised solution fails).
CODE_TEMPLATES = [
    ("arith", "int", "returns {a} plus {k}", "return {a} + {k}"),
    ("arith", "int", "returns {a} minus {k}", "return {a} - {k}"),
    ("arith", "int", "returns {a} times {k}", "return {a} * {k}"),
    ("arith", "int", "returns {a} times {k} plus {m}", "return {a} * {k} + {m}"),
    ("arith", "int", "returns the remainder of {a} divided by {k}", "return {a} % {k}"),
    ("arith", "int", "returns {a} divided by {k}, rounded down", "return {a} // {k}"),
    ("arith", "int2", "returns the sum of {a} and {b}, times {k}", "return ({a} + {b}) * {k}"),
    ("arith", "int2", "returns {a} times {b} plus {k}", "return {a} * {b} + {k}"),
    ("arith", "int2", "returns the larger of {a} and {b}", "return max({a}, {b})"),
    ("arith", "int", "returns {a} if it is greater than {k}, otherwise {m}",
     "if {a} > {k}:\n        return {a}\n    return {m}"),
    ("arith", "int", "returns {a} doubled if it is even, otherwise {a} plus {k}",
     "if {a} % 2 == 0:\n        return {a} * 2\n    return {a} + {k}"),
    ("string", "str", "returns {a} in upper case", "return {a}.upper()"),
    ("string", "str", "returns {a} repeated {k} times", "return {a} * {k}"),
    ("string", "str", 'returns {a} followed by "{w}"', 'return {a} + "{w}"'),
    ("string", "str", 'returns "{w}" followed by {a}', 'return "{w}" + {a}'),
    ("string", "str", "returns the first {k} characters of {a}", "return {a}[:{k}]"),
    ("string", "str", "returns the last {k} characters of {a}", "return {a}[-{k}:]"),
    ("string", "str", "returns {a} reversed", "return {a}[::-1]"),
    ("string", "str", 'returns how many times "{c}" occurs in {a}', 'return {a}.count("{c}")'),
    ("string", "str", 'returns {a} with every "{c}" replaced by "{d}"', 'return {a}.replace("{c}", "{d}")'),
    ("string", "str", "returns the length of {a} plus {k}", "return len({a}) + {k}"),
    ("list", "list", "returns the sum of {a} times {k}", "return sum({a}) * {k}"),
    ("list", "list", "returns the largest number in {a} plus {k}", "return max({a}) + {k}"),
    ("list", "list", "returns the smallest number in {a} minus {k}", "return min({a}) - {k}"),
    ("list", "list", "returns a list with {k} added to every number in {a}", "return [x + {k} for x in {a}]"),
    ("list", "list", "returns a list with every number in {a} times {k}", "return [x * {k} for x in {a}]"),
    ("list", "list", "returns the numbers in {a} that are greater than {k}", "return [x for x in {a} if x > {k}]"),
    ("list", "list", "returns how many numbers in {a} are less than {k}",
     "count = 0\n    for x in {a}:\n        if x < {k}:\n            count += 1\n    return count"),
    ("list", "list", "returns the sum of the even numbers in {a}",
     "total = 0\n    for x in {a}:\n        if x % 2 == 0:\n            total += x\n    return total"),
    ("predicate", "int", "checks whether {a} is greater than {k}", "return {a} > {k}"),
    ("predicate", "int", "checks whether {a} is divisible by {k}", "return {a} % {k} == 0"),
    ("predicate", "int", "checks whether {a} is between {lo} and {hi}", "return {lo} <= {a} <= {hi}"),
    ("predicate", "str", 'checks whether {a} starts with "{p}"', 'return {a}.startswith("{p}")'),
    ("predicate", "str", "checks whether {a} is longer than {k} characters", "return len({a}) > {k}"),
    ("predicate", "list", "checks whether {k} is in {a}", "return {k} in {a}"),
]
CODE_FAMILIES = ("arith", "string", "list", "predicate")
ARG_NAMES = {"int": ["x", "n", "num", "value"], "int2": [("a", "b"), ("x", "y"), ("m", "n")],
             "str": ["s", "word", "text", "name"], "list": ["xs", "nums", "items", "values"]}
NAME_VERBS = ["get", "make", "calc", "compute", "find", "build", "do", "apply"]
NAME_NOUNS = ["score", "total", "price", "value", "count", "level", "points", "size", "label", "tag"]
LEADS = ["Write a function", "Create a function", "Define a function"]


def literal(v):
    return f'"{v}"' if isinstance(v, str) else repr(v)


def run_tests(code, tests):
    """True if `code` passes every assert (our own generated code: plain exec is enough here)."""
    try:
        exec(code + "\n" + "\n".join(tests), {})
        return True
    except Exception:
        return False


def function_of(code, name):
    namespace = {}
    exec(code, namespace)
    return namespace[name]


def passes(fn, inputs, outputs):
    try:
        return all(fn(*args) == out for args, out in zip(inputs, outputs))
    except Exception:
        return False


def code_example(rng, lex, families, max_len):
    templates = [t for t in CODE_TEMPLATES if t[0] in families]
    if "code_words" not in lex:  # test strings: the world's English nouns and adjectives
        lex["code_words"] = sorted({n["en"] for n in lex["nouns"]} | {a["en"] for a in lex["adjectives"]})
    words = lex["code_words"]
    while True:
        family, kind, what, body = rng.choice(templates)
        lo = rng.randint(1, 8)
        params = dict(k=rng.randint(2, 9), m=rng.randint(2, 9), lo=lo, hi=rng.randint(lo + 2, lo + 9),
                      w=rng.choice(words)[:rng.randint(2, 4)], c=rng.choice("aeiorstln"),
                      d=rng.choice("xyz"), p=rng.choice(words)[:rng.randint(1, 2)])
        arg = rng.choice(ARG_NAMES[kind])
        a, b = arg if kind == "int2" else (arg, None)
        if family == "predicate":
            name = rng.choice([f"is_{rng.choice(lex['adjectives'])['en']}", f"has_{rng.choice(NAME_NOUNS)}",
                               f"check_{rng.choice(NAME_NOUNS)}"])
        else:
            name = f"{rng.choice(NAME_VERBS)}_{rng.choice(NAME_NOUNS + [n['en'] for n in lex['nouns']])}"
        sig = f"{name}({a}, {b})" if b else f"{name}({a})"

        def render(**over):
            return f"def {sig}:\n    " + body.format(a=a, b=b, **{**params, **over})
        code = render()
        # wrong versions the tests must reject: a constant moved by one, returning None or the argument
        mutants = [render(**{key: params[key] + 1}) for key in ("k", "m", "lo", "hi") if "{" + key + "}" in body]
        mutants.append(f"def {sig}:\n    return None")
        if kind != "int2":  # returning the argument unchanged must fail too (e.g. a replace with no hit)
            mutants.append(f"def {sig}:\n    return {a}")
        fn, wrong = function_of(code, name), [function_of(m, name) for m in mutants]
        boundary = [params[key] + d for key in ("k", "m", "lo", "hi") for d in (-1, 0, 1)]
        starts = [w for w in words if w.startswith(params["p"])]

        def discriminates(inputs, outputs):  # outputs vary and every wrong version fails a test
            return (len({repr(o) for o in outputs}) > 1 and len({repr(x) for x in inputs}) == len(inputs)
                    and not any(passes(w, inputs, outputs) for w in wrong))
        for _ in range(50):  # draw test inputs until they discriminate
            inputs = []
            for _ in range(3):
                if kind == "int":
                    inputs.append((rng.choice(boundary) if rng.random() < 0.4 else rng.randint(0, 20),))
                elif kind == "int2":
                    inputs.append((rng.randint(0, 12), rng.randint(0, 12)))
                elif kind == "str":
                    pool = starts if "{p}" in body and rng.random() < 0.5 else words
                    inputs.append((rng.choice(pool),))
                else:
                    inputs.append(([rng.randint(0, 9) for _ in range(rng.randint(3, 5))],))
            outputs = [fn(*args) for args in inputs]
            if discriminates(inputs, outputs):
                break
        else:
            continue
        tests = [f"assert {name}({', '.join(literal(x) for x in args)}) == {literal(out)}"
                 for args, out in zip(inputs, outputs)]
        description = f"{rng.choice(LEADS)} {sig} that {what.format(a=a, b=b, **params)}."
        assert run_tests(code, tests)  # the strings we write pass, not only the values
        for n in (3, 2, 1):  # show the tests like MBPP's prompt, as many as fit; all are run
            text = description + "\ntests:\n" + "\n".join(tests[:n])
            if fits(text, code, "code", max_len):
                return dict(input=text, target=code, test_list=tests, test_setup_code="",
                            what=what.format(a=a, b=b, **params), family=family)


# ----------------------------------------------------------------------------------------------
# Tasks: draw test, then validation, then train, each example unique within and across splits.

def make_split(n, draw, key, seen, what):
    rows, tries = [], 0
    while len(rows) < n:
        row = draw()
        tries += 1
        if tries > 20 * n + 1000:
            raise SystemExit(f"{what}: only {len(rows)} of {n} unique examples after {tries} draws; "
                             f"ask for fewer or raise --vocab")
        if row[key] in seen:
            continue
        seen.add(row[key])
        rows.append(row)
    return rows


def translation_draw(rng, lex, max_len):
    prompt = "translate English to French: "
    while True:
        en, fr = sentence(rng, lex)
        if fits(prompt + en, fr, "translation", max_len) and len(fr) >= 25:
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


def qa_baselines(train, rows):
    most_frequent = {}
    for kind in {r["kind"] for r in train}:
        most_frequent[kind] = Counter(r["target"] for r in train if r["kind"] == kind).most_common(1)[0][0]
    guesses = {"empty": lambda r: "", "most_frequent_answer_of_kind": lambda r: most_frequent.get(r["kind"], ""),
               "first_span_of_kind": lambda r: r["first_of_kind"]}
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
    words = {"the": "le", "a": "un", "an": "un", **NUMBERS, **ADVERBS, **{p[0]: p[1] for p in PREPOSITIONS}}
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
# function verbatim): the analogue of the paper's web text + code mixture.

def english_doc(rng, lex, banned):
    sentences = (sentence(rng, lex)[0] for _ in range(rng.randint(3, 8)))
    return " ".join(s for s in sentences if s not in banned["exact"])


def french_doc(rng, lex, banned):
    sentences = (sentence(rng, lex)[1] for _ in range(rng.randint(3, 8)))
    return " ".join(s for s in sentences if s not in banned["exact"])


def bilingual_doc(rng, lex, banned):
    if rng.random() < 0.25:  # a glossary page
        lines = []
        for _ in range(rng.randint(6, 12)):
            kind = rng.choice(["noun", "adjective", "verb"])
            if kind == "noun":
                n = rng.choice(lex["nouns"])
                lines.append(f"{n['en']}: {n['fr']} ({n['gender']}), plural {n['en_pl']}: {n['fr_pl']}")
            elif kind == "adjective":
                a = rng.choice(lex["adjectives"])
                lines.append(f"{a['en']}: {a['m']} (m), {a['f']} (f)")
            else:
                v = rng.choice(lex["verbs"])
                lines.append(f"{v['en']}: {v['fr']}, they {v['en_pl']}: {v['fr_pl']}")
        return "English - French\n" + "\n".join(lines)
    pairs = [sentence(rng, lex) for _ in range(rng.randint(2, 5))]
    return "\n".join(f"English: {en}\nFrench: {fr}" for en, fr in pairs
                     if en not in banned["exact"] and fr not in banned["exact"])


def facts_doc(rng, lex, banned):
    """A paragraph of facts, often followed by questions answered in full sentences: retrieving a
    fact stated earlier is the skill the QA task needs."""
    people = draw_people(rng, lex, rng.randint(2, 5), (1, 4))
    facts = [(n, a, v) for n in people for a, v in people[n].items()]
    rng.shuffle(facts)
    text = " ".join(fact_text(rng, *f) for f in facts)
    lines = [text]
    for n, a, v in rng.sample(facts, min(len(facts), rng.randint(0, 3))):
        reverse = ATTRIBUTES[a][2]
        unique = sum(1 for f in facts if f[1] == a and f[2] == v) == 1
        q = reverse.format(v=v) if reverse and unique and rng.random() < 0.3 else ATTRIBUTES[a][1].format(n=n)
        lines.append(f"{q} {fact_text(rng, n, a, v)}")
    # a held-out context must not appear even inside a longer paragraph
    return "" if any(c in text for c in banned["contexts"]) else "\n".join(lines)


def code_doc(rng, lex, banned, families):
    """A small module: functions with a docstring or a comment, then asserts."""
    parts, asserts = [], []
    for _ in range(rng.randint(1, 3)):
        ex = code_example(rng, lex, families, max_len=10_000)
        if ex["target"] in banned["exact"]:
            continue
        what = ex["what"][0].upper() + ex["what"][1:]
        what = what.replace("Returns", "Return", 1).replace("Checks", "Check", 1)
        head, body = ex["target"].split("\n", 1)
        if rng.random() < 0.5:
            parts.append(f'{head}\n    """{what}."""\n{body}')
        else:
            parts.append(f"# {what}.\n{ex['target']}")
        asserts += ex["test_list"][:rng.randint(1, 3)]
    return "\n\n\n".join(parts) + ("\n\n\n" + "\n".join(asserts) if asserts else "")


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
    p.add_argument("--tokenizer", default="byte", choices=TOKENIZERS, help="tokenizer of the pretraining .bin")
    p.add_argument("--train", type=int, default=4000, help="train examples per task")
    p.add_argument("--validation", type=int, default=200, help="validation examples per task")
    p.add_argument("--test", type=int, default=200, help="test examples per task")
    p.add_argument("--pretrain_tokens", type=int, default=2_000_000, help="pretraining tokens (train + val)")
    p.add_argument("--val_frac", type=float, default=0.05, help="pretraining tokens held out in val.bin")
    p.add_argument("--mix", default="english=0.3,french=0.2,facts=0.25,code=0.2,bilingual=0.05",
                   help="pretraining sources by share of tokens (paper: 80%% text, 20%% code)")
    p.add_argument("--vocab", type=float, default=1.0, help="fraction of the word lists in use (difficulty)")
    p.add_argument("--people", type=int, default=3, help="people per QA context; the rest are distractors")
    p.add_argument("--code_families", default=",".join(CODE_FAMILIES), help="function families for code")
    p.add_argument("--max_len", type=int, default=256,
                   help=f"block in bytes: input + the task's longest target + {SPECIALS} must fit")
    args = p.parse_args(argv)
    args.code_families = [f for f in args.code_families.split(",") if f]
    bad = [f for f in args.code_families if f not in CODE_FAMILIES]
    if bad or not args.code_families:
        p.error(f"--code_families: unknown {bad}; choose from {CODE_FAMILIES}")
    if not 0 < args.vocab <= 1:
        p.error("--vocab must be in (0, 1]")
    if args.max_len < 128:
        p.error("--max_len must be >= 128 (a QA context needs room for a few facts)")
    if not 1 <= args.people <= 6:
        p.error("--people must be in 1..6")
    if min(args.train, args.validation, args.test) < 1:
        p.error("--train/--validation/--test must be >= 1")
    try:
        args.mix = parse_mix(args.mix)
    except ValueError as e:
        p.error(f"--mix: {e}")
    return args


def prepare(args, command=""):
    rng = random.Random(args.seed)  # the one source of randomness: same seed, same bytes
    tok = get_tokenizer(args.tokenizer)
    lex = build_lexicon(rng, args.vocab)
    sizes = {"test": args.test, "validation": args.validation, "train": args.train}
    common = {"sources": [{"name": "embedded synthetic world", "generator": "data/embedded/prepare.py",
                           "seed": args.seed}],
              "license": "generated by this repository's code; no third-party text",
              "seed": args.seed, "command": command, "max_len_bytes": args.max_len}
    words = (len(lex["nouns"]) + len(lex["adjectives"]) + len(lex["verbs"]) + len(lex["names"])
             + len(lex["cities"]) + len(lex["jobs"]) + len(NUMBERS) + len(ADVERBS) + len(PREPOSITIONS))
    print(f"world: {words} content words ({len(lex['nouns'])} nouns, {len(lex['adjectives'])} adjectives, "
          f"{len(lex['verbs'])} verbs, {len(lex['names'])} names, {len(lex['cities'])} cities)")

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
        "qa": {s: qa_baselines(splits_of["qa"]["train"], splits_of["qa"][s]) for s in ("validation", "test")},
        "code": {s: {"empty_function_pass_rate": 0.0} for s in ("validation", "test")},
    }
    notes = {
        "translation": "English -> French-like (real French words, no accents, simplified deterministic grammar: "
                       "adjective after the noun, gender/number agreement, verb agreement, adverb after the verb, "
                       "'in <city>' -> 'a <city>'). Baselines: BLEU of copying the English input, and of a word-by-"
                       "word dictionary translation in English order without agreement.",
        "qa": f"{args.people} people per context with 1-3 shuffled facts each; with 2+ people the question's fact "
              "has a distractor of the same kind about someone else. Answers are exact spans of the context. "
              "Baselines (SQuAD-style normalised EM/F1): empty answer; the most frequent train answer for the "
              "question's kind; the first span of the right kind in the context (ignores the name).",
        "code": "One-line description + its asserts (MBPP-like prompt; as many of the 3 as fit are shown, all 3 "
                f"are run) -> a function; families {args.code_families}; names, argument names and constants "
                "drawn per example; the tests reject the function with any one constant moved by one, one "
                "returning its argument and one returning None, so an empty function passes 0%.",
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
                 "contain; it is a small share so that fine-tuning still has the translation to learn. "
                 "No validation/test sentence, QA context or function appears in it."})
    print(f"pretrain     {meta['train_tokens']:,} train + {meta['val_tokens']:,} val tokens ({tok.name}): "
          + ", ".join(f"{s['name']} {s['fraction']:.0%}" for s in meta["sources"]))
    return meta


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = get_args(argv)
    prepare(args, command=shlex.join(["python", "data/embedded/prepare.py", *argv]))
    print(f"wrote {args.out_dir}")


if __name__ == "__main__":
    main()
