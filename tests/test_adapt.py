"""adapt.py (AR2Diff): the conversion keeps the AR weights and logits, adapts with the diffusion
loss through train.py, and refuses what it cannot convert."""
import os

import pytest
import torch

import adapt
import train
from data.common import load_checkpoint
from data.tokenizer import get_tokenizer
from model import model_from_checkpoint
from tests.tiny_data import one_thread, tiny_flags, write_tiny_corpus, write_tiny_task  # noqa: F401 (autouse fixture)

TOK = get_tokenizer("byte")
WTE = ("transformer.wte.weight", "lm_head.weight")  # tied: one tensor under two names


@pytest.fixture(scope="module")
def ar_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ar")
    corpus = write_tiny_corpus(root / "corpus")
    train.main(tiny_flags(corpus, root / "ar", max_steps=6))
    return corpus, str(root / "ar" / "ckpt.pt")


def adapt_flags(corpus, ar_ckpt, out_dir, steps, noise="mask"):
    flags = tiny_flags(corpus, out_dir, max_steps=0)
    del flags[flags.index("--max_steps"): flags.index("--max_steps") + 2]
    return ["--init_from", ar_ckpt, "--steps", str(steps), "--noise", noise] + flags


def test_ar2diff_0_keeps_weights_and_ar_logits(ar_run, tmp_path):
    corpus, ar_ckpt = ar_run
    out = adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path, 0))
    assert any("[MASK]" in c and "mean" in c for c in out["changes"])
    ar, conv = load_checkpoint(ar_ckpt), load_checkpoint(tmp_path / "ckpt.pt")
    assert conv["objective"] == "diffusion" and conv["noise"] == "mask" and conv["step"] == 0
    assert set(conv["model"]) == set(ar["model"])
    for k, v in ar["model"].items():
        if k in WTE:
            keep = torch.arange(v.size(0)) != TOK.mask_id
            assert torch.equal(conv["model"][k][keep], v[keep])
            assert torch.allclose(conv["model"][k][TOK.mask_id], v[: TOK.n_ordinary].mean(0))
        else:
            assert torch.equal(conv["model"][k], v), k
    # the converted model, run with the AR attention rule, is still the AR model
    idx = torch.randint(0, TOK.n_ordinary, (3, 20), generator=torch.Generator().manual_seed(0))
    prefix_len, seq_len = torch.tensor([5, 1, 9]), torch.tensor([20, 14, 20])
    with torch.no_grad():
        before = model_from_checkpoint(ar).eval()(idx, prefix_len, seq_len, mode="ar")
        after = model_from_checkpoint(conv).eval()(idx, prefix_len, seq_len, mode="ar")
    keep = torch.arange(TOK.vocab_size) != TOK.mask_id
    assert torch.equal(before[..., keep], after[..., keep])
    assert len(out["history"]) == 1 and out["history"][0]["step"] == 0  # the AR2Diff_0 diffusion val loss
    assert load_checkpoint(tmp_path / "converted.pt")["converted_from"] == ar_ckpt


def test_ar2diff_n_trains_with_the_diffusion_loss(ar_run, tmp_path):
    corpus, ar_ckpt = ar_run
    out = adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path, 4, noise="uniform") + ["--lr", "1e-3"])
    assert out["objective"] == "diffusion" and out["noise"] == "uniform" and out["step"] == 4
    assert [h["step"] for h in out["history"]] == [0, 4]
    assert out["history"][-1]["val_loss"] < out["history"][0]["val_loss"]
    ckpt = load_checkpoint(tmp_path / "ckpt.pt")
    assert ckpt["args"]["lr"] == 1e-3 and ckpt["args"]["init_from"] == os.path.join(str(tmp_path), "converted.pt")
    ar = load_checkpoint(ar_ckpt)  # uniform noise never reads [MASK]: its row is left alone
    assert torch.equal(load_checkpoint(tmp_path / "converted.pt")["model"][WTE[0]], ar["model"][WTE[0]])
    # the adapted checkpoint fine-tunes as a diffusion model, and resumes like any run
    resumed = train.main(["--init_from", "resume", "--out_dir", str(tmp_path), "--max_steps", "5"])
    assert resumed["step"] == 5 and resumed["noise"] == "uniform"


def test_refuses_non_ar_checkpoint_and_flags_it_sets(ar_run, tmp_path):
    corpus, ar_ckpt = ar_run
    adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path / "d", 0))
    with pytest.raises(ValueError, match=r"not an AR checkpoint \(objective 'diffusion'"):
        adapt.main(adapt_flags(corpus, str(tmp_path / "d" / "ckpt.pt"), tmp_path / "dd", 0))
    with pytest.raises(ValueError, match=r"--max_steps.*adapt.py sets"):
        adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path / "x", 0) + ["--max_steps", "3"])
    task = write_tiny_task(tmp_path / "reverse")
    with pytest.raises(ValueError, match=r"is a task; adapt.py continues pretraining on a corpus"):
        adapt.main(adapt_flags(task, ar_ckpt, tmp_path / "x", 0))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        adapt.main(adapt_flags(corpus, str(tmp_path / "missing.pt"), tmp_path / "x", 0))


def test_from_gpt2_weights(shared_data, tmp_path, monkeypatch):
    """--init_from gpt2 in train.py and adapt.py: a tiny random Hugging Face GPT-2 stands in for the
    download; the gpt2 tokenizer reads tiktoken's offline cache (../shared/data/tiktoken_cache)."""
    transformers = pytest.importorskip("transformers")
    from data.common import write_corpus
    from model import GPT
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_positions=32, n_embd=32, n_layer=2, n_head=2))
    monkeypatch.setattr(GPT, "from_pretrained", classmethod(lambda cls, name: cls.from_hf(hf)))
    tok = get_tokenizer("gpt2")
    corpus = str(tmp_path / "corpus")
    write_corpus(corpus, [("t", tok.encode(f"the cat {i} sat on the mat.")) for i in range(200)], tok, 0.2, {})
    out = train.main(tiny_flags(corpus, tmp_path / "ft", init_from="gpt2", max_steps=2))
    assert out["objective"] == "ar" and load_checkpoint(tmp_path / "ft" / "ckpt.pt")["tokenizer"]["name"] == "gpt2"
    adapt.main(adapt_flags(corpus, "gpt2", tmp_path / "a0", 0))
    conv = load_checkpoint(tmp_path / "a0" / "ckpt.pt")
    assert conv["objective"] == "diffusion" and conv["config"]["vocab_size"] == tok.vocab_size == 50304


def test_refuses_an_out_dir_holding_another_run(ar_run, tmp_path):
    """adapt.py --out_dir <the AR run's own folder> used to replace its best.pt and ckpt.pt; it is
    refused before anything is written, as is another source in an adaptation's folder."""
    corpus, ar_ckpt = ar_run
    ar_dir = os.path.dirname(ar_ckpt)
    kept = {f: open(os.path.join(ar_dir, f), "rb").read() for f in sorted(os.listdir(ar_dir))}
    with pytest.raises(ValueError, match=rf"^--out_dir {ar_dir} holds another run: --objective ar, --init_from "
                                         rf"scratch, not --objective diffusion, --init_from {ar_ckpt}; pass another "
                                         rf"--out_dir, or --overwrite"):
        adapt.main(adapt_flags(corpus, ar_ckpt, ar_dir, 0))
    assert {f: open(os.path.join(ar_dir, f), "rb").read() for f in sorted(os.listdir(ar_dir))} == kept
    adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path / "a", 0))
    adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path / "a", 0))  # the same adaptation again: allowed
    other = os.path.join(ar_dir, "best.pt")
    with pytest.raises(ValueError, match=rf"--init_from {ar_ckpt}, not --init_from {other}"):
        adapt.main(adapt_flags(corpus, other, tmp_path / "a", 0))
    with pytest.raises(ValueError, match=r"--noise mask, not --noise uniform"):
        adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path / "a", 0, noise="uniform"))
    assert load_checkpoint(tmp_path / "a" / "converted.pt")["noise"] == "mask"  # not rewritten
    adapt.main(adapt_flags(corpus, ar_ckpt, tmp_path / "a", 0, noise="uniform") + ["--overwrite"])
    assert load_checkpoint(tmp_path / "a" / "ckpt.pt")["noise"] == "uniform"
