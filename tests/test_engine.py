"""The training engine on tiny ESRGAN runs (CPU): outputs of a run, LR schedules, phases and `every`,
EMA, bf16 autocast, abort on non-finite losses (nothing written), and unreadable-sample accounting."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from img2img.errors import ConfigError, ImageError
from img2img.train import NonFiniteLossError, Trainer
from img2img.train.checkpoint import list_checkpoints, load_state
from img2img.train.config import ScheduleConfig, load_config
from img2img.train.ema import EMA
from img2img.train.engine import lr_factor

REPO = Path(__file__).resolve().parents[1]
SMALL = REPO / "configs" / "esrgan" / "small_psnr_x4.yaml"
TINY_G = "model.G={arch: RRDBNet, nf: 8, nb: 1, gc: 4, scale: 4}"


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny convs run faster on one thread


def make_images(folder: Path, n: int = 6, size: int = 48, seed: int = 0) -> Path:
    """Smooth random RGB images (a blurred noise field), as PNG."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small = rng.random((size // 8, size // 8, 3))
        img = np.kron(small, np.ones((8, 8, 1))) * 0.7 + rng.random((size, size, 3)) * 0.3
        Image.fromarray((img * 255).astype(np.uint8)).save(folder / f"img{i:02d}.png")
    return folder


def tiny(tmp_path: Path, *overrides: str, images: Path | None = None):
    images = images or make_images(tmp_path / "hr")
    base = [
        f"train.out_dir={tmp_path / 'run'}",
        "train.steps=4",
        "train.batch_size=2",
        "train.num_workers=0",
        "train.progress=false",
        "train.log_every=1",
        "train.sample_every=0",
        "train.ckpt_every=1000",
        "train.resume=null",
        f"data.hr_dirs=[{images}]",
        "data.patch_size=32",
        "data.repeat=1",
        TINY_G,
        "val.hr_dir=null",
    ]
    return load_config(SMALL, base + list(overrides))


def stats(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "stats.jsonl").read_text().splitlines()]


def test_schedules() -> None:
    assert lr_factor(ScheduleConfig(kind="constant"), 50, 100) == 1.0
    lin = ScheduleConfig(kind="linear", decay_steps=40)
    assert [lr_factor(lin, s, 100) for s in (0, 60, 80, 100)] == [1.0, 1.0, 0.5, 0.0]
    ms = ScheduleConfig(kind="multistep", milestones=[10, 20], gamma=0.5)
    assert [lr_factor(ms, s, 100) for s in (9, 10, 19, 20, 99)] == [1.0, 0.5, 0.5, 0.25, 0.25]
    cos = ScheduleConfig(kind="cosine", min_lr_ratio=0.1)
    assert lr_factor(cos, 0, 100) == 1.0 and lr_factor(cos, 100, 100) == pytest.approx(0.1)
    assert lr_factor(cos, 50, 100) == pytest.approx(0.55)
    warm = ScheduleConfig(kind="constant", warmup_steps=4)
    assert [lr_factor(warm, s, 100) for s in (0, 3, 4)] == [0.25, 1.0, 1.0]


def test_run_writes_everything_a_user_needs(tmp_path: Path) -> None:
    cfg = tiny(tmp_path, "train.steps=6", "train.sample_every=3", "train.schedule.milestones=[3]")
    result = Trainer(cfg).fit()
    run = tmp_path / "run"
    assert result.step == 6 and result.out_dir == run
    lines = [s for s in stats(run) if "loss" in s]
    assert [s["step"] for s in lines] == [1, 2, 3, 4, 5, 6]
    assert all(math.isfinite(s["loss"]["G/l1"]) and s["grad_norm"]["G"] > 0 for s in lines)
    assert lines[0]["lr"]["G"] == pytest.approx(2e-4) and lines[-1]["lr"]["G"] == pytest.approx(1e-4)
    assert sorted(p.name for p in (run / "samples").iterdir()) == ["step_00000003.png", "step_00000006.png"]
    assert list((run / "tb").iterdir()), "TensorBoard events are written when tensorboard is installed"
    assert load_config(SMALL).__class__ is type(cfg)
    state = load_state(result.checkpoint)
    assert state["step"] == 6 and state["config"] == cfg.to_dict()
    assert (run / "config.yaml").is_file()
    # The exported weights are what `img2img upscale --weights` loads.
    from img2img.infer.model import load

    model = load(result.exported[0])
    out = model.run_tensor(torch.rand(1, 3, 8, 8))
    assert out.shape == (1, 3, 32, 32)


def test_training_lowers_the_loss(tmp_path: Path) -> None:
    cfg = tiny(tmp_path, "train.steps=40", "optim.lr_G=2e-3", "train.schedule.kind=constant", "data.repeat=8")
    Trainer(cfg).fit()
    losses = [s["loss"]["G/l1"] for s in stats(tmp_path / "run") if "loss" in s]
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:4])


def test_bf16_autocast_on_cpu(tmp_path: Path) -> None:
    result = Trainer(tiny(tmp_path, "train.amp=bf16", "train.steps=3")).fit()
    assert math.isfinite(result.losses["G/l1"])
    from safetensors.torch import load_file

    weights = load_file(str(result.exported[0]))
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in weights.values())


@pytest.mark.parametrize("native, expected", [("1", "bf16"), ("0", "off")])
def test_amp_auto_follows_the_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, native: str, expected: str
) -> None:
    """train.amp=auto (the default) trains in bf16 autocast only where the CPU computes bf16 natively, and
    the run's log and exported card say what ran. IMG2IMG_NATIVE_BF16 stands in for the CPU's flags."""
    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", native)
    cfg = tiny(tmp_path, "train.steps=2")
    assert cfg.train.amp == "auto"
    trainer = Trainer(cfg)
    assert trainer.amp == expected
    result = trainer.fit()
    assert math.isfinite(result.losses["G/l1"])
    card = json.loads(result.exported[0].with_suffix(".json").read_text())
    assert card["training"]["amp"] == expected and card["training"]["config"]["train"]["amp"] == "auto"
    assert f"amp {expected} (auto: " in capsys.readouterr().err


def test_explicit_amp_is_kept_on_any_cpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", "1")
    assert Trainer(tiny(tmp_path, "train.amp=off")).amp == "off"
    monkeypatch.setenv("IMG2IMG_NATIVE_BF16", "0")
    assert Trainer(tiny(tmp_path, "train.amp=bf16")).amp == "bf16"


def test_fp16_needs_cuda(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip(reason="this machine has CUDA")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        Trainer(tiny(tmp_path, "train.amp=fp16"))


def test_nonfinite_loss_stops_before_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_l1 = torch.nn.functional.l1_loss
    calls = {"n": 0}

    def l1_turning_nan(a: torch.Tensor, b: torch.Tensor, *args, **kw) -> torch.Tensor:
        calls["n"] += 1
        out = real_l1(a, b, *args, **kw)
        return out * float("nan") if calls["n"] == 4 else out

    monkeypatch.setattr(torch.nn.functional, "l1_loss", l1_turning_nan)
    with pytest.raises(NonFiniteLossError) as e:
        Trainer(tiny(tmp_path, "train.steps=10", "train.ckpt_every=2")).fit()
    msg = str(e.value)
    assert "step 3, phase G" in msg and "l1=nan" in msg and "no weights were written" in msg
    run = tmp_path / "run"
    assert [p.name for p in list_checkpoints(run)] == ["step_00000002.pt"]
    state = load_state(run / "checkpoints" / "step_00000002.pt")
    assert all(torch.isfinite(t).all() for t in state["networks"]["G"].values())
    assert not (run / "weights").exists()


def test_nan_initial_weights_abort_at_step_0(tmp_path: Path) -> None:
    from img2img.archs import RRDBNet
    from img2img.weights.format import Card, save_weights

    net = RRDBNet(nf=8, nb=1, gc=4, scale=4)
    with torch.no_grad():
        net.conv_first.weight[0, 0, 0, 0] = float("inf")
    card = Card(
        name="bad", arch="RRDBNet", arch_kwargs={"nf": 8, "nb": 1, "gc": 4, "scale": 4}, task="upscale", scale=4
    )
    path = save_weights(tmp_path / "bad.safetensors", net, card)
    with pytest.raises(NonFiniteLossError, match=r"step 0, phase G: non-finite loss \(term l1=nan\)"):
        Trainer(tiny(tmp_path, f"train.init_from.G={path}")).fit()
    assert not list_checkpoints(tmp_path / "run")


def test_gan_phases_run_every_n_steps(tmp_path: Path) -> None:
    cfg = tiny(
        tmp_path,
        "model.D={arch: UNetDiscriminatorSN, nf: 8}",
        "loss.gan=0.1",
        "loss.pixel=0.01",
        "optim.d_every=2",
        "train.grad_clip=0.5",
        "train.steps=4",
    )
    result = Trainer(cfg).fit()
    state = load_state(result.checkpoint)
    steps = {name: next(iter(opt["state"].values()))["step"] for name, opt in state["optimizers"].items()}
    assert (float(steps["G"]), float(steps["D"])) == (4.0, 2.0)
    lines = [s for s in stats(tmp_path / "run") if "loss" in s]
    assert [("D/gan" in s["loss"]) for s in lines] == [True, False, True, False]
    assert {"G/l1", "G/gan"} <= set(lines[1]["loss"])
    # EMA of G moved away from the raw weights' start but is not equal to them.
    assert set(state["ema"]) == {"G"}
    g, ema = state["networks"]["G"], state["ema"]["G"]
    assert any(not torch.equal(g[k], ema[k]) for k in g)


def test_ema_update_rule() -> None:
    net = torch.nn.Linear(2, 1)
    ema = EMA({"G": net}, ["G"], decay=0.75)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(4.0)
    ema.update("G", net)
    assert torch.allclose(ema.shadow["G"].weight, start + 1.0)
    # Warm-up: the n-th update uses min(decay, (1 + n) / (10 + n)), so early averages follow training.
    warm = EMA({"G": net}, ["G"], decay=0.999, warmup=True)
    start = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(10.0)
    warm.update("G", net)
    assert torch.allclose(warm.shadow["G"].weight, start + 9.0) and warm.updates == {"G": 1}
    with pytest.raises(ConfigError, match="train.ema.networks"):
        EMA({"G": net}, ["D"], decay=0.9)


def test_unreadable_samples_are_counted_then_abort(tmp_path: Path) -> None:
    images = make_images(tmp_path / "hr", n=4)
    for i in range(4):
        (images / f"broken{i}.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    ok = Trainer(tiny(tmp_path, "train.max_skipped_fraction=0.9", "data.repeat=20", "train.steps=40", images=images))
    ok.fit()
    assert ok.skipped > 0 and ok.seen >= 64
    with pytest.raises(ImageError, match=r"could not be read, above train.max_skipped_fraction=0.2"):
        Trainer(
            tiny(
                tmp_path,
                "train.max_skipped_fraction=0.2",
                "data.repeat=20",
                "train.steps=60",
                "train.overwrite=true",
                images=images,
            )
        ).fit()


def test_batch_larger_than_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.batch_size: 16 is larger than the 6 samples"):
        Trainer(tiny(tmp_path, "train.batch_size=16")).fit()


def trained_both_ways(tmp_path: Path, key: str) -> dict[bool, Trainer]:
    """The same tiny run (seed 3) with `train.KEY` true and false."""
    images = make_images(tmp_path / "hr")
    runs = {}
    for on in (True, False):
        runs[on] = Trainer(
            tiny(tmp_path / f"run_{on}", f"train.{key}={str(on).lower()}", "train.seed=3", images=images)
        )
        runs[on].fit()
    return runs


def assert_same_weights(runs: dict[bool, Trainer]) -> None:
    a, b = (runs[on].nets["G"].state_dict() for on in (True, False))
    assert a.keys() == b.keys()
    for k, v in a.items():
        assert torch.allclose(v, b[k], atol=1e-5, rtol=1e-4), k


def test_fused_adam_is_the_default_and_trains_like_the_loop(tmp_path: Path) -> None:
    """train.fused_adam (default on) uses torch's fused kernel; the weights after the same steps match the
    default implementation's to float rounding, so the speed-up changes nothing a user can see."""
    runs = trained_both_ways(tmp_path, "fused_adam")
    for on, trainer in runs.items():
        assert all(o.defaults.get("fused") is (True if on else None) for o in trainer.optims.values())
    assert_same_weights(runs)


def test_compiled_training_trains_like_the_eager_loop(tmp_path: Path, one_thread, monkeypatch) -> None:
    """train.compile: every network runs through torch.compile (forward and backward); the same steps give
    the eager loop's weights to float rounding, under the same state-dict names (checkpoints and exports
    stay interchangeable)."""
    monkeypatch.setenv("IMG2IMG_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "")
    assert_same_weights(trained_both_ways(tmp_path, "compile"))
    assert any(p.is_file() for p in (tmp_path / "home" / "compile").rglob("*"))
