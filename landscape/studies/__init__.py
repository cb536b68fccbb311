"""The paper's studies end to end: the skip-connection comparison (demo) and the batch-size study."""
