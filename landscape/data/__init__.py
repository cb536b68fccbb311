"""Data sets as preloaded tensors: built-in digits, local CIFAR, synthetic, a user's arrays and factories."""
