"""Networks of the text side of text-to-image generation (see `img2img.text` for the tokenizer and the
matching loss): a bidirectional-GRU sentence encoder and a small image encoder, trained together with
the sentence-level DAMSM loss of Xu et al. 2018 ("AttnGAN", Sec. 3.3)."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

PAD_ID = 0  # token id of padding (the tokenizer's `<pad>`)


class SentenceEncoder(nn.Module):
    """Token ids (N, L) [+ lengths (N,)] -> one embedding per caption (N, out_dim).

    Word embeddings -> bidirectional GRU over the packed sequence (padding never enters the RNN) ->
    the last hidden states of both directions, concatenated -> Linear. Without `lengths`, they are
    counted from the non-pad ids (right padding).
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 128,
        hidden: int = 128,
        out_dim: int = 1024,
        num_layers: int = 1,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if min(vocab_size, embed_dim, hidden, out_dim, num_layers) < 1:
            raise ValueError("SentenceEncoder sizes must be positive")
        self.out_dim = out_dim
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.drop = nn.Dropout(dropout)
        rnn_dropout = dropout if num_layers > 1 else 0.0  # GRU dropout acts between layers only
        self.rnn = nn.GRU(embed_dim, hidden, num_layers, batch_first=True, bidirectional=True, dropout=rnn_dropout)
        self.proj = nn.Linear(2 * hidden, out_dim)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if ids.ndim != 2:
            raise ValueError(f"token ids must be (N, L), got {tuple(ids.shape)}")
        if lengths is None:
            lengths = (ids != PAD_ID).sum(1)
        if (lengths < 1).any() or (lengths > ids.shape[1]).any():
            raise ValueError(f"every caption needs 1..{ids.shape[1]} tokens, got lengths {lengths.tolist()}")
        x = self.drop(self.embed(ids))
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        _, h = self.rnn(packed)  # (num_layers * 2, N, hidden), already in the input's order
        return self.proj(torch.cat((h[-2], h[-1]), 1))


class ImageEncoder(nn.Module):
    """Image (N, in_ch, H, W) in [-1, 1] -> (N, out_dim): `n_layers` stride-2 4x4 convs doubling from
    `width` (BN + LeakyReLU(0.2) after all but the first), global average pooling, Linear."""

    def __init__(self, in_ch: int = 3, width: int = 32, n_layers: int = 4, out_dim: int = 1024) -> None:
        super().__init__()
        if min(in_ch, width, n_layers, out_dim) < 1:
            raise ValueError("ImageEncoder sizes must be positive")
        layers: list[nn.Module] = [nn.Conv2d(in_ch, width, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for k in range(1, n_layers):
            cin, cout = width * 2 ** (k - 1), width * 2**k
            layers += [nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
        self.features = nn.Sequential(*layers)
        self.proj = nn.Linear(width * 2 ** (n_layers - 1), out_dim)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.proj(self.features(image).mean(dim=(2, 3)))
