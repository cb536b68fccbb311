"""`landscape hessian`: top eigenvalues, smallest eigenvalue, trace and eigenvalue density of the loss's Hessian."""

from __future__ import annotations

import argparse
import json

from .options import (
    add_data_source,
    add_threads,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
)

HELP = """top Hessian eigenvalues (Lanczos), the smallest one, the trace (Hutchinson), the density (SLQ)

The Hessian of the mean loss over all the chosen samples (default: the whole train split),
over the weights with 2+ dimensions (--ignore none: every parameter), BatchNorm in eval mode.
Each eigenvalue comes with its residual ||Hv - lambda v|| (a bound on its error) and the
Lanczos iteration at which it converged; the trace with its standard error. --density: the
eigenvalue density by stochastic Lanczos quadrature (Rademacher probes, full reorthogonalization):
nodes and weights per probe and a Gaussian-smoothed density (`landscape plot` draws it from a
surface file it was stored in).

examples:
  landscape hessian --ckpt ckpts/resnet20.pt
  landscape hessian --ckpt ckpts/resnet20.pt --top-k 3 --min --trace --json
  landscape hessian --ckpt ckpts/resnet20.pt --store surfaces/resnet20.h5
  landscape hessian --ckpt ckpts/resnet20.pt --density --density-probes 10 --density-steps 80 --store surfaces/resnet20.h5
"""


def _add_hessian(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt", required=True, help="checkpoint whose Hessian to compute")
    p.add_argument("--model", default=None, help="architecture, for bare state dicts")
    p.add_argument("--trust-torchscript", action="store_true",
                   help="allow a TorchScript --ckpt (it runs its own code to evaluate)")
    d = p.add_argument_group("data")
    add_data_source(d)
    d.add_argument("--split", choices=("train", "test"), default="train", help="which split (default train)")
    d.add_argument("--max-samples", type=positive_int, default=None,
                   help="first N samples of the split (default: all)")
    d.add_argument("--batch-size", type=positive_int, default=None,
                   help="samples per pass (default: about 2**19 input values, 32 to 4096 "
                   "samples); the result does not depend on it")
    d.add_argument("--loss", default="cross_entropy",
                   help="cross_entropy (default), mse, or package.module:fn (outputs, targets)")
    d.add_argument("--ignore", choices=("biasbn", "none"), default="biasbn",
                   help="biasbn: weights with 2+ dims only, as in the paper (default); none: all parameters")
    d.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads(d)
    d.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="precision of the Hessian-vector products (default float32)")
    e = p.add_argument_group("eigenvalues and trace")
    e.add_argument("--top-k", type=nonneg_int, default=5, help="number of largest eigenvalues (default 5)")
    e.add_argument("--min", action="store_true", help="also the smallest eigenvalue")
    e.add_argument("--trace", action="store_true", help="also the trace (Hutchinson estimate)")
    e.add_argument("--trace-samples", type=positive_int, default=100,
                   help="Rademacher vectors for the trace, at most (default 100)")
    e.add_argument("--trace-tol", type=positive_float, default=0.01,
                   help="stop the trace once its standard error is below this fraction (default 0.01)")
    e.add_argument("--exact-trace", action="store_true",
                   help="exact trace from one product per parameter (tiny models only)")
    e.add_argument("--iters", type=positive_int, default=100,
                   help="Lanczos iterations (Hessian-vector products), at most (default 100)")
    e.add_argument("--tol", type=positive_float, default=1e-3,
                   help="stop when every residual is below tol x the largest |eigenvalue| (default 1e-3)")
    e.add_argument("--seed", type=seed_int, default=0, help="seed of the start, trace and density vectors (default 0)")
    e.add_argument("--density", action="store_true",
                   help="also the eigenvalue density (stochastic Lanczos quadrature)")
    e.add_argument("--density-probes", type=positive_int, default=10,
                   help="Rademacher probe vectors for the density (default 10)")
    e.add_argument("--density-steps", type=positive_int, default=80,
                   help="Lanczos steps per probe, with full reorthogonalization (default 80)")
    e.add_argument("--density-sigma", type=positive_float, default=None,
                   help="standard deviation of the Gaussian smoothing (default: 1%% of the nodes' range)")
    o = p.add_argument_group("output")
    o.add_argument("--json", action="store_true", help="machine-readable output")
    o.add_argument("--store", default=None, metavar="SURF.h5",
                   help="also write the result into this surface file (attrs 'hessian', 'metrics')")


def format_result(r: dict) -> str:
    """The human-readable table of a HessianResult.to_dict()."""
    params = "weights with 2+ dims" if r["params"] == "2d" else "all parameters"
    lines = [
        f"Hessian of the mean {r['loss']} loss over {r['n_samples']} {r.get('split', '')} samples "
        f"(loss {r['mean_loss']:.6g}), {r['n_params']:,} parameters ({params})",
        "",
        f"  {'':>4}  {'eigenvalue':>14}  {'residual':>10}  {'iterations':>10}",
    ]
    for i, (v, e, it) in enumerate(zip(r["eigenvalues"], r["residuals"], r["eigen_iterations"]), 1):
        lines.append(f"  {i:>4}  {v:>14.6g}  {e:>10.2e}  {it:>10d}")
    if "min_eigenvalue" in r:
        lines.append(
            f"  {'min':>4}  {r['min_eigenvalue']:>14.6g}  {r['min_residual']:>10.2e}  {r['min_iterations']:>10d}"
        )
    lines.append("")
    if "eig_ratio" in r:
        lines.append(f"|min / max| = {r['eig_ratio']:.4g}")
    if "trace" in r:
        how = "exact" if r["trace_method"] == "exact" else f"{r['trace_samples']} Rademacher vectors"
        lines.append(f"trace = {r['trace']:.6g} +- {r['trace_stderr']:.2g} (standard error; {how})")
    if "density" in r:
        d = r["density"]
        lines.append(
            f"density: {d['probes']} probes x {d['steps']} Lanczos steps, nodes {d['support'][0]:.6g} .. "
            f"{d['support'][1]:.6g}, sigma {d['sigma']:.3g}; trace ~ {d['trace_estimate']:.6g}, "
            f"||H||_F^2 ~ {d['frobenius_sq_estimate']:.6g}"
        )
    state = "converged" if r["converged"] else f"NOT converged to tol {r['tol']:g} (raise --iters)"
    lines.append(
        f"Lanczos: {r['lanczos_iterations']} iterations, {state}; {r['hvps']} Hessian-vector "
        f"products in {r['seconds']:.1f}s on {r.get('device', '?')}"
    )
    return "\n".join(lines)


def _run_hessian(args: argparse.Namespace) -> int:
    from ..engine.spectral_density import DensityConfig
    from ..jobs.hessian_job import HessianConfig, compute_hessian, store_hessian

    cfg = HessianConfig(
        ckpt=args.ckpt,
        model=args.model,
        data=args.data,
        data_root=args.data_root,
        data_test=args.data_test,
        split=args.split,
        max_samples=args.max_samples,
        trust_torchscript=args.trust_torchscript,
        normalization=args.normalization,
        batch_size=args.batch_size,
        top_k=args.top_k,
        smallest=args.min,
        trace=args.trace,
        trace_samples=args.trace_samples,
        trace_tol=args.trace_tol,
        exact_trace=args.exact_trace,
        iters=args.iters,
        tol=args.tol,
        seed=args.seed,
        device=args.device,
        ignore=args.ignore,
        loss=args.loss,
        dtype=args.dtype,
        density=DensityConfig(args.density_probes, args.density_steps, args.density_sigma)
        if args.density else None,
    )
    if args.store:  # fail before the long computation when the file is not a surface
        from ..io.storage import read_surface

        read_surface(args.store)
    result = compute_hessian(cfg)
    out = result.to_dict()
    if args.store:
        out["stored_in"] = args.store
        out["metrics"] = store_hessian(args.store, result)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(format_result(out))
        if args.store:
            print(f"stored in {args.store} (attrs 'hessian'; metrics updated)")
    return 0


COMMANDS = [("hessian", HELP, _add_hessian, _run_hessian)]
