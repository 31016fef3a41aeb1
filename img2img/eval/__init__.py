"""Evaluation: distribution metrics of generated image sets (FID, KID, IS, precision/recall, Parzen) and the
feature extractors they are computed on."""
