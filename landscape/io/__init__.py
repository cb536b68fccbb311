"""Files: checkpoints, the versioned surface file (schema, probe, storage), the one-writer lock, atomic outputs."""
