"""`landscape train`, `landscape models`, `landscape info`."""

from __future__ import annotations

import argparse

from ..errors import LandscapeError
from .options import (
    add_threads,
    json_dict,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_int,
    unit_interval,
)

# ---------------------------------------------------------------------------------------------
# models


def _add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'")
    p.add_argument("--params", action="store_true", help="also print parameter counts (CIFAR shape)")


def _run_models(args: argparse.Namespace) -> int:
    from ..models import create_model, list_models

    names = list_models(args.pattern)
    if not names:
        raise LandscapeError(f"no registered model matches {args.pattern!r} (try 'landscape models')")
    for name in names:
        if args.params:
            n = sum(p.numel() for p in create_model(name).parameters())
            print(f"{name:24s} {n / 1e6:8.3f}M")
        else:
            print(name)
    return 0


# ---------------------------------------------------------------------------------------------
# train


def _add_train(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="resnet20", help="registry name or package.module:factory")
    p.add_argument("--model-kwargs", type=json_dict, default={}, help='JSON, e.g. \'{"width": 8}\'')
    p.add_argument("--data", default="digits", help="digits (built in), cifar10, cifar100, synthetic")
    p.add_argument("--data-root", default=None, help="directory with CIFAR python-pickle files")
    p.add_argument("--epochs", type=positive_int, default=20, help="training epochs (default 20)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="mini-batch size (default 64)")
    p.add_argument("--lr", type=positive_float, default=0.1, help="peak learning rate (default 0.1)")
    p.add_argument("--wd", type=nonneg_float, default=5e-4, help="weight decay (default 5e-4)")
    p.add_argument("--momentum", type=unit_interval, default=0.9,
                   help="Nesterov momentum of SGD, 0 to below 1 (default 0.9)")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                   help="sgd (Nesterov momentum, the paper's; default) or adam (try --lr 0.001)")
    p.add_argument("--warmup", type=nonneg_float, default=1.0, help="linear warm-up epochs (default 1)")
    p.add_argument(
        "--augment",
        choices=("auto", "none", "shift", "crop-flip"),
        default="auto",
        help="training augmentation (auto: the data set's own: shift for digits, crop-flip for CIFAR)",
    )
    p.add_argument("--seed", type=seed_int, default=0, help="initialization and shuffling seed")
    p.add_argument("--split-seed", type=int,  # its range (0 to 2**32-1) and message: landscape.data.sources
                   default=0, help="seed of the digits train/test split")
    p.add_argument(
        "--save-every",
        type=nonneg_int,
        default=0,
        help="keep a snapshot every K epochs in <out>_trajectory/ (for --pca directions)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    add_threads(p)
    p.add_argument("--out", default=None, help="checkpoint path (default ckpts/<model>.pt)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")


def _run_train(args: argparse.Namespace) -> int:
    from ..jobs.train import TrainConfig, train

    out = args.out or f"ckpts/{args.model.replace(':', '_').replace('.', '_')}.pt"
    config = TrainConfig(
        model=args.model,
        model_kwargs=args.model_kwargs,
        data=args.data,
        data_root=args.data_root,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.wd,
        momentum=args.momentum,
        optimizer=args.optimizer,
        warmup_epochs=args.warmup,
        augment=args.augment,
        seed=args.seed,
        split_seed=args.split_seed,
        save_every=args.save_every,
        device=args.device,
        out=out,
        quiet=args.quiet,
    )
    ckpt = train(config)
    m = ckpt.metrics
    test = f", test loss {m['test_loss']:.4f} acc {m['test_acc']:.2f}%" if "test_loss" in m else ""
    print(
        f"wrote {out}: {config.model} on {config.data}, train loss {m['train_loss']:.4f} "
        f"acc {m['train_acc']:.2f}%{test} in {m['train_seconds']:.1f}s"
    )
    return 0


# ---------------------------------------------------------------------------------------------
# info


def _add_info(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "path", nargs="?", default=None,
        help="a checkpoint (.pt) or a surface file (.h5); without one, this machine's torch and CPU",
    )
    p.add_argument("--model", default=None, help="architecture, for bare state dicts")
    p.add_argument(
        "--model-kwargs", type=json_dict, default={}, help='its arguments, e.g. \'{"width": 8}\''
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _run_info(args: argparse.Namespace) -> int:
    from ..jobs.info import describe, describe_machine

    if args.path is None:
        print(describe_machine(as_json=args.json))
        return 0
    print(describe(args.path, model=args.model, as_json=args.json, model_kwargs=args.model_kwargs))
    return 0


COMMANDS = [
    (
        "train",
        "train a model and write a checkpoint\n\nexample: landscape train --model resnet20 --data digits --out ckpts/resnet20.pt",
        _add_train,
        _run_train,
    ),
    ("models", "list the registered architectures\n\nexample: landscape models 'resnet*' --params", _add_models, _run_models),
    (
        "info",
        "print a checkpoint's or a surface file's metadata, or this machine's\n\nexample: landscape info surfaces/resnet20.h5",
        _add_info,
        _run_info,
    ),
]
