"""`img2img eval shapes --weights W --data SHAPES_DIR`: attribute accuracy of a text -> image model on the
procedural shapes set, per stage, on seen and held-out combinations, against chance (img2img.eval.shapes)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from img2img.errors import Img2ImgError

HELP = "text -> image on the shapes set: shape / colour / background accuracy per stage, seen vs held-out"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", required=True, help="a generate model: catalog name or our .safetensors")
    p.add_argument("--data", required=True, type=Path, help="an `img2img data shapes` folder")
    p.add_argument("-n", type=int, default=4, dest="samples", help="images per prompt (default 4)")
    p.add_argument("--seed", type=int, default=0, help="generation and classifier seed (default 0)")
    p.add_argument("--stage", type=int, action="append", choices=[1, 2], help="stage(s) to measure (default: all)")
    p.add_argument("--classifier-steps", type=int, default=400, help="attribute classifier training steps")
    p.add_argument("--max-train", type=int, default=3000, help="real training images for the classifier")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps")


def _real(root: Path, split: str, limit: int | None):
    import torch

    from img2img.data.shapes import ShapesCaptionDataset
    from img2img.eval.shapes import CLASSIFIER_SIZE

    data = ShapesCaptionDataset(root, split=split, size=CLASSIFIER_SIZE)
    idx = list(range(len(data)))[:limit]
    if not idx:
        return torch.zeros(0, 3, CLASSIFIER_SIZE, CLASSIFIER_SIZE), torch.zeros(0, 3, dtype=torch.int64), data
    images = torch.stack([data.load_image(i) for i in idx])
    return images, torch.tensor([data.labels[i] for i in idx], dtype=torch.int64), data


def run(args: argparse.Namespace) -> int:
    import torch

    from img2img.data.shapes import COLOUR_NAMES, SHAPES, TEMPLATES
    from img2img.eval.shapes import accuracies, chance, evaluate_generated, predict, train_classifier
    from img2img.infer.model import load

    if args.json and args.json.exists() and not args.overwrite:
        raise Img2ImgError(f"{args.json} exists; choose another --json or pass --overwrite")
    if args.samples < 1 or args.classifier_steps < 1 or args.max_train < 2:
        raise Img2ImgError("-n and --classifier-steps must be >= 1, --max-train >= 2")
    model = load(args.weights, device=args.device)
    if model.task != "generate":
        raise Img2ImgError(f"{model.card.name} is a {model.task} model; eval shapes measures generate models")
    stages = sorted(set(args.stage or model.stages))
    missing = [s for s in stages if s not in model.stages]
    if missing:
        raise Img2ImgError(f"{model.card.name} has stage(s) {sorted(model.stages)}, not {missing}")
    torch.manual_seed(args.seed)
    train_x, train_y, _ = _real(args.data, "train", args.max_train)
    if len(train_x) < 2:
        raise Img2ImgError(f"{args.data}: too few training images for the attribute classifier")
    clf = train_classifier(train_x, train_y, steps=args.classifier_steps, seed=args.seed)
    real, prompts = {}, {}
    for split, key in (("test_seen", "seen"), ("test_unseen", "unseen")):
        x, y, data = _real(args.data, split, None)
        if len(x):
            real[key] = {**accuracies(predict(clf, x), y), "images": len(x)}
        combos = sorted(set(data.labels))
        texts = [TEMPLATES[0].format(shape=SHAPES[s], colour=COLOUR_NAMES[c], background=COLOUR_NAMES[b])
                 for s, c, b in combos]  # fmt: skip
        prompts[key] = (texts, torch.tensor(combos, dtype=torch.int64).reshape(-1, 3))
    results = {}
    for stage in stages:
        results[str(stage)] = {
            key: evaluate_generated(clf, model, texts, labels, n=args.samples, seed=args.seed, stage=stage)
            for key, (texts, labels) in prompts.items()
            if texts
        }
    out = {
        "weights": str(args.weights), "data": str(args.data), "chance": chance(),
        "classifier": {"train_images": len(train_x), "steps": args.classifier_steps, "real_accuracy": real},
        "stages": results,
        "protocol": f"one prompt '{TEMPLATES[0]}' per (shape, colour, background) combination of test_seen (seen) "
        f"and test_unseen (held out of training), {args.samples} images each (seeds from {args.seed}); an attribute "
        "classifier trained on real training images (32 px) reads each image; accuracy = fraction of images whose "
        "predicted attribute is the asked-for one",
    }  # fmt: skip
    heads = ("shape", "colour", "background", "all")
    print(f"{'':18}" + "".join(f"{h:>11}" for h in heads))
    print(f"{'chance':18}" + "".join(f"{out['chance'][h]:>11.3f}" for h in heads))
    for key, acc in real.items():
        print(f"{'real ' + key:18}" + "".join(f"{acc[h]:>11.3f}" for h in heads))
    for stage, per in results.items():
        for key, acc in per.items():
            print(f"{f'stage {stage} ' + key:18}" + "".join(f"{acc[h]:>11.3f}" for h in heads))
    if args.json:
        from img2img.io.fileio import atomic_write_text

        atomic_write_text(args.json, json.dumps(out, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
