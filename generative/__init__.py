"""Generative trainers (VAE, DCGAN, autoencoders, RBM/DBN) register here as they arrive."""
