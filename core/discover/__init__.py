"""Discover (SPEC §1-2): data, backbones, activation capture, the sparse autoencoder and rankings.

From images to an SAE dictionary over the classifier input and the class-feature matrix μ."""
