"""Evaluation maths: loss and accuracy at many grid points at once, plans and their trial, BatchNorm, losses, Hessian maths."""
