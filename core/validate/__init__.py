"""Validate (SPEC §6): saliency (Grad-CAM / Grad-FAM), activation maximisation, ground truth.

Checks that a feature means what its rankings say, on images rather than on numbers."""
