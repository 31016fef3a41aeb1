"""Multi-process training with torchrun on CPU (gloo): ranks read disjoint samples, gradients are
averaged so both ranks end with identical weights (G, D with its BatchNorm statistics, EMA) that differ
from the start, only rank 0 writes, and a 2-process run resumes (per-rank RNG restored)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.train.checkpoint import list_checkpoints, load_state

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "configs" / "esrgan" / "small_psnr_x4.yaml"

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch built without gloo")

# Runs under torchrun: trains, then writes what this rank holds.
RANK_SCRIPT = """
import hashlib, json, os, sys
from pathlib import Path
from img2img.train.config import load_config
from img2img.train import Trainer
from img2img.train.dist import ResumableSampler

def digest(net):
    h = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        h.update(k.encode()); h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()

cfg = load_config(sys.argv[1], sys.argv[3:])
trainer = Trainer(cfg)
rank = trainer.info.rank
start = digest(trainer.nets["G"])
sampler = ResumableSampler(trainer.recipe.make_dataset(), trainer.info, seed=cfg.train.seed)
sampler.set_epoch(0)
indices = list(sampler)
trainer.fit()
out = {"rank": rank, "world": trainer.info.world_size, "start": start, "final": digest(trainer.nets["G"]),
       "D": digest(trainer.nets["D"]), "ema": digest(trainer.ema.shadow["G"]),
       "ema_D": digest(trainer.ema.shadow["D"]), "indices": indices}
Path(sys.argv[2], f"rank{rank}.json").write_text(json.dumps(out))
"""


def make_images(folder: Path) -> Path:
    rng = np.random.default_rng(2)
    folder.mkdir(parents=True)
    for i in range(8):
        img = np.kron(rng.random((8, 8, 3)), np.ones((16, 16, 1))) * 0.8 + rng.random((128, 128, 3)) * 0.2
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return folder


def overrides(tmp_path: Path, *extra: str) -> list[str]:
    return [
        f"train.out_dir={tmp_path / 'run'}",
        "train.steps=4",
        "train.batch_size=2",
        "train.num_workers=0",
        "train.progress=false",
        "train.log_every=1",
        "train.sample_every=0",
        "train.ckpt_every=2",
        "train.resume=auto",
        f"data.hr_dirs=[{tmp_path / 'hr'}]",
        "data.patch_size=128",
        "model.G={arch: RRDBNet, nf: 8, nb: 1, gc: 4, scale: 4}",
        # The VGG-style D has BatchNorm: its running statistics must agree across ranks too.
        "model.D={arch: VGGStyleDiscriminator, nf: 4, input_size: 128}",
        "loss.gan=0.01",
        "train.ema.networks=[G, D]",
        "val.hr_dir=null",
        *extra,
    ]


def torchrun(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    # Other jobs on a shared machine can take the rendezvous port between its choice and its use.
    if done.returncode != 0 and "address already in use" in done.stderr.lower():
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    return done


def test_two_gloo_processes_train_identically_and_resume(tmp_path: Path) -> None:
    make_images(tmp_path / "hr")
    script = tmp_path / "rank_script.py"
    script.write_text(RANK_SCRIPT)
    done = torchrun([str(script), str(SMALL), str(tmp_path), *overrides(tmp_path)])
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    assert set(r0["indices"]).isdisjoint(r1["indices"]), "each rank reads its own share of the data"
    assert r0["start"] == r1["start"]
    assert r0["final"] == r1["final"] and r0["ema"] == r1["ema"], done.stderr[-3000:]
    assert r0["D"] == r1["D"] and r0["ema_D"] == r1["ema_D"], "D weights and BatchNorm statistics agree"
    assert r0["final"] != r0["start"], "training changed the weights"
    # Only rank 0 writes: one stats stream with one line per step.
    lines = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines if "loss" in x] == [1, 2, 3, 4]
    state = load_state(list_checkpoints(tmp_path / "run")[0])
    assert state["step"] == 4 and len(state["rng"]) == 2
    assert not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"]), "RNG is seeded per rank"

    # The CLI under torchrun continues the same run (resume: auto), printing from rank 0 only.
    more = torchrun(["-m", "img2img", "train", str(SMALL), *overrides(tmp_path, "train.steps=6")])
    assert more.returncode == 0, more.stderr[-3000:]
    assert "at step 4" in more.stderr, more.stderr[-3000:]
    assert more.stdout.count("trained 6 steps") == 1, more.stdout
    assert load_state(list_checkpoints(tmp_path / "run")[0])["step"] == 6
