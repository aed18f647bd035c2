"""PyTorch twins of genjax's default models, for benchmarks/throughput.py.

Each module has the architecture of a genjax model (same layers, widths and initialisation family) and either
a `loss(x)` method, the mean over the batch of the same per-example objective genjax trains (one Adam
updates every parameter), or, for two-player models, `make_step(config)`, which returns the whole train step
with its optimizers. `x` is a float
batch [B, C, H, W] in [0, 1] (PyTorch's NCHW layout).
"""

import torch
import torch.nn.functional as F
from pytorch_vae_reference import VAE as ExamplesVAE
from pytorch_vae_reference import loss_terms
from torch import nn


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


class MLPAutoencoder(nn.Module):
    """genjax's default `ae_mnist`: 784-400-16-400-784 (ReLU), BCE on the logits, and the moving averages
    (decay 0.99) of the mean and covariance of the training codes that its sampler decodes from."""

    def __init__(self, hidden=400, latent_dim=16, decay=0.99):
        super().__init__()
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(784, hidden), nn.ReLU(), nn.Linear(hidden, latent_dim))
        self.decoder = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 784))
        self.decay = decay
        self.register_buffer("code_mean", torch.zeros(latent_dim))
        self.register_buffer("code_second_moment", torch.eye(latent_dim))

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x)
        with torch.no_grad():
            codes = z.detach()
            self.code_mean.lerp_(codes.mean(0), 1 - self.decay)
            self.code_second_moment.lerp_(codes.T @ codes / len(codes), 1 - self.decay)
        logits = self.decoder(z)
        return F.binary_cross_entropy_with_logits(logits, x.flatten(1), reduction="none").sum(1).mean()


def residual_stack(channels: int, hidden: int, blocks: int) -> nn.Module:
    """genjax.nn.residual_conv.ResidualStack: blocks of x + conv1x1(relu(conv3x3(relu(x)))), then a ReLU."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(), nn.Conv2d(hidden, channels, 1))

        def forward(self, x):
            return x + self.body(x)

    return nn.Sequential(*[Block() for _ in range(blocks)], nn.ReLU())


def subpixel(in_channels: int, features: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(in_channels, 4 * features, 3, padding=1), nn.PixelShuffle(2))


class VQVAE(nn.Module):
    """genjax's default `vqvae_mnist` stage 1: 4x4 stride-2 convolutions 16, 32, a 3x3 convolution, a residual
    block (hidden 16), a 1x1 convolution to 16-dimensional vectors, each replaced by the nearest of 64 codes
    (straight-through gradients, commitment weight 0.25, moving-average codebook with decay 0.99 and Laplace
    smoothing, restarts of codes used less than once per batch); a mirrored decoder with sub-pixel
    upsampling; BCE on the logits."""

    def __init__(self, channels=(16, 32), code_dim=16, num_codes=64, blocks=1, hidden=16, beta=0.25, decay=0.99, eps=1e-5, threshold=1.0):
        super().__init__()
        a, b = channels
        self.encoder = nn.Sequential(
            nn.Conv2d(1, a, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(a, b, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(b, b, 3, padding=1),
            residual_stack(b, hidden, blocks),
            nn.Conv2d(b, code_dim, 1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(code_dim, b, 3, padding=1),
            residual_stack(b, hidden, blocks),
            subpixel(b, a),
            nn.ReLU(),
            subpixel(a, 1),
        )
        self.beta, self.decay, self.eps, self.threshold = beta, decay, eps, threshold
        codebook = (torch.rand(num_codes, code_dim) * 2 - 1) / num_codes
        self.register_buffer("codebook", codebook)
        self.register_buffer("usage", torch.ones(num_codes))
        self.register_buffer("code_sum", codebook.clone())

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        z = self.encoder(x).permute(0, 2, 3, 1)  # [B, h, w, D], as genjax's NHWC code map
        flat = z.reshape(-1, z.shape[-1])
        distances = flat.square().sum(1, keepdim=True) - 2 * flat @ self.codebook.T + self.codebook.square().sum(1)
        indices = distances.argmin(1)
        quantized = self.codebook[indices].view_as(z)
        logits = self.decoder((z + (quantized - z).detach()).permute(0, 3, 1, 2))
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)
        commitment = (z - quantized).square().flatten(1).sum(1)
        with torch.no_grad():
            one_hot = F.one_hot(indices, len(self.codebook)).to(flat.dtype)
            self.usage.lerp_(one_hot.sum(0), 1 - self.decay)
            self.code_sum.lerp_(one_hot.T @ flat, 1 - self.decay)
            total = self.usage.sum()
            smoothed = (self.usage + self.eps) / (total + len(self.usage) * self.eps) * total
            dead = self.usage < self.threshold
            picks = flat[torch.randint(len(flat), (len(self.codebook),))]
            self.codebook.copy_(torch.where(dead[:, None], picks, self.code_sum / smoothed[:, None]))
            self.usage.copy_(torch.where(dead, torch.full_like(self.usage, self.threshold), self.usage))
            self.code_sum.copy_(torch.where(dead[:, None], self.codebook * self.usage[:, None], self.code_sum))
        return (reconstruction + self.beta * commitment).mean()


def normalized(layer: nn.Module, norm: str) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if norm == "spectral" else layer


class MLPGenerator(nn.Sequential):
    """genjax.models.gan_nets.MLPGenerator: 100-256-512-784, ReLU, tanh."""

    def __init__(self, latent_dim=100, hidden=(256, 512)):
        widths = (latent_dim, *hidden)
        super().__init__(
            *[layer for a, b in zip(widths, widths[1:]) for layer in (nn.Linear(a, b), nn.ReLU())],
            nn.Linear(widths[-1], 784),
            nn.Tanh(),
            nn.Unflatten(1, (1, 28, 28)),
        )


class MLPDiscriminator(nn.Sequential):
    """genjax.models.gan_nets.MLPDiscriminator: 784-512-256-1, LeakyReLU 0.2."""

    def __init__(self, hidden=(512, 256)):
        widths = (784, *hidden)
        super().__init__(
            nn.Flatten(),
            *[layer for a, b in zip(widths, widths[1:]) for layer in (nn.Linear(a, b), nn.LeakyReLU(0.2))],
            nn.Linear(widths[-1], 1),
            nn.Flatten(0),
        )


class ConvGenerator(nn.Sequential):
    """genjax.models.gan_nets.ConvGenerator (DCGAN): Dense to 7x7x64, BatchNorm, ReLU, sub-pixel upsampling to
    14x14x32, BatchNorm, ReLU, sub-pixel upsampling to 28x28x1, tanh (BatchNorm momentum 0.1 as genjax)."""

    def __init__(self, latent_dim=100, channels=(64, 32)):
        a, b = channels
        super().__init__(
            nn.Linear(latent_dim, 7 * 7 * a),
            nn.BatchNorm1d(7 * 7 * a),
            nn.ReLU(),
            nn.Unflatten(1, (a, 7, 7)),
            subpixel(a, b),
            nn.BatchNorm2d(b),
            nn.ReLU(),
            subpixel(b, 1),
            nn.Tanh(),
        )


class ConvDiscriminator(nn.Sequential):
    """genjax.models.gan_nets.ConvDiscriminator: 4x4 stride-2 convolutions 32, 64 with LeakyReLU 0.2, then
    Dense(1); norm 'batch' normalizes the second convolution, 'spectral' every layer's weights, 'none' nothing."""

    def __init__(self, channels=(32, 64), norm="batch"):
        a, b = channels
        super().__init__(
            normalized(nn.Conv2d(1, a, 4, stride=2, padding=1), norm),
            nn.LeakyReLU(0.2),
            normalized(nn.Conv2d(a, b, 4, stride=2, padding=1), norm),
            nn.BatchNorm2d(b) if norm == "batch" else nn.Identity(),
            nn.LeakyReLU(0.2),
            nn.Flatten(),
            normalized(nn.Linear(7 * 7 * b, 1), norm),
            nn.Flatten(0),
        )


GAN_LOSSES = {  # (discriminator loss per example from real and fake scores, generator loss from fake scores)
    "non_saturating": (lambda real, fake: F.softplus(-real) + F.softplus(fake), lambda fake: F.softplus(-fake)),
    "hinge": (lambda real, fake: F.relu(1 - real) + F.relu(1 + fake), lambda fake: -fake),
    "wasserstein_gp": (lambda real, fake: fake - real, lambda fake: -fake),
}


class GAN(nn.Module):
    """A two-player twin of genjax's GAN family step: one discriminator update on real images and detached
    fakes (plus the gradient penalty for WGAN-GP), then, every n_critic steps, one generator update through
    the updated discriminator; each player has its own Adam. `make_step(config)` returns the step."""

    def __init__(self, architecture="conv", norm="batch", loss="non_saturating", latent_dim=100):
        super().__init__()
        conv = architecture == "conv"
        self.generator = ConvGenerator(latent_dim) if conv else MLPGenerator(latent_dim)
        self.discriminator = ConvDiscriminator(norm=norm) if conv else MLPDiscriminator()
        self.d_loss, self.g_loss = GAN_LOSSES[loss]
        self.penalty = loss == "wasserstein_gp"
        self.latent_dim = latent_dim

    def gradient_penalty(self, real, fake, weight):
        eps = torch.rand(len(real), 1, 1, 1)
        interpolates = (eps * real + (1 - eps) * fake).requires_grad_(True)
        (grads,) = torch.autograd.grad(self.discriminator(interpolates).sum(), interpolates, create_graph=True)
        return weight * (torch.sqrt(grads.square().flatten(1).sum(1) + 1e-12) - 1).square()

    def make_step(self, config):
        betas = (config.adam_b1, config.adam_b2)
        g_optimizer = torch.optim.Adam(self.generator.parameters(), lr=config.learning_rate, betas=betas)
        d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=config.learning_rate, betas=betas)
        step = 0

        def train_step(x):
            nonlocal step
            real = 2 * x - 1
            fake = self.generator(torch.randn(len(x), self.latent_dim))
            d_loss = self.d_loss(self.discriminator(real), self.discriminator(fake.detach())).mean()
            if self.penalty:
                d_loss = d_loss + self.gradient_penalty(real, fake.detach(), config.gp_weight).mean()
            d_optimizer.zero_grad(set_to_none=True)
            d_loss.backward()
            d_optimizer.step()
            step += 1
            if step % config.n_critic == 0:
                g_loss = self.g_loss(self.discriminator(fake)).mean()
                g_optimizer.zero_grad(set_to_none=True)
                g_loss.backward()
                g_optimizer.step()
            return d_loss.detach()

        return train_step
