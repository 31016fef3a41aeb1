"""The text side of text-to-image generation: a word tokenizer built from training captions, a
bidirectional-GRU sentence encoder and a small image encoder trained with a symmetric contrastive
matching loss (the sentence-level DAMSM loss of Xu et al. 2018, "AttnGAN", Sec. 3.3, with gamma_3 =
1 / temperature). They stand in for the pretrained char-CNN-RNN embeddings StackGAN was trained on."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from img2img.archs.text_encoder import PAD_ID, ImageEncoder, SentenceEncoder  # noqa: F401 - re-exported
from img2img.errors import TextError

PAD, UNK = "<pad>", "<unk>"
UNK_ID = 1
TOKENIZER_FORMAT, TOKENIZER_VERSION = "img2img.tokenizer", 1
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # letters/digits, keeping inner apostrophes ("it's")


def split_words(text: str) -> list[str]:
    """Lower-cased words of `text`; punctuation, underscores and whitespace separate words and are dropped."""
    return _WORD.findall(text.lower())


class Encoding(NamedTuple):
    ids: list[int]  # token ids, unknown words as UNK_ID, at most max_len of them
    unknown: list[str]  # words of the kept part that are not in the vocabulary (first occurrence order)
    truncated: int  # number of words dropped beyond max_len


@dataclass
class TokenBatch:
    ids: torch.Tensor  # (N, L) int64, right-padded with PAD_ID
    lengths: torch.Tensor  # (N,) int64, >= 1
    unknown: list[list[str]]
    truncated: list[int]


class Tokenizer:
    """Word vocabulary: id 0 `<pad>`, id 1 `<unk>`, then the words. `encode` never drops a word
    silently: unknown words map to `<unk>` and are returned, and words beyond `max_len` are counted."""

    def __init__(self, words: Sequence[str], max_len: int = 32) -> None:
        if max_len < 1:
            raise TextError(f"tokenizer max_len must be >= 1, got {max_len}")
        words = list(words)
        bad = [w for w in words if not isinstance(w, str) or split_words(w) != [w]]
        if bad:
            raise TextError(f"vocabulary entries must be single lower-case words, got {bad[:5]}")
        dup = [w for w, n in Counter(words).items() if n > 1]
        if dup:
            raise TextError(f"vocabulary has duplicate words: {dup[:5]}")
        self.vocab = [PAD, UNK, *words]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_len = int(max_len)

    @classmethod
    def build(
        cls, captions: Iterable[str], min_count: int = 1, max_len: int = 32, max_words: int | None = None
    ) -> Tokenizer:
        """Vocabulary of the words seen at least `min_count` times, most frequent first (ties
        alphabetical, so the ids do not depend on caption order), at most `max_words` of them."""
        if min_count < 1:
            raise TextError(f"min_count must be >= 1, got {min_count}")
        counts = Counter(w for caption in captions for w in split_words(caption))
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if not kept:
            raise TextError(f"no word occurs {min_count} or more times in the captions: nothing to build from")
        return cls(kept[:max_words] if max_words is not None else kept, max_len=max_len)

    def __len__(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> Encoding:
        words = split_words(text)
        kept = words[: self.max_len]
        ids = [self.index.get(w, UNK_ID) for w in kept]
        unknown = list(dict.fromkeys(w for w, i in zip(kept, ids, strict=True) if i == UNK_ID))
        return Encoding(ids, unknown, len(words) - len(kept))

    def encode_batch(self, texts: Sequence[str]) -> TokenBatch:
        """Right-padded ids for several captions; TextError when a caption has no words at all."""
        encs = [self.encode(t) for t in texts]
        empty = [t for t, e in zip(texts, encs, strict=True) if not e.ids]
        if empty:
            raise TextError(f"caption without any words: {empty[0]!r}; write at least one word")
        width = max((len(e.ids) for e in encs), default=0)
        ids = torch.full((len(encs), width), PAD_ID, dtype=torch.int64)
        for row, e in enumerate(encs):
            ids[row, : len(e.ids)] = torch.tensor(e.ids, dtype=torch.int64)
        lengths = torch.tensor([len(e.ids) for e in encs], dtype=torch.int64)
        return TokenBatch(ids, lengths, [e.unknown for e in encs], [e.truncated for e in encs])

    def decode(self, ids: Iterable[int]) -> str:
        return " ".join(self.vocab[i] for i in ids if i != PAD_ID)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form (for a weights card); `from_dict` restores the same ids."""
        return {
            "format": TOKENIZER_FORMAT,
            "version": TOKENIZER_VERSION,
            "max_len": self.max_len,
            "words": self.vocab[2:],
        }

    @classmethod
    def from_dict(cls, d: Any) -> Tokenizer:
        if not isinstance(d, dict) or d.get("format") != TOKENIZER_FORMAT:
            raise TextError(f"not a tokenizer description (expected a dict with format {TOKENIZER_FORMAT!r})")
        if d.get("version") != TOKENIZER_VERSION:
            raise TextError(f"tokenizer version {d.get('version')!r} is not supported (this build reads 1)")
        words, max_len = d.get("words"), d.get("max_len")
        if not isinstance(words, list) or not isinstance(max_len, int):
            raise TextError("tokenizer description needs a 'words' list and an integer 'max_len'")
        return cls(words, max_len=max_len)


@runtime_checkable
class TextEncoder(Protocol):
    """What turns prompts into the embeddings a text -> image model is conditioned on. The bundled one is
    `BundledEncoder` (our tokenizer + sentence encoder, from the model's card); any object with these two
    members can take its place (`TextModel.set_text_encoder`), e.g. for released generators that take
    embeddings only. `encode` returns an N x embedding_dim array and, per prompt, the words it could not
    use (empty lists when it uses every word)."""

    embedding_dim: int

    def encode(self, prompts: list[str]) -> tuple[Any, list[list[str]]]: ...


class BundledEncoder:
    """Our tokenizer and sentence encoder network, as they travel in a StackGAN bundle."""

    def __init__(self, tokenizer: Tokenizer, net: torch.nn.Module, embedding_dim: int) -> None:
        self.tokenizer, self.net, self.embedding_dim = tokenizer, net.eval().requires_grad_(False), embedding_dim

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, list[list[str]]]:
        batch = self.tokenizer.encode_batch(prompts)
        with torch.inference_mode():
            return self.net(batch.ids, batch.lengths).float(), batch.unknown


def matching_loss(text_emb: torch.Tensor, image_emb: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Symmetric contrastive loss: row i of each is a matching (caption, image) pair, every other row a
    mismatch. Cosine similarities / temperature, cross-entropy text->image and image->text, averaged."""
    if text_emb.ndim != 2 or text_emb.shape != image_emb.shape:
        raise ValueError(
            f"need two (N, D) embeddings of equal shape, got {tuple(text_emb.shape)}, {tuple(image_emb.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = F.normalize(text_emb, dim=1) @ F.normalize(image_emb, dim=1).T / temperature
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


def _check_npy_header(name: str) -> None:
    """Refuse a damaged `.npy` header, or one whose shape needs more bytes than the file holds, before numpy
    allocates the array it announces."""
    import tokenize

    from numpy.lib import format as npy

    with open(name, "rb") as f:
        if f.read(6) != b"\x93NUMPY":
            return  # not .npy (an .npz or a pickle): np.load below says what it is
        f.seek(0)
        try:
            version = npy.read_magic(f)
            if version not in ((1, 0), (2, 0)):
                return  # a newer header version: np.load checks it
            read = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, _, dtype = read(f)
        except (ValueError, SyntaxError, tokenize.TokenError, TypeError, OverflowError) as e:
            raise TextError(f"{name}: damaged .npy header ({type(e).__name__}: {str(e)[:120]})") from None
        need = int(np.prod(shape, dtype=object)) * (dtype.itemsize or 1)
        have = os.fstat(f.fileno()).st_size - f.tell()
    if need > have:
        raise TextError(f"{name}: the .npy header announces shape {shape} ({need:,} bytes) but the file holds {have:,}")


def load_embeddings(path: str | os.PathLike, dim: int | None = None) -> np.ndarray:
    """Caption embeddings (N, D) float32 from a `.npy` file (no pickle: object arrays are refused).

    TextError when the file is missing or unreadable, not 2-D, not floating point, empty, holds NaN or
    infinity, or D differs from `dim`.
    """
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise TextError(f"embeddings file not found: {name}")
    _check_npy_header(name)
    try:
        arr = np.load(name, allow_pickle=False)
    except ValueError as e:  # numpy's wording for object arrays and for non-npy pickles
        raise TextError(
            f"{name}: not a plain numeric .npy array ({e}); save one with np.save(path, emb.astype(np.float32))"
        ) from e
    except (OSError, EOFError, SyntaxError, MemoryError) as e:  # SyntaxError: tokenize errors of a damaged header
        raise TextError(f"{name}: cannot read the .npy file ({type(e).__name__}: {str(e)[:120]})") from None
    if not isinstance(arr, np.ndarray):
        arr.close()  # an .npz archive
        raise TextError(f"{name}: is an .npz archive; save the (N, D) array alone with np.save")
    if arr.ndim != 2:
        hint = " (one row per caption: reshape it with emb.reshape(-1, emb.shape[-1]))" if arr.ndim > 2 else ""
        raise TextError(f"{name}: embeddings must be 2-D (N, D), got shape {arr.shape}{hint}")
    if arr.dtype.kind != "f":
        raise TextError(f"{name}: embeddings must be floating point, got dtype {arr.dtype}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise TextError(f"{name}: embeddings array is empty, shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise TextError(f"{name}: embeddings have dimension {arr.shape[1]}, the model expects {dim}")
    with np.errstate(over="ignore"):
        arr = arr.astype(np.float32, copy=False)  # float64 beyond float32's range becomes inf: checked below
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise TextError(
            f"{name}: {int(bad.sum())} row(s) hold NaN or infinity, or values too large for float32 "
            f"(first: row {int(np.argmax(bad))})"
        )
    return arr
