"""The gray-image experiment: what the fingerprint network draws on its own.

The U-Net, fed the same fixed noise as in fingerprint training, is fitted to a
flat gray image. Whatever structure remains in its output is the network's
architectural prior, which every fingerprint it produces shares; its spectrum
shows that prior's periodic peaks.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file
from torch.nn import functional as F
from tqdm import tqdm

from dif.render import fingerprint_image, save_png, spectrum_image
from dif.unet import UNet
from training.trainer import TrainConfig, seed_everything


def blank_experiment(out_dir: Path, config: TrainConfig, size: int = 256, steps: int = 200,
                     device: torch.device | None = None, progress: bool = True) -> dict[str, float]:
    device = device or torch.device("cpu")
    gen = seed_everything(config.seed)
    net = UNet(config.noise_channels, 3, config.depth, config.width).to(device).train()
    noise = (torch.rand((1, config.noise_channels, size, size), generator=gen) * config.noise_scale).to(device)
    target = torch.full((1, 3, size, size), 0.5, device=device)
    opt = torch.optim.AdamW(net.parameters(), lr=config.lr)
    for _ in tqdm(range(steps), desc="gray target", unit="step", disable=not progress):
        out = net(noise + torch.randn(noise.shape, generator=gen).to(device) * config.jitter)
        loss = F.mse_loss(out, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        final = net.eval()(noise)[0].cpu()
    deviation = final - 0.5
    save_png(fingerprint_image(deviation), out_dir / "blank_image.png")
    save_png(spectrum_image(deviation), out_dir / "blank_spectrum.png")
    save_file({"output": final.contiguous()}, str(out_dir / "blank_output.safetensors"))
    return {"mse": float(deviation.square().mean()), "max_abs": float(deviation.abs().max())}
