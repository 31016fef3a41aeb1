"""Text side: the tokenizer (punctuation, unknown words and truncation reported, JSON round trip), the
sentence encoder's independence from padding and batch order, the matching loss and its gradients,
and the embeddings loader's refusals."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from img2img.errors import Img2ImgError, TextError
from img2img.text import (
    PAD_ID,
    UNK_ID,
    ImageEncoder,
    SentenceEncoder,
    Tokenizer,
    load_embeddings,
    matching_loss,
    split_words,
)

CAPTIONS = [
    "A red circle on a blue background.",
    "a red square, on a green background!",
    "There is a BLUE triangle on a red background",
    "a yellow circle against a black background",
]


def test_split_words_lowercases_and_drops_punctuation() -> None:
    assert split_words("A red, CIRCLE!  on a blue-background... (it's big)") == [
        "a", "red", "circle", "on", "a", "blue", "background", "it's", "big",
    ]  # fmt: skip
    assert split_words(" ,.;!? ") == []


def test_tokenizer_vocabulary_is_ordered_by_count_then_alphabet() -> None:
    tok = Tokenizer.build(CAPTIONS)
    assert tok.vocab[:2] == ["<pad>", "<unk>"] and tok.vocab[2:5] == ["a", "background", "on"]
    assert Tokenizer.build(reversed(CAPTIONS)).vocab == tok.vocab  # independent of caption order
    rare = Tokenizer.build(CAPTIONS, min_count=2)
    assert "red" in rare.vocab and "yellow" not in rare.vocab and "circle" in rare.vocab
    with pytest.raises(TextError, match="no word occurs"):
        Tokenizer.build(CAPTIONS, min_count=100)


def test_encode_reports_unknown_words_and_truncation() -> None:
    tok = Tokenizer.build(CAPTIONS, max_len=6)
    ids, unknown, truncated = tok.encode("A purple circle, on a plaid background")
    assert unknown == ["purple", "plaid"] and truncated == 1  # "background" is the 7th word
    assert ids == [tok.index["a"], UNK_ID, tok.index["circle"], tok.index["on"], tok.index["a"], UNK_ID]
    assert tok.decode(ids) == "a <unk> circle on a <unk>"
    enc = tok.encode("Red circle!")
    assert enc.unknown == [] and enc.truncated == 0 and tok.decode(enc.ids) == "red circle"
    assert tok.encode("zebra zebra quagga").unknown == ["zebra", "quagga"]


def test_encode_batch_pads_and_refuses_empty_captions() -> None:
    tok = Tokenizer.build(CAPTIONS)
    batch = tok.encode_batch(["a red circle", "red", "a mauve circle"])
    assert batch.ids.shape == (3, 3) and batch.lengths.tolist() == [3, 1, 3]
    assert batch.ids[1, 1:].tolist() == [PAD_ID, PAD_ID] and batch.unknown == [[], [], ["mauve"]]
    with pytest.raises(TextError, match="without any words"):
        tok.encode_batch(["a red circle", "?!"])


def test_tokenizer_round_trips_through_json() -> None:
    tok = Tokenizer.build(CAPTIONS, max_len=9)
    again = Tokenizer.from_dict(json.loads(json.dumps(tok.to_dict())))
    assert again.vocab == tok.vocab and again.max_len == 9
    for text in [*CAPTIONS, "an orange hexagon on a red background"]:
        assert again.encode(text) == tok.encode(text)
    for bad in [{"format": "other"}, {**tok.to_dict(), "version": 2}, {**tok.to_dict(), "words": "a b"}, []]:
        with pytest.raises(TextError):
            Tokenizer.from_dict(bad)
    with pytest.raises(TextError, match="duplicate"):
        Tokenizer.from_dict({**tok.to_dict(), "words": ["a", "b", "a"]})
    with pytest.raises(TextError, match="single lower-case"):
        Tokenizer.from_dict({**tok.to_dict(), "words": ["red circle"]})


def test_sentence_encoder_ignores_padding_and_batch_order() -> None:
    torch.manual_seed(0)
    tok = Tokenizer.build(CAPTIONS)
    enc = SentenceEncoder(len(tok), embed_dim=8, hidden=6, out_dim=10, num_layers=2).eval()
    batch = tok.encode_batch(["a red circle", "there is a blue triangle on a red background"])
    out = enc(batch.ids, batch.lengths)
    assert out.shape == (2, 10)
    alone = tok.encode_batch(["a red circle"])
    torch.testing.assert_close(enc(alone.ids, alone.lengths)[0], out[0], rtol=0, atol=1e-6)
    padded = torch.cat((alone.ids, torch.full((1, 20), PAD_ID)), 1)
    torch.testing.assert_close(enc(padded)[0], out[0], rtol=0, atol=1e-6)  # lengths from the pad ids
    torch.testing.assert_close(enc(batch.ids.flip(0), batch.lengths.flip(0)), out.flip(0), rtol=0, atol=1e-6)
    assert not torch.allclose(out[0], out[1])
    with pytest.raises(ValueError, match="tokens"):
        enc(torch.zeros(1, 4, dtype=torch.int64))


def test_matching_loss_prefers_matched_pairs() -> None:
    g = torch.Generator().manual_seed(0)
    image = torch.randn(8, 16, generator=g)
    text = image + 0.1 * torch.randn(8, 16, generator=g)
    matched = matching_loss(text, image)
    shuffled = matching_loss(text.roll(1, 0), image)
    assert matched < 0.1 < 2.0 < shuffled
    torch.testing.assert_close(matching_loss(image, text), matched)  # symmetric
    with pytest.raises(ValueError, match="equal shape"):
        matching_loss(text[:4], image)


def test_matching_loss_trains_both_encoders() -> None:
    torch.manual_seed(0)
    tok = Tokenizer.build(CAPTIONS)
    text_enc = SentenceEncoder(len(tok), embed_dim=8, hidden=8, out_dim=16)
    image_enc = ImageEncoder(width=4, n_layers=3, out_dim=16)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    batch = tok.encode_batch(CAPTIONS)
    assert image_enc(images).shape == (4, 16)
    opt = torch.optim.Adam([*text_enc.parameters(), *image_enc.parameters()], lr=1e-2)
    first = None
    for _ in range(15):
        loss = matching_loss(text_enc(batch.ids, batch.lengths), image_enc(images))
        opt.zero_grad()
        loss.backward()
        if first is None:
            first = loss.item()
            for p in (text_enc.embed.weight, text_enc.rnn.weight_hh_l0_reverse, image_enc.features[0].weight):
                assert p.grad is not None and p.grad.abs().sum() > 0
        opt.step()
    text_enc.eval(), image_enc.eval()
    with torch.no_grad():
        t, i = text_enc(batch.ids, batch.lengths), image_enc(images)
    assert matching_loss(t, i) < 0.5 * first
    assert matching_loss(t, i) < matching_loss(t.roll(1, 0), i)


def save(tmp_path, name: str, arr) -> str:
    path = tmp_path / name
    np.save(path, arr, allow_pickle=True)
    return str(path)


def test_load_embeddings_accepts_plain_float_arrays(tmp_path) -> None:
    arr = np.random.default_rng(0).standard_normal((5, 7))
    out = load_embeddings(save(tmp_path, "e.npy", arr), dim=7)
    assert out.dtype == np.float32 and out.shape == (5, 7)
    np.testing.assert_allclose(out, arr, rtol=1e-6)
    assert load_embeddings(save(tmp_path, "h.npy", arr.astype(np.float16))).dtype == np.float32


@pytest.mark.parametrize(
    "arr, match",
    [
        (np.array([{"a": 1}, None], dtype=object), "not a plain numeric"),
        (np.zeros(7), "2-D"),
        (np.zeros((2, 10, 7)), "reshape"),
        (np.zeros((3, 7), dtype=np.int64), "floating point"),
        (np.zeros((0, 7)), "empty"),
        (np.zeros((3, 8)), "dimension 8, the model expects 7"),
        (np.array([[0.0] * 7, [np.nan] + [0.0] * 6]), "1 row.*NaN or infinity.*row 1"),
        (np.array([[np.inf] * 7]), "NaN or infinity"),
    ],
)
def test_load_embeddings_refuses(tmp_path, arr, match: str) -> None:
    with pytest.raises(TextError, match=match) as info:
        load_embeddings(save(tmp_path, "bad.npy", arr), dim=7)
    assert isinstance(info.value, Img2ImgError) and "bad.npy" in str(info.value)


def test_load_embeddings_refuses_pickles_archives_and_missing_files(tmp_path) -> None:
    pkl = tmp_path / "emb.pickle"
    pkl.write_bytes(pickle.dumps([[0.0] * 4]))
    with pytest.raises(TextError, match="not a plain numeric"):
        load_embeddings(pkl)
    npz = tmp_path / "emb.npz"
    np.savez(npz, emb=np.zeros((2, 4)))
    with pytest.raises(TextError, match="npz"):
        load_embeddings(npz)
    with pytest.raises(TextError, match="not found"):
        load_embeddings(tmp_path / "missing.npy")
    trunc = tmp_path / "trunc.npy"
    trunc.write_bytes(open(save(tmp_path, "ok.npy", np.zeros((64, 64))), "rb").read()[:200])
    with pytest.raises(TextError, match="trunc.npy"):
        load_embeddings(trunc)
