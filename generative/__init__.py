"""Generative trainers. Importing this package registers them in `toolkit.registry.GENERATIVE`,
lazily (by ``"module:Class"``): listing them never imports torch."""

from toolkit.registry import GENERATIVE

GENERATIVE.add_lazy("vae", "generative.vae:VAETrainer",
                    description="Variational autoencoder: MLP or conv, Bernoulli or Gaussian "
                    "pixels, beta and KL warm-up, importance-weighted NLL")
GENERATIVE.add_lazy("autoencoder", "generative.autoencoder:AutoencoderTrainer",
                    description="Autoencoders: undercomplete, deep, conv, sparse, denoising, "
                    "contractive (--set variant=NAME)")
GENERATIVE.add_lazy("classifier", "generative.classifier:ClassifierTrainer",
                    description="MLP or CNN image classifier (the feature network of the "
                    "classifier FID)")
GENERATIVE.add_lazy("dcgan", "generative.dcgan:DCGANTrainer",
                    description="DCGAN: a textbook's generator and discriminator, "
                    "non-saturating loss, label smoothing, class-conditional option")
GENERATIVE.add_lazy("rbm", "generative.rbm:RBMTrainer",
                    description="Restricted Boltzmann machine: Bernoulli or Gaussian visibles, "
                    "CD-k or PCD-k, pseudo-likelihood and AIS log-likelihood")
GENERATIVE.add_lazy("dbn", "generative.dbn:DBNTrainer",
                    description="Deep belief network: RBMs pretrained layer by layer, then "
                    "fine-tuned as a classifier by backpropagation (labelled images)")
