"""PyTorch twins of jaxgan's models and train step, used only as a speed reference.

The architectures match `jaxgan/models/dcgan.py` and `jaxgan/models/mlp.py` layer for
layer (PyTorch's NCHW layout, its default initialisation); the step matches
`jaxgan.core.train_step`: one generator forward, one Adam step of D on a real-only and a
fake-only batch with `BCE(D(x), 1) + BCE(D(G(z)), 0)`, then one Adam step of G on the
non-saturating loss `BCE(D(G(z)), 1)` against the updated D, on the same fake batch.
G's gradient is taken with `torch.autograd.grad` with respect to G's parameters only, so
PyTorch does no work that the JAX step skips.

jaxgan itself never imports torch; only the benchmarks do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F


def dcgan_generator(latent_dim: int, width: int) -> nn.Module:
    """Latent [B, latent_dim] -> images [B, 1, 28, 28] in [-1, 1]."""
    return nn.Sequential(
        nn.Linear(latent_dim, 7 * 7 * 4 * width, bias=False),
        nn.BatchNorm1d(7 * 7 * 4 * width),
        nn.ReLU(),
        nn.Unflatten(1, (4 * width, 7, 7)),
        nn.ConvTranspose2d(4 * width, 2 * width, 4, 2, 1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.ReLU(),
        nn.ConvTranspose2d(2 * width, 1, 4, 2, 1),
        nn.Tanh(),
    )


def dcgan_discriminator(width: int, dropout_rate: float) -> nn.Module:
    """Images [B, 1, 28, 28] -> logits [B, 1]."""
    return nn.Sequential(
        nn.Conv2d(1, width, 4, 2, 1),
        nn.LeakyReLU(0.2),
        nn.Dropout(dropout_rate),
        nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False),
        nn.BatchNorm2d(2 * width),
        nn.LeakyReLU(0.2),
        nn.Dropout(dropout_rate),
        nn.Flatten(),
        nn.Linear(7 * 7 * 2 * width, 1),
    )


def mlp_generator(latent_dim: int, width: int) -> nn.Module:
    """Latent [B, latent_dim] -> images [B, 1, 28, 28] in [-1, 1]."""
    return nn.Sequential(
        nn.Linear(latent_dim, width),
        nn.ReLU(),
        nn.Linear(width, 2 * width),
        nn.ReLU(),
        nn.Linear(2 * width, 28 * 28),
        nn.Tanh(),
        nn.Unflatten(1, (1, 28, 28)),
    )


def mlp_discriminator(width: int) -> nn.Module:
    """Images [B, 1, 28, 28] -> logits [B, 1]."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(28 * 28, 2 * width),
        nn.LeakyReLU(0.2),
        nn.Linear(2 * width, width),
        nn.LeakyReLU(0.2),
        nn.Linear(width, 1),
    )


@dataclass
class TorchGAN:
    """Both networks, their Adam optimizers and the step's settings."""

    generator: nn.Module
    discriminator: nn.Module
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer
    latent_dim: int
    autocast_dtype: torch.dtype | None


def build(
    model: str,
    *,
    latent_dim: int,
    g_width: int,
    d_width: int,
    dropout_rate: float,
    learning_rate: float,
    b1: float,
    b2: float,
    dtype: str,
    device: torch.device,
) -> TorchGAN:
    """The PyTorch twin of `jaxgan.core.create_state` for `model` 'dcgan' or 'mlp'.

    `dtype='bfloat16'` runs the forward passes under `torch.autocast` (bf16 compute,
    float32 parameters and optimizer state), as jaxgan's 'bfloat16' does.
    """
    if model == "dcgan":
        generator = dcgan_generator(latent_dim, g_width)
        discriminator = dcgan_discriminator(d_width, dropout_rate)
    elif model == "mlp":
        generator = mlp_generator(latent_dim, g_width)
        discriminator = mlp_discriminator(d_width)
    else:
        raise ValueError(f"model={model!r} is not known; allowed: dcgan, mlp")
    generator.to(device).train()
    discriminator.to(device).train()
    betas = (b1, b2)
    return TorchGAN(
        generator=generator,
        discriminator=discriminator,
        g_optimizer=torch.optim.Adam(generator.parameters(), lr=learning_rate, betas=betas),
        d_optimizer=torch.optim.Adam(discriminator.parameters(), lr=learning_rate, betas=betas),
        latent_dim=latent_dim,
        autocast_dtype=torch.bfloat16 if dtype == "bfloat16" else None,
    )


def _bce(logits: torch.Tensor, is_real: bool) -> torch.Tensor:
    logits = logits.float().flatten()
    labels = torch.ones_like(logits) if is_real else torch.zeros_like(logits)
    return F.binary_cross_entropy_with_logits(logits, labels)


def train_step(gan: TorchGAN, real_images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One alternating step on float images [B, 1, 28, 28] in [-1, 1].

    Returns:
      (d_loss, g_loss) as detached scalar tensors on the device; nothing is synchronised
      until the caller reads them.
    """
    device_type = real_images.device.type
    autocast = torch.autocast(
        device_type,
        dtype=gan.autocast_dtype or torch.float32,
        enabled=gan.autocast_dtype is not None,
    )
    latents = torch.randn(real_images.shape[0], gan.latent_dim, device=real_images.device)
    with autocast:
        fake_images = gan.generator(latents)

    gan.d_optimizer.zero_grad(set_to_none=True)
    with autocast:
        d_loss = _bce(gan.discriminator(real_images), True) + _bce(
            gan.discriminator(fake_images.detach()), False
        )
    d_loss.backward()
    gan.d_optimizer.step()

    gan.g_optimizer.zero_grad(set_to_none=True)
    with autocast:
        g_loss = _bce(gan.discriminator(fake_images), True)
    g_params = list(gan.generator.parameters())
    for param, grad in zip(g_params, torch.autograd.grad(g_loss, g_params), strict=True):
        param.grad = grad
    gan.g_optimizer.step()
    return d_loss.detach(), g_loss.detach()


def to_float_images(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 [B, 28, 28] -> float32 [B, 1, 28, 28] in [-1, 1]."""
    return images_uint8.unsqueeze(1).float() / 127.5 - 1.0


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(gan: TorchGAN, images_uint8: torch.Tensor, batch_size: int) -> float:
    """Seconds for one shuffled epoch over uint8 images [N, 28, 28] already on the device."""
    device = images_uint8.device
    num_batches = images_uint8.shape[0] // batch_size
    _synchronize(device)
    start = time.perf_counter()
    order = torch.randperm(images_uint8.shape[0], device=device)
    losses = None
    for index in range(num_batches):
        batch = images_uint8[order[index * batch_size : (index + 1) * batch_size]]
        losses = train_step(gan, to_float_images(batch))
    if losses is not None:
        losses[0].item()
    _synchronize(device)
    return time.perf_counter() - start


def time_step(gan: TorchGAN, batch_uint8: torch.Tensor) -> float:
    """Seconds for one train step on a uint8 batch [B, 28, 28] already on the device."""
    device = batch_uint8.device
    _synchronize(device)
    start = time.perf_counter()
    d_loss, _ = train_step(gan, to_float_images(batch_uint8))
    d_loss.item()
    _synchronize(device)
    return time.perf_counter() - start
