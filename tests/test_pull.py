"""`img2img weights pull` against a local HTTP server on 127.0.0.1 serving files in the released
layout: the download is checked, converted and listed; a changed file, a wrong --sha256 and a
malicious pickle are refused and leave nothing behind."""

from __future__ import annotations

import functools
import http.server
import json
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from img2img.archs import ResnetGenerator, UNetGenerator
from img2img.cli import main
from img2img.io.images import read_image, write_image


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    root = tmp_path / "www"
    (root / "pix2pix").mkdir(parents=True)
    (root / "cyclegan").mkdir()
    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", root
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def home(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("IMG2IMG_MIRROR", raising=False)
    return tmp_path / "home"


def released_unet(path: Path, seed: int = 0) -> None:
    """A unet_256-layout generator (8 levels, batch norm) at a small width, as a bare state dict."""
    torch.manual_seed(seed)
    torch.save(UNetGenerator(num_downs=8, ngf=4).state_dict(), path)


def test_pull_checks_converts_and_lists(server, home: Path, tmp_path: Path, capsys) -> None:
    url, root = server
    released_unet(root / "pix2pix" / "facades_label2photo.pth")
    assert main(["weights", "pull", "pix2pix-facades_label2photo", "--mirror", url]) == 0
    target = home / "weights" / "pix2pix-facades_label2photo.safetensors"
    assert target.is_file() and str(target) in capsys.readouterr().out
    card = json.loads(target.with_suffix(".json").read_text())
    assert card["task"] == "translate" and card["arch"] == "UNetGenerator"
    assert card["arch_kwargs"]["num_downs"] == 8 and card["arch_kwargs"]["ngf"] == 4
    assert "sha256" in card["source"] and card["extra"]["direction"] == "facade label map → photo"
    pins = json.loads((home / "weights" / "pulled" / "checksums.json").read_text())
    assert len(pins["pix2pix-facades_label2photo"]) == 64
    assert main(["models", "--task", "translate"]) == 0
    assert "pix2pix-facades_label2photo" in capsys.readouterr().out
    assert main(["weights", "list", "--task", "translate"]) == 0  # the same table
    assert "pix2pix-facades_label2photo" in capsys.readouterr().out
    src = tmp_path / "in"
    src.mkdir()
    write_image(src / "x.png", np.full((50, 70, 3), 0.5, np.float32))
    assert (
        main(["translate", str(src), str(tmp_path / "out"), "--model", "pix2pix-facades_label2photo", "--quiet"]) == 0
    )
    assert read_image(tmp_path / "out" / "x.png").rgb.shape == (50, 70, 3)


def test_changed_release_and_wrong_checksum_are_refused(server, home: Path, capsys) -> None:
    url, root = server
    file = root / "cyclegan" / "horse2zebra.pth"
    torch.manual_seed(0)
    torch.save(ResnetGenerator(ngf=4, n_blocks=9).state_dict(), file)
    assert main(["weights", "pull", "cyclegan-horse2zebra", "--mirror", url]) == 0
    target = home / "weights" / "cyclegan-horse2zebra.safetensors"
    first = target.read_bytes()
    torch.manual_seed(1)
    torch.save(ResnetGenerator(ngf=4, n_blocks=9).state_dict(), file)  # the server now serves other bytes
    assert main(["weights", "pull", "cyclegan-horse2zebra", "--mirror", url, "--force"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert target.read_bytes() == first  # the good copy stays
    assert not (home / "weights" / "pulled" / "cyclegan-horse2zebra.pth").exists()
    assert main(["weights", "pull", "cyclegan-horse2zebra", "--mirror", url, "--force", "--sha256", "0" * 64]) == 2
    assert "does not match" in capsys.readouterr().err


class Boom:
    def __reduce__(self):
        return (Path.touch, (Path(__file__).parent / "PWNED_BY_PULL",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_pickle_is_refused_and_never_runs(server, home: Path, capsys) -> None:
    url, root = server
    marker = Path(__file__).parent / "PWNED_BY_PULL"
    marker.unlink(missing_ok=True)
    with open(root / "pix2pix" / "edges2shoes.pth", "wb") as f:
        pickle.dump({"model.model.0.weight": Boom()}, f)
    assert main(["weights", "pull", "pix2pix-edges2shoes", "--mirror", url]) == 2
    assert "edges2shoes" in capsys.readouterr().err
    assert not marker.exists()
    assert not (home / "weights" / "pulled" / "pix2pix-edges2shoes.pth").exists()
    assert not (home / "weights" / "pix2pix-edges2shoes.safetensors").exists()


def test_unknown_name_and_unreachable_server(home: Path, capsys) -> None:
    assert main(["weights", "pull", "pix2pix-facade_label2photo"]) == 2
    assert "did you mean 'pix2pix-facades_label2photo'" in capsys.readouterr().err.lower()
    assert main(["weights", "pull", "pix2pix-sat2map", "--mirror", "http://127.0.0.1:9"]) == 2
    assert "could not download" in capsys.readouterr().err


def test_pull_inception_fid_checks_the_file_and_puts_it_where_eval_finds_it(server, home: Path, capsys) -> None:
    import hashlib

    from img2img.eval.inception import FID_WEIGHTS_FILE, default_weights_path, random_inception

    url, root = server
    torch.save({"not": torch.zeros(3)}, root / FID_WEIGHTS_FILE)  # a file that is not the published one
    assert main(["weights", "pull", "inception-fid", "--mirror", url]) == 2
    assert "is not that of" in capsys.readouterr().err and not default_weights_path().exists()
    torch.save(random_inception(0).state_dict(), root / FID_WEIGHTS_FILE)  # same layout, other weights
    digest = hashlib.sha256((root / FID_WEIGHTS_FILE).read_bytes()).hexdigest()
    assert main(["weights", "pull", "inception-fid", "--mirror", url, "--sha256", digest]) == 0
    assert str(default_weights_path()) in capsys.readouterr().out
    assert default_weights_path().read_bytes() == (root / FID_WEIGHTS_FILE).read_bytes()
    assert not list(default_weights_path().parent.glob(".*pulled"))  # no partial files left behind
