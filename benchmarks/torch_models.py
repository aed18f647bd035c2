"""PyTorch twins of genjax's default models, for benchmarks/throughput.py.

Each module has the architecture of a genjax model (same layers, widths and initialisation family) and a
`loss(x)` method: the mean over the batch of the same per-example objective genjax trains. `x` is a float
batch [B, C, H, W] in [0, 1] (PyTorch's NCHW layout).
"""

import torch
import torch.nn.functional as F
from torch import nn

from pytorch_vae_reference import VAE as ExamplesVAE
from pytorch_vae_reference import loss_terms


def gaussian_kl(mean: torch.Tensor, log_var: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(log_var)) || N(0, I)) per example, as genjax.losses.gaussian_kl."""
    return 0.5 * torch.sum(log_var.exp() + mean.square() - 1.0 - log_var, dim=1)


class MLPVAE(ExamplesVAE):
    """The pytorch/examples VAE (784-400-20, ReLU, Bernoulli decoder): genjax's default `vae_mnist`."""

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        reconstruction, mean, log_var = self(x)
        bce, kl = loss_terms(reconstruction, x, mean, log_var)
        return (bce + kl).mean()


class Upsample2x(nn.Module):
    """genjax.nn.conv.Upsample2x: a sub-pixel convolution (3x3 conv to 4x channels, pixel shuffle) or a 4x4
    stride-2 transposed convolution."""

    def __init__(self, in_channels: int, features: int, kind: str):
        super().__init__()
        if kind == "subpixel":
            self.layer = nn.Sequential(nn.Conv2d(in_channels, 4 * features, 3, padding=1), nn.PixelShuffle(2))
        else:
            self.layer = nn.ConvTranspose2d(in_channels, features, 4, stride=2, padding=1)

    def forward(self, x):
        return self.layer(x)


class ConvVAE(nn.Module):
    """genjax's `vae_mnist --config.architecture=conv`: 4x4 stride-2 convolutions 32, 64 and a linear layer
    to (mean, log_var) of 20 latents; a linear layer to 7x7x64 and two 2x upsamplings to 28x28 logits."""

    def __init__(self, channels=(32, 64), latent_dim=20, upsample="subpixel"):
        super().__init__()
        widths = (1,) + tuple(channels)
        self.encoder = nn.Sequential(
            *[layer for a, b in zip(widths, widths[1:]) for layer in (nn.Conv2d(a, b, 4, stride=2, padding=1), nn.ReLU())],
            nn.Flatten(),
            nn.Linear(7 * 7 * channels[-1], 2 * latent_dim),
        )
        self.top = channels[-1]
        self.dense = nn.Linear(latent_dim, 7 * 7 * channels[-1])
        self.up = nn.Sequential(Upsample2x(channels[1], channels[0], upsample), nn.ReLU(), Upsample2x(channels[0], 1, upsample))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        mean, log_var = self.encoder(x).chunk(2, dim=1)
        z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
        logits = self.up(F.relu(self.dense(z)).view(-1, self.top, 7, 7))
        nll = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        return (nll + gaussian_kl(mean, log_var)).mean()
