"""Semi-supervised helpers: pseudo-labelling unlabeled data with expert models."""
