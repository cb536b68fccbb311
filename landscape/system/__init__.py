"""Where this process runs: CPU features, threads, devices, MPI environment, progress, text, the user's code by import path."""
