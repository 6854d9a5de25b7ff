"""
Tokenizers. The id layout is the same for every tokenizer, so nothing else needs a literal id:

    [0, n_ordinary)   ordinary tokens (bytes, or GPT-2 BPE merges)
    eos_id            end of text; also the padding of a diffusion target (the model learns length)
    mask_id           the absorbing [MASK] of the `mask` noise process; never produced by a sampler
    (.., vocab_size)  spare ids: vocab_size is padded to a multiple of 64 for fast matmuls

    byte: 256 bytes, eos 256, mask 257, vocab 320 (works offline anywhere)
    gpt2: tiktoken's GPT-2 BPE, 50256 merges, eos 50256 (<|endoftext|>), mask 50257, vocab 50304

A checkpoint stores `tok.state()`; `Tokenizer.check(state)` refuses a mismatch with a clear message.
"""


def _round_up(n, multiple=64):
    return (n + multiple - 1) // multiple * multiple


class Tokenizer:
    def __init__(self, name):
        if name == "byte":
            self._enc = None
            self.n_ordinary = 256
        elif name == "gpt2":
            try:
                import tiktoken
            except ImportError as e:
                raise ImportError("the gpt2 tokenizer needs tiktoken: pip install tiktoken") from e
            self._enc = tiktoken.get_encoding("gpt2")
            self.n_ordinary = self._enc.eot_token  # 50256: <|endoftext|> is the first special id
        else:
            raise ValueError(f"unknown tokenizer {name!r}; expected one of {TOKENIZERS}")
        self.name = name
        self.eos_id = self.n_ordinary
        self.mask_id = self.n_ordinary + 1
        self.vocab_size = _round_up(self.mask_id + 1)

    def encode(self, text):
        """Text -> list of ordinary ids (never a special id, whatever the text contains)."""
        if self._enc is None:
            return list(text.encode("utf-8"))
        return self._enc.encode_ordinary(text)

    def decode(self, ids):
        """Ids -> text; special and spare ids are dropped."""
        ids = [int(i) for i in ids if 0 <= int(i) < self.n_ordinary]
        if self._enc is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return self._enc.decode(ids)

    def state(self):
        return dict(name=self.name, n_ordinary=self.n_ordinary, eos_id=self.eos_id,
                    mask_id=self.mask_id, vocab_size=self.vocab_size)

    def check(self, state, what="checkpoint"):
        """Raise ValueError if `state` (from a checkpoint or a corpus meta.json) does not match."""
        mine = self.state()
        diff = {k: (state.get(k), v) for k, v in mine.items() if k in state and state[k] != v}
        if state.get("name", state.get("tokenizer")) not in (None, self.name) or diff:
            raise ValueError(f"{what} was made with tokenizer {state} but this run uses {mine}; "
                             f"differences (theirs, ours): {diff}")

    def __repr__(self):
        return f"Tokenizer({self.state()})"


TOKENIZERS = ("byte", "gpt2")


def get_tokenizer(name_or_state):
    """A tokenizer by name ('byte', 'gpt2') or from a checkpoint's saved state (checked)."""
    if isinstance(name_or_state, dict):
        tok = Tokenizer(name_or_state.get("name"))
        tok.check(name_or_state)
        return tok
    return Tokenizer(name_or_state)
