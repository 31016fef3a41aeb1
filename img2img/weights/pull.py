"""`img2img weights pull NAME`: fetch a released pix2pix / CycleGAN generator by its published name,
check it, convert it into our format in the cache, and record where it came from. Nothing is ever
downloaded implicitly: only this explicit command touches the network.

Integrity: a file is streamed to a temporary name while its SHA-256 is computed, and kept only if it
matches the checksum pinned for that name (our table, or `--sha256`). Where no checksum is pinned,
the first download's SHA-256 is recorded in the cache (trust on first use) and every later pull of
the same name must match it. Every file is then read with `torch.load(weights_only=True)` and must
convert into a known architecture, or it is deleted."""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from img2img.errors import WeightsError

PIX2PIX_URL = "http://efrosgans.eecs.berkeley.edu/pix2pix/models-pytorch/{name}.pth"
CYCLEGAN_URL = "http://efrosgans.eecs.berkeley.edu/cyclegan/pretrained_models/{name}.pth"
MAX_BYTES = 1 << 30  # no released generator is near 1 GB; refuse anything that keeps streaming
MIRROR_ENV = "IMG2IMG_MIRROR"  # base URL serving {family}/{name}.pth instead of the original hosts


@dataclass(frozen=True)
class Published:
    """One released generator: `{family}-{name}` in our catalog."""

    family: str  # pix2pix | cyclegan
    name: str  # as published, e.g. facades_label2photo, horse2zebra
    sha256: str | None = None  # pinned checksum where one is known; None = trust on first use
    description: str = ""

    @property
    def key(self) -> str:
        return f"{self.family}-{self.name}"

    def url(self, mirror: str | None = None) -> str:
        if mirror:
            return f"{mirror.rstrip('/')}/{self.family}/{self.name}.pth"
        return (PIX2PIX_URL if self.family == "pix2pix" else CYCLEGAN_URL).format(name=self.name)


def _table() -> dict[str, Published]:
    # The model lists published with the pix2pix and CycleGAN PyTorch releases (unet_256 generators for
    # pix2pix, resnet_9blocks for CycleGAN; one direction per file).
    pix2pix = {
        "facades_label2photo": "facade label map -> photo",
        "sat2map": "aerial photo -> map",
        "map2sat": "map -> aerial photo",
        "edges2shoes": "edge sketch -> shoe photo",
        "edges2handbags": "edge sketch -> handbag photo",
        "day2night": "day -> night scene",
    }
    cyclegan = {
        "apple2orange": "apple -> orange", "orange2apple": "orange -> apple",
        "summer2winter_yosemite": "summer -> winter (Yosemite)",
        "winter2summer_yosemite": "winter -> summer (Yosemite)",
        "horse2zebra": "horse -> zebra", "zebra2horse": "zebra -> horse",
        "monet2photo": "Monet painting -> photo", "style_monet": "photo -> Monet style",
        "style_cezanne": "photo -> Cezanne style", "style_ukiyoe": "photo -> Ukiyo-e style",
        "style_vangogh": "photo -> Van Gogh style", "sat2map": "aerial photo -> map", "map2sat": "map -> aerial photo",
        "cityscapes_photo2label": "street photo -> label map", "cityscapes_label2photo": "label map -> street photo",
        "facades_photo2label": "facade photo -> label map", "facades_label2photo": "facade label map -> photo",
        "iphone2dslr_flower": "phone photo -> DSLR look (flowers)",
    }  # fmt: skip
    rows = [Published("pix2pix", n, description=d) for n, d in pix2pix.items()]
    rows += [Published("cyclegan", n, description=d) for n, d in cyclegan.items()]
    return {r.key: r for r in rows}


PUBLISHED: dict[str, Published] = _table()


def _pins_file() -> Path:
    from img2img.weights.catalog import cache_dir

    return cache_dir() / "pulled" / "checksums.json"


def _recorded_pins() -> dict[str, str]:
    path = _pins_file()
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, json.JSONDecodeError) as e:
        raise WeightsError(f"{path}: unreadable checksum record ({e}); delete it to start afresh") from e


def _record_pin(key: str, digest: str) -> None:
    pins = {**_recorded_pins(), key: digest}
    from img2img.io.fileio import atomic_write_text

    atomic_write_text(_pins_file(), json.dumps(pins, indent=2, sort_keys=True))


def download(
    url: str, dest: Path, *, timeout: float = 60.0, progress: Callable[[int, int | None], None] | None = None
) -> str:
    """Stream `url` into `dest` (atomically) and return its SHA-256; WeightsError on any failure."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise WeightsError(f"{url}: only http(s) and file URLs are fetched")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    h, done = hashlib.sha256(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:  # noqa: S310 - scheme checked
            total = r.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            if total is not None and total > MAX_BYTES:
                raise WeightsError(f"{url}: {total} bytes is more than any released generator; refusing")
            while chunk := r.read(1 << 20):
                done += len(chunk)
                if done > MAX_BYTES:
                    raise WeightsError(f"{url}: more than {MAX_BYTES} bytes; refusing")
                h.update(chunk)
                f.write(chunk)
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                raise WeightsError(f"{url}: got {done} of {total} bytes (connection cut); try again")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise WeightsError(f"could not download {url}: {getattr(e, 'reason', e)}") from e
    finally:
        tmp.unlink(missing_ok=True)
    return h.hexdigest()


def pull(
    key: str,
    *,
    mirror: str | None = None,
    sha256: str | None = None,
    force: bool = False,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download, verify and convert the released generator `key` (e.g. `pix2pix-facades_label2photo`);
    returns the converted `.safetensors` in the cache, where `img2img models` lists it."""
    from img2img.weights.catalog import cache_dir
    from img2img.weights.convert import convert_file
    from img2img.weights.format import save_weights

    if key not in PUBLISHED:
        import difflib

        close = difflib.get_close_matches(key, list(PUBLISHED), n=1, cutoff=0.5)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise WeightsError(f"no published model {key!r}.{hint} `img2img weights pull --list` shows them all")
    pub = PUBLISHED[key]
    target = cache_dir() / f"{key}.safetensors"
    if target.is_file() and not force:
        return target
    url = pub.url(mirror or os.environ.get(MIRROR_ENV))
    raw = cache_dir() / "pulled" / f"{key}.pth"
    digest = download(url, raw, progress=progress)
    expected = sha256 or pub.sha256 or _recorded_pins().get(key)
    try:
        if expected and digest != expected.lower():
            raise WeightsError(
                f"{url}: SHA-256 {digest} does not match the expected {expected}; the file was deleted. "
                "If the release really changed, pass --sha256 with the new checksum"
            )
        sd, card = convert_file(raw, name=key)
        if card.task != "translate":
            raise WeightsError(f"{url}: holds a {card.arch} ({card.task}), not a {pub.family} generator")
    except WeightsError:
        raw.unlink(missing_ok=True)
        raise
    card.source = f"{pub.family} release {pub.name} ({url}), sha256 {digest}"
    card.description = f"{pub.family} {pub.name}: {pub.description}"
    card.extra = {**card.extra, "family": pub.family, "direction": pub.description.replace("->", "→")}
    if pub.family == "cyclegan":
        card.extra["maps"] = "AtoB"  # each released CycleGAN file is the A -> B generator of its name
    save_weights(target, sd, card)
    if not (sha256 or pub.sha256):
        _record_pin(key, digest)
    return target
