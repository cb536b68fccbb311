"""Jobs: resolving inputs into a job, running it serially or over MPI, training, curvature maps, `info`."""
