"""The quality reference for experiments.vae_mnist: the pytorch/examples VAE on the same data and steps.

github.com/pytorch/examples/blob/main/vae/main.py: 784-400-20 MLP encoder and decoder, ReLU, sigmoid
output, loss = summed binary cross-entropy + analytic KL, Adam(lr 1e-3), batch 128. Trained here on the
same embedded 4,500 MNIST training images for the same number of steps as genjax's default, then
evaluated like genjax: the mean over the 500 test images of BCE(x, decoder(z)) + KL with one sample z.

    pip install torch==2.13.0    # the CPU build
    python benchmarks/pytorch_vae_reference.py --num_steps 3000 --seeds 0 1 2

Prints one JSON line per seed and the mean.
"""

import argparse
import json
import sys
import time

import numpy as np

try:
    import torch
    import torch.nn.functional as F
    from torch import nn
except ImportError:
    sys.exit("this benchmark needs PyTorch: pip install torch==2.13.0 (the CPU build)")

from genjax.data import load, to_model_batch


class VAE(nn.Module):
    """Exactly the layers of pytorch/examples vae/main.py."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(784, 400)
        self.fc21 = nn.Linear(400, 20)
        self.fc22 = nn.Linear(400, 20)
        self.fc3 = nn.Linear(20, 400)
        self.fc4 = nn.Linear(400, 784)

    def encode(self, x):
        h1 = F.relu(self.fc1(x))
        return self.fc21(h1), self.fc22(h1)

    def reparameterize(self, mu, logvar):
        std = torch.exp(0.5 * logvar)
        return mu + torch.randn_like(std) * std

    def decode(self, z):
        return torch.sigmoid(self.fc4(F.relu(self.fc3(z))))

    def forward(self, x):
        mu, logvar = self.encode(x.view(-1, 784))
        return self.decode(self.reparameterize(mu, logvar)), mu, logvar


def loss_terms(recon_x, x, mu, logvar):
    """Per-image (BCE summed over pixels, KL), as in the example's loss_function before its batch sum."""
    bce = F.binary_cross_entropy(recon_x, x.view(-1, 784), reduction="none").sum(dim=1)
    kld = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp(), dim=1)
    return bce, kld


def images(split: str) -> torch.Tensor:
    return torch.from_numpy(np.asarray(to_model_batch(load("mnist", split, source="embedded").arrays)["image"])).view(-1, 784)


def train_and_evaluate(seed: int, num_steps: int, batch_size: int = 128) -> dict:
    torch.manual_seed(seed)
    train, test = images("train"), images("test")
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed)
    step, start = 0, time.perf_counter()
    while step < num_steps:  # epochs of a shuffled DataLoader, as in the example (last batch kept)
        for batch in torch.randperm(len(train), generator=generator).split(batch_size):
            if step == num_steps:
                break
            x = train[batch]
            recon, mu, logvar = model(x)
            bce, kld = loss_terms(recon, x, mu, logvar)
            optimizer.zero_grad()
            (bce + kld).sum().backward()
            optimizer.step()
            step += 1
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        recon, mu, logvar = model(test)
        bce, kld = loss_terms(recon, test, mu, logvar)
    return {
        "seed": seed,
        "steps": num_steps,
        "test_neg_elbo": float((bce + kld).mean()),
        "test_reconstruction": float(bce.mean()),
        "test_kl": float(kld.mean()),
        "train_seconds": seconds,
        "images_per_s": num_steps * batch_size / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--num_steps", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    results = [train_and_evaluate(seed, args.num_steps) for seed in args.seeds]
    for result in results:
        print(json.dumps(result))
    print(json.dumps({"mean_test_neg_elbo": float(np.mean([r["test_neg_elbo"] for r in results]))}))


if __name__ == "__main__":
    main()
