"""Does a text -> image model draw what it is asked for? On the procedural shapes set (`img2img data
shapes`), a small attribute classifier (shape, shape colour, background colour), trained on real images
and checked on held-out real ones, reads the generated images: per stage, how often each asked-for
attribute is there, on combinations seen in training and on held-out combinations, against chance.

Images come in as arrays (the caller reads the data set), so this module needs no training code."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("shape", "colour", "background")
CLASSIFIER_SIZE = 32  # every image is resized to this side before classifying


class AttributeClassifier(nn.Module):
    """(N, 3, 32, 32) in [-1, 1] -> logits per head: shape (n_shapes), colour and background (n_colours)."""

    def __init__(self, n_shapes: int = 3, n_colours: int = 6, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3, 1, 1), nn.BatchNorm2d(w), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, 1, 1), nn.BatchNorm2d(2 * w), nn.ReLU(True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, 1, 1), nn.BatchNorm2d(4 * w), nn.ReLU(True), nn.MaxPool2d(2),
        )  # fmt: skip
        feat = 4 * w * (CLASSIFIER_SIZE // 8) ** 2
        self.heads = nn.ModuleDict(
            {
                "shape": nn.Linear(feat, n_shapes),
                "colour": nn.Linear(feat, n_colours),
                "background": nn.Linear(feat, n_colours),
            }  # fmt: skip
        )

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = self.features(x).flatten(1)
        return {k: head(h) for k, head in self.heads.items()}


def prepare(images: torch.Tensor | np.ndarray) -> torch.Tensor:
    """NCHW in [-1, 1] (tensor) or NHWC in [0, 1] (numpy, as models return) -> (N, 3, 32, 32) in [-1, 1]."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).permute(0, 3, 1, 2) * 2 - 1
    x = images.float()
    if x.shape[-1] != CLASSIFIER_SIZE:
        x = F.interpolate(x, size=(CLASSIFIER_SIZE, CLASSIFIER_SIZE), mode="bilinear", antialias=True)
    return x.clamp(-1, 1)


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, *, steps: int = 400, batch_size: int = 64, seed: int = 0,
    n_shapes: int = 3, n_colours: int = 6,
) -> AttributeClassifier:  # fmt: skip
    """Train on (N, 3, 32, 32) images in [-1, 1] with (N, 3) labels (shape, colour, background);
    light augmentation (flips, small shifts) so it reads shapes, not their exact pixels."""
    if len(images) != len(labels) or len(images) < 2:
        raise ValueError(f"need matching images and labels (>= 2), got {len(images)} and {len(labels)}")
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    net = AttributeClassifier(n_shapes, n_colours)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    net.train()
    for _ in range(steps):
        idx = torch.randint(len(images), (min(batch_size, len(images)),), generator=g)
        x, y = images[idx], labels[idx]
        if torch.rand((), generator=g) < 0.5:
            x = x.flip(-1)
        dx, dy = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
        x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        out = net(x)
        loss = sum(F.cross_entropy(out[h], y[:, k]) for k, h in enumerate(HEADS))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval()


@torch.no_grad()
def predict(net: AttributeClassifier, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """(N, 3) predicted (shape, colour, background) ids."""
    net.eval()
    preds = []
    for i in range(0, len(images), batch_size):
        out = net(images[i : i + batch_size])
        preds.append(torch.stack([out[h].argmax(1) for h in HEADS], 1))
    return torch.cat(preds) if preds else torch.zeros(0, 3, dtype=torch.int64)


def accuracies(pred: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Per attribute and all three together: fraction of images where the prediction equals the label."""
    hit = pred == labels
    out = {h: float(hit[:, k].float().mean()) for k, h in enumerate(HEADS)}
    out["all"] = float(hit.all(1).float().mean())
    return out


def chance(n_shapes: int = 3, n_colours: int = 6) -> dict[str, float]:
    """Guessing uniformly: 1/3 for the shape, 1/6 per colour, 1/3 * 1/6 * 1/5 for all three at once
    (a random colour-background pair with the two different)."""
    return {"shape": 1 / n_shapes, "colour": 1 / n_colours, "background": 1 / n_colours,
            "all": 1 / (n_shapes * n_colours * (n_colours - 1))}  # fmt: skip


def evaluate_generated(
    classifier: AttributeClassifier, model: Any, prompts: Sequence[str], labels: torch.Tensor, *, n: int = 4,
    seed: int = 0, stage: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Generate `n` images per prompt with a TextModel and score them against each prompt's (shape,
    colour, background) labels. Returns accuracies, chance, the number of images and unknown words."""
    images, targets, unknown = [], [], set()
    for i, prompt in enumerate(prompts):
        result = model([prompt], n=n, seed=seed + 1000 * i, stage=stage)[0]
        unknown.update(result.unknown_words)
        images.append(prepare(np.stack(result.images)))
        targets.append(labels[i].expand(n, -1))
    pred = predict(classifier, torch.cat(images))
    return {**accuracies(pred, torch.cat(targets)), "images": len(prompts) * n, "prompts": len(prompts),
            "unknown_words": sorted(unknown)}  # fmt: skip
