"""Conditional variational autoencoder (Sohn et al. 2015), conditioned on the class label y.

Encoder q(z|x, y) and decoder p(x|z, y) see the one-hot label: appended to the flattened image (MLP) or
as constant image channels (conv) for the encoder, appended to z for the decoder. The prior is
p(z) = N(0, I), independent of y (Sohn et al. note that their prior network can be relaxed to a prior
independent of the condition), so that, per image,

    -log p(x|y) <= E_q[-log p(x|z, y)] + KL(q(z|x, y) || p(z)) = neg_elbo,

the conditional negative ELBO, reported like the VAE's (reconstruction, kl, recon_mse). Everything else
(networks, likelihoods, beta weighting, parameter average, config fields) is the VAE's
(genjax.models.vae). Samples: n // num_classes per class in class order, one grid row per class.
"""

import jax

from genjax.models import vae
from genjax.nn.conditioning import class_rows, with_label_channels, with_labels
from genjax.train.family import Family

validate = vae.validate
FIELDS = vae.FIELDS


class CVAE(vae.VAE):
    """The VAE with the class label as an extra input of its encoder and decoder."""

    num_classes: int = 10

    def encoder_input(self, x, labels):
        if self.architecture == "conv":
            return with_label_channels(x, labels, self.num_classes)
        return with_labels(x.reshape(x.shape[0], -1), labels, self.num_classes)

    def decoder_input(self, z, labels):
        return with_labels(z, labels, self.num_classes)


def build_model(config, image_shape, num_classes: int) -> CVAE:
    return CVAE(**vae.model_fields(config, image_shape), num_classes=num_classes)


def make_family(config, dataset) -> Family:
    model = build_model(config, dataset.example_shape, dataset.num_classes)

    def sample(params, key, n):
        labels = class_rows(dataset.num_classes, n)
        z = jax.random.normal(key, (len(labels), config.latent_dim))
        return model.apply({"params": params}, z, labels, method="mean_image")

    def condition(batch):
        return (batch["label"],)

    return vae.elbo_family("cvae", model, config, condition, sample, conditional=True)
