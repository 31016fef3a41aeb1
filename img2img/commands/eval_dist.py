"""`img2img eval dist --real DIR --fake DIR`: distribution metrics of a generated image set against real
images (FID, KID, Inception Score, improved precision/recall, Parzen log-likelihood) on Inception-v3 features."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

from img2img.errors import Img2ImgError

HELP = "Distribution metrics of generated images against real ones: FID, KID, IS, precision/recall, Parzen."
METRICS = ("fid", "kid", "is", "pr", "parzen")
DEFAULT_METRICS = "fid,kid,is,pr"

_EPILOG = """examples:
  img2img eval dist --real data/val --fake out/ --inception-weights pt_inception-2015-12-05-6726825d.pth
  img2img eval dist --real data/val --fake out/ --preprocess clean-fid --json dist.json --cache ~/.cache/feats
  img2img eval dist --real a/ --fake b/ --extractor random     # no weights: relative comparisons only
  img2img eval dist --real data/val_photos --weights pix2pix-facades-small --inputs data/val_labels --extractor random
  img2img eval dist --real shapes_photos/ --weights stackgan.safetensors --prompts prompts.txt -n 4 --seed 1
weights: FID, KID and IS are defined on the 2015 TensorFlow Inception-v3; pytorch-fid's port
pt_inception-2015-12-05-6726825d.pth (sha256-checked) is read from --inception-weights or
$IMG2IMG_HOME/weights/ (default ~/.cache/img2img/weights/). It is never downloaded.
--extractor random uses the same network with fixed random weights: its numbers compare sets with
each other in that random feature space only; they are not comparable with published values or
with the real weights' numbers, and every output says so.
preprocessing: pytorch-fid = bilinear resize to 299 (torch, align_corners=False), scaled to [-1, 1];
clean-fid = PIL bicubic resize of the 8-bit image to 299, without re-quantising. FIDs under the
two differ; compare numbers only under the same one.
metrics: fid (Frechet distance of pool features), kid (unbiased polynomial MMD^2 over random
subsets, mean +- std), is (Inception Score of --fake, mean +- std over splits), pr (improved
precision/recall, k-NN manifolds), parzen (Gaussian Parzen-window log-likelihood of held-out real
features under the fake ones, width chosen on the other half of the real set).
Parzen caveat (Theis et al. 2016): in high dimension Parzen-window estimates are far from the
true log-likelihood and rank models poorly; they are a poor proxy for sample quality. parzen is
therefore off by default and reported only for comparison with older papers.
exit status: 0 done, 2 usage, data or weights error"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = _EPILOG
    p.add_argument("--real", required=True, type=Path, metavar="DIR", help="folder of real (reference) images")
    p.add_argument("--fake", type=Path, metavar="DIR", help="folder of generated images (or generate them: --weights)")
    g = p.add_argument_group("generate the fake set first (instead of --fake)")
    g.add_argument("--weights", help="a model: catalog name or weights file; its kind decides the inputs")
    g.add_argument(
        "--inputs", type=Path, metavar="DIR", help="image or label-map files for upscale/translate/synthesize"
    )
    g.add_argument("--prompts", type=Path, metavar="FILE", help="text models: one prompt per line")
    g.add_argument("--text", action="append", default=[], help="text models: a prompt (repeatable)")
    g.add_argument("-n", type=int, default=1, dest="samples", help="text models: images per prompt (default 1)")
    g.add_argument("--save-fake", type=Path, metavar="DIR", help="keep the generated images here (default: temporary)")
    g.add_argument("--record", metavar="KEY", help="also store the scores in the card of --weights (our .safetensors)")
    p.add_argument(
        "--metrics", default=DEFAULT_METRICS, help=f"comma list of {','.join(METRICS)} (default %(default)s)"
    )
    p.add_argument("--extractor", default="inception", choices=["inception", "random"], help="feature network")
    p.add_argument("--inception-weights", type=Path, metavar="FILE", help="pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--preprocess", default="pytorch-fid", choices=["pytorch-fid", "clean-fid"], help="resize rule")
    p.add_argument(
        "--batch-size", type=int, default=32, metavar="N", help="images per forward pass (default %(default)s)"
    )
    p.add_argument("--json", type=Path, metavar="FILE", help="write the scores and the protocol here")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --json file")
    p.add_argument("--cache", type=Path, metavar="DIR", help="keep features here as .npz and reuse them")
    p.add_argument(
        "--seed", type=int, default=0, metavar="N", help="KID subsets, IS shuffle, Parzen split, random weights"
    )
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    t = p.add_argument_group("metric settings")
    t.add_argument(
        "--fid-method",
        default="eigh",
        choices=["eigh", "sqrtm"],
        help="eigh: numpy, stable (default); sqrtm: scipy, pytorch-fid's",
    )
    t.add_argument("--kid-subsets", type=int, default=100, help="random subsets (default %(default)s)")
    t.add_argument("--kid-subset-size", type=int, default=1000, help="capped at the set sizes (default %(default)s)")
    t.add_argument("--is-splits", type=int, default=10, help="capped at the fake set size (default %(default)s)")
    t.add_argument("--pr-k", type=int, default=3, help="k of the k-NN manifolds (default %(default)s)")


def _metrics(text: str) -> list[str]:
    names = [m.strip().lower() for m in text.split(",") if m.strip()]
    bad = [m for m in names if m not in METRICS]
    if bad or not names:
        raise Img2ImgError(f"--metrics {text!r}: choose from {','.join(METRICS)}")
    return list(dict.fromkeys(names))


def _check_args(args: argparse.Namespace) -> Path | None:
    """Refuse, before any work, what would fail later; returns the Inception weights file (None for random)."""
    if args.json is not None:
        from img2img.io.fileio import refuse_existing

        refuse_existing([args.json], overwrite=args.overwrite)
    limits = {"--batch-size": (args.batch_size, 1), "--kid-subsets": (args.kid_subsets, 1)}
    limits.update({"--kid-subset-size": (args.kid_subset_size, 2), "--is-splits": (args.is_splits, 1)})
    limits["--pr-k"] = (args.pr_k, 1)
    for flag, (value, least) in limits.items():
        if value < least:
            raise Img2ImgError(f"{flag} must be at least {least}, not {value}")
    if (args.fake is None) == (args.weights is None):
        raise Img2ImgError("give --fake DIR (generated images) or --weights W with --inputs / --prompts / --text")
    if args.weights is not None:
        if not (args.inputs or args.prompts or args.text):
            raise Img2ImgError("--weights needs what to generate from: --inputs DIR, --prompts FILE or --text")
        if args.inputs is not None and not args.inputs.is_dir():
            raise Img2ImgError(f"--inputs {args.inputs} is not a folder")
        if not 1 <= args.samples <= 64:
            raise Img2ImgError(f"-n must be 1..64, not {args.samples}")
        if args.save_fake is not None and args.save_fake.exists() and any(args.save_fake.iterdir()):
            raise Img2ImgError(f"--save-fake {args.save_fake} is not empty; choose an empty or new folder")
    if args.record and not (args.weights and args.weights.endswith(".safetensors") and Path(args.weights).is_file()):
        raise Img2ImgError(f"--record needs our .safetensors file as --weights, not {args.weights!r}")
    for flag, folder in (("--real", args.real), ("--fake", args.fake)):
        if folder is not None and not folder.is_dir():
            raise Img2ImgError(f"{flag} {folder} is not a folder")
    if args.extractor == "random":
        return None
    from img2img.eval.inception import default_weights_path, missing_weights_hint

    path = args.inception_weights or default_weights_path()
    if not path.is_file():
        raise Img2ImgError(f"Inception weights not found at {path}. {missing_weights_hint()}")
    return path


def _versions(fid_method: str) -> dict[str, str]:
    import numpy
    import torch

    from img2img import __version__

    out = {"img2img": __version__, "python": platform.python_version(), "numpy": numpy.__version__}
    out["torch"] = torch.__version__
    if fid_method == "sqrtm":
        import scipy

        out["scipy"] = scipy.__version__
    return out


def _select_sigma(fake, valid) -> tuple[float, dict[float, float], bool]:
    """Widths base * 2^k, base = the RMS spread of fake and validation features together; the grid grows by 8
    octaves past whichever end holds the best width (at most 4 times). Returns (sigma, scores, at_grid_edge)."""
    import math

    import numpy as np

    from img2img.eval.distribution import parzen_select_sigma

    base = float(np.sqrt(np.concatenate([fake, valid]).astype(np.float64).var(axis=0).mean())) or 1.0
    lo, hi, new = -4, 4, range(-4, 5)
    scores: dict[float, float] = {}
    for _ in range(5):
        scores.update(parzen_select_sigma(fake, valid, [base * 2.0**k for k in new]).scores)
        best = max(scores, key=scores.__getitem__)
        k = round(math.log2(best / base))
        if lo < k < hi:
            return best, scores, False
        new = range(lo - 8, lo) if k == lo else range(hi + 1, hi + 9)
        lo, hi = min(lo, new.start), max(hi, new.stop - 1)
    return best, scores, True


def _parzen(real, fake, seed: int) -> dict:
    """Goodfellow et al. 2014: centres on the fake features; width picked on one half of the real features,
    log-likelihood reported on the other half."""
    import numpy as np

    from img2img.eval.distribution import parzen_log_likelihood

    if real.shape[0] < 2:
        raise Img2ImgError("parzen needs at least 2 real images (half to pick the width, half to score)")
    order = np.random.RandomState(seed).permutation(real.shape[0])
    valid, test = real[order[: real.shape[0] // 2]], real[order[real.shape[0] // 2 :]]
    sigma, scores, edge = _select_sigma(fake, valid)
    ll = parzen_log_likelihood(fake, test, sigma)
    return {
        "mean": float(ll.mean()), "std": float(ll.std()), "sem": float(ll.std() / np.sqrt(ll.size)),
        "sigma": sigma, "sigma_at_grid_edge": edge, "validation": {f"{s:.6g}": v for s, v in sorted(scores.items())},
        "n_valid": int(valid.shape[0]), "n_test": int(ll.size), "units": "nats per image (feature space)",
    }  # fmt: skip


def compute_metrics(names: list[str], real, fake, args: argparse.Namespace) -> dict:
    """The requested metrics of two FeatureSets, as the JSON report holds them."""
    from img2img.eval import distribution as dist

    out: dict = {}
    if "fid" in names:
        r = dist.fid_from_features(real.pool, fake.pool, method=args.fid_method)
        out.update(fid=r.value, fid_max_imag=r.max_imag, fid_offset=r.offset, fid_method=r.method)
    if "kid" in names:
        m = min(args.kid_subset_size, len(real.names), len(fake.names))
        k = dist.kid(real.pool, fake.pool, subsets=args.kid_subsets, subset_size=m, seed=args.seed)
        out.update(kid={"mean": k.mean, "std": k.std}, kid_subsets=args.kid_subsets, kid_subset_size=m)
        if m == len(real.names) == len(fake.names) and args.kid_subsets > 1:
            out["kid_note"] = (
                f"every subset is the whole of both sets ({m} images each), so the std shows no spread; "
                f"a --kid-subset-size below {m} gives one"
            )
    if "is" in names:
        splits = min(args.is_splits, len(fake.names))
        s = dist.inception_score(dist.softmax(fake.logits), splits=splits, seed=args.seed)
        out.update({"is": {"mean": s.mean, "std": s.std}, "is_splits": splits})
    if "pr" in names:
        if min(len(real.names), len(fake.names)) <= args.pr_k:
            raise Img2ImgError(f"precision/recall with k={args.pr_k} needs more than {args.pr_k} images per set")
        pr = dist.precision_recall(real.pool, fake.pool, k=args.pr_k)
        out.update(precision=pr.precision, recall=pr.recall, pr_k=args.pr_k)
    if "parzen" in names:
        out["parzen"] = _parzen(real.pool, fake.pool, args.seed)
    return out


def _print_table(res: dict, note: str | None) -> None:
    rows = []
    if "fid" in res:
        rows.append(
            ("FID", f"{res['fid']:.4f}", f"({res['fid_method']}; max imaginary residue {res['fid_max_imag']:.2g})")
        )
    if "kid" in res:
        extra = f"({res['kid_subsets']} subsets of {res['kid_subset_size']})"
        if "kid_note" in res:
            extra += f"; {res['kid_note']}"
        rows.append(("KID", f"{res['kid']['mean']:.6f} ± {res['kid']['std']:.6f}", extra))
    if "is" in res:
        rows.append(("IS (fake)", f"{res['is']['mean']:.4f} ± {res['is']['std']:.4f}", f"({res['is_splits']} splits)"))
    if "precision" in res:
        rows.append(("precision", f"{res['precision']:.4f}", f"(k={res['pr_k']})"))
        rows.append(("recall", f"{res['recall']:.4f}", ""))
    if "parzen" in res:
        pz = res["parzen"]
        val = f"{pz['mean']:.2f} ± {pz['sem']:.2f}"
        rows.append(("Parzen LL", val, f"(nats, sigma {pz['sigma']:.4g}; unreliable in high dimension)"))
    width = max(len(r[1]) for r in rows)
    print(f"{'metric':<10}  value")
    for name, val, extra in rows:
        print(f"{name:<10}  {val:<{width}}  {extra}".rstrip())
    if note:
        print(f"note: {note}")


def _describe(flag: str, folder: Path, fs) -> None:
    cached = ", from cache" if fs.cached else ""
    print(f"{flag}: {folder} ({len(fs.names)} images, {len(fs.failures)} unreadable{cached})")
    for name, reason in fs.failures[:10]:
        print(f"  skipped {name}: {reason}")
    if len(fs.failures) > 10:
        print(f"  ... and {len(fs.failures) - 10} more unreadable files")


def run(args: argparse.Namespace) -> int:
    import tempfile

    names = _metrics(args.metrics)
    weights = _check_args(args)
    tmp = tempfile.TemporaryDirectory(prefix="img2img-fake-") if args.weights and not args.save_fake else None
    try:
        if args.weights is not None:
            args.fake = args.save_fake or Path(tmp.name)
            made, failed = generate_fake(args, args.fake)
            where = f" into {args.save_fake}" if args.save_fake else ""
            print(f"generated {made} image(s) with {args.weights}{where} (seed {args.seed})")
            for line in failed:
                print(f"  failed: {line}")
            if not made:
                raise Img2ImgError("nothing was generated; see the failures above")
        return _run(args, names, weights)
    finally:
        if tmp is not None:
            tmp.cleanup()


def generate_fake(args: argparse.Namespace, out: Path) -> tuple[int, list[str]]:
    """Run `--weights` on `--inputs` (images or label maps) or prompts into `out` as PNGs; (count, failures)."""
    from img2img.errors import Img2ImgError as Failure
    from img2img.infer.jobs import read_prompts
    from img2img.infer.model import load
    from img2img.io.files import image_files
    from img2img.io.images import read_image, write_image
    from img2img.io.labels import read_label_map

    model = load(args.weights, device="auto", precision="fp32")
    out.mkdir(parents=True, exist_ok=True)
    made, failed = 0, []
    if model.kind == "text":
        prompts = [*args.text, *(read_prompts(args.prompts) if args.prompts else [])]
        if not prompts:
            raise Img2ImgError("no prompts to generate from")
        for i, result in enumerate(model(prompts, n=args.samples, seed=args.seed)):
            for k, image in enumerate(result.images):
                write_image(out / f"{i:04d}_{k:02d}.png", image)
                made += 1
        return made, failed
    if args.inputs is None:
        raise Img2ImgError(f"{model.card.name} is a {model.task} model: give --inputs DIR, not prompts")
    for path in image_files(args.inputs):
        try:
            if model.kind == "labels":
                image = model(read_label_map(path, model.spec), seed=args.seed)
            else:
                image = model(read_image(path).rgb)
            write_image(out / f"{path.stem}.png", image)
            made += 1
        except Failure as e:
            failed.append(f"{path.name}: {e}")
    return made, failed


def _run(args: argparse.Namespace, names: list[str], weights: Path | None) -> int:
    from img2img.eval.features import RANDOM_NOTE, extract_folder, make_extractor

    extractor = make_extractor(args.extractor, weights=weights, seed=args.seed, device=args.device)
    print(f"features: {extractor.label}; preprocessing {args.preprocess}")
    sets = {}
    for flag, folder in (("real", args.real), ("fake", args.fake)):
        sets[flag] = extract_folder(
            folder, extractor, args.preprocess, args.batch_size, cache_dir=args.cache, progress=not args.no_progress
        )
        _describe(flag, folder, sets[flag])
    res = compute_metrics(names, sets["real"], sets["fake"], args)
    note = RANDOM_NOTE if args.extractor == "random" else None
    _print_table(res, note)
    if args.json is not None:
        report = {
            **res,
            "sizes": {k: len(v.names) for k, v in sets.items()},
            "unreadable": {k: [{"file": n, "reason": r} for n, r in v.failures] for k, v in sets.items()},
            "folders": {"real": str(args.real), "fake": str(args.fake) if args.weights is None or args.save_fake
                        else f"generated with {args.weights} (seed {args.seed})"},
            "extractor": args.extractor, "extractor_label": extractor.label, "extractor_id": extractor.fingerprint,
            "preprocessing": args.preprocess, "seeds": {"kid": args.seed, "is_shuffle": args.seed,
            "parzen_split": args.seed, "random_weights": args.seed if args.extractor == "random" else None},
            "metrics": names, "versions": _versions(args.fid_method),
        }  # fmt: skip
        if note:
            report["note"] = note
        _write_json(args.json, report)
        print(f"wrote {args.json}")
    if args.record:
        _record(args, res, {k: len(v.names) for k, v in sets.items()}, extractor.label)
    return 0


def _record(args: argparse.Namespace, res: dict, sizes: dict, label: str) -> None:
    """The scores into the card (JSON and safetensors header) of the model that made the fake set."""
    from img2img.commands.evaluate import record_in_card
    from img2img.weights.format import read_card

    card = read_card(args.weights)
    source = args.inputs or args.prompts or f"{len(args.text)} prompt(s) given with --text"
    protocol = (f"real: {args.real}; fake: {card.name} on {source} (seed {args.seed}"
                + (f", {args.samples} per prompt" if args.samples > 1 else "") + f"); features: {label}; "
                f"preprocessing {args.preprocess}")  # fmt: skip
    kept = {k: v for k, v in res.items() if not k.startswith(("fid_", "kid_subset", "is_splits", "pr_k"))}
    record_in_card(args.weights, args.record, {**kept, "sizes": sizes, "protocol": protocol})


def _write_json(path: Path, data: dict) -> None:
    from img2img.io.fileio import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2) + "\n")  # an interrupted run never leaves half a report
