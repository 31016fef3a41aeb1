"""Tiny StackGAN runs on a generated shapes set, shared by the StackGAN test files."""

from __future__ import annotations

import json
from pathlib import Path

from img2img.data.shapes import make_shapes
from img2img.train.config import load_config
from img2img.train.engine import Trainer

REPO = Path(__file__).resolve().parent.parent
CONFIGS = REPO / "configs" / "stackgan"
TINY_T = {"arch": "SentenceEncoder", "embed_dim": 8, "hidden": 8, "out_dim": 16}
TINY_I = {"arch": "ImageEncoder", "width": 4, "n_layers": 2, "out_dim": 16}
TINY_G1 = {"arch": "StageIGenerator", "c_dim": 8, "z_dim": 4, "gf": 4, "image_size": 16}
TINY_D1 = {"arch": "StageIDiscriminator", "df": 4, "c_dim": 8, "image_size": 16}
TINY_G2 = {"arch": "StageIIGenerator", "gf": 4, "r_num": 1, "up_factor": 2}
TINY_D2 = {"arch": "StageIIDiscriminator", "df": 2, "c_dim": 8, "image_size": 32}


def engine(out: Path, steps: int = 2) -> list[str]:
    return [f"train.out_dir={out}", f"train.steps={steps}", "train.batch_size=4", "train.num_workers=0",
            "train.progress=false", "train.log_every=1", "train.sample_every=2", "train.ckpt_every=1",
            "train.resume=auto", "train.device=cpu", "train.schedule.milestones=[1]"]  # fmt: skip


def make_data(root: Path, n: int = 60) -> Path:
    make_shapes(root, n, seed=0, size=32, n_captions=3)
    return root


def run(config: str, overrides: list[str]):
    return Trainer(load_config(CONFIGS / config, overrides)).fit()


def text_encoder(data: Path, out: Path, steps: int = 2):
    return run("shapes_text_encoder.yaml", [*engine(out, steps), f"data.root={data}", "data.size=16",
               f"model.T={json.dumps(TINY_T)}", f"model.I={json.dumps(TINY_I)}", "val.max_images=8"])  # fmt: skip


def stage1(data: Path, te: Path, out: Path, steps: int = 2):
    return run("shapes_stage1.yaml", [*engine(out, steps), f"data.root={data}", f"text_encoder={te}",
               f"model.G1={json.dumps(TINY_G1)}", f"model.D1={json.dumps(TINY_D1)}"])  # fmt: skip


def stage2(data: Path, s1: Path, out: Path, steps: int = 2):
    return run("shapes_stage2.yaml", [*engine(out, steps), f"data.root={data}", f"stage1={s1}",
               f"model.G2={json.dumps(TINY_G2)}", f"model.D2={json.dumps(TINY_D2)}"])  # fmt: skip
