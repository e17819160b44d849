"""The command line behind ``python utils.py ...`` (README; each notebook names its command)."""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

__all__ = ["main"]

# Modules that add their own sub-commands through ``add_commands(subparsers)``.
_COMMAND_MODULES = ("audiocourse.train", "audiocourse.infer")


def _cmd_download(args: argparse.Namespace) -> int:
    from .download import DATASETS, download_dataset

    if args.url and not args.sha256:
        print("error: --url needs --sha256 so the archive can be verified", file=sys.stderr)
        return 2
    name = None if args.url and args.dataset == "speech_commands_v0.02" else args.dataset
    if name and name not in DATASETS and not args.url:
        print(f"error: unknown dataset {name!r}; known: {', '.join(DATASETS)}", file=sys.stderr)
        return 2
    path = download_dataset(name, args.root, url=args.url, sha256=args.sha256)
    print(f"dataset ready: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import make_demo_dataset

    t0 = time.perf_counter()
    path = make_demo_dataset(args.root, n_speakers=args.speakers, seed=args.seed)
    print(f"synthetic demo dataset ready: {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from collections import Counter

    from .data import build_index, resolve_dataset
    from .env import env_report

    print(env_report())
    if args.data:
        root = resolve_dataset(args.data)
        clips = build_index(root)
        splits = Counter(c.split for c in clips)
        print(f"dataset: {root}")
        print(
            f"clips: {len(clips)} | words: {len({c.word for c in clips})} | "
            f"speakers: {len({c.speaker for c in clips})} | "
            + " | ".join(f"{s}: {splits[s]}" for s in ("train", "validation", "test"))
        )
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """Build the demo set and train a small model on it: the README's first command."""
    argv = [
        "train",
        "--data",
        "demo",
        "--task",
        args.task,
        "--epochs",
        str(args.epochs),
        "--out",
        str(args.out),
    ]
    return main(argv)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command (README)."""
    parser = argparse.ArgumentParser(
        prog="python utils.py",
        description="audio-course command line: data, training, evaluation and inference.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("download", help="download and verify a dataset (resumable)")
    p.add_argument(
        "--dataset",
        default="speech_commands_v0.02",
        help="speech_commands_v0.02 (2.4 GB) or speech_commands_test_set_v0.02",
    )
    p.add_argument("--root", type=Path, default=None, help="parent folder (default: data/)")
    p.add_argument("--url", default=None, help="download this archive instead (same layout)")
    p.add_argument("--sha256", default=None, help="expected SHA-256 of --url's archive")
    p.set_defaults(func=_cmd_download)

    p = sub.add_parser("demo", help="build the synthetic (eSpeak NG) offline demo dataset")
    p.add_argument("--root", type=Path, default=None, help="output folder")
    p.add_argument("--speakers", type=int, default=80, help="synthetic speakers (voices)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("info", help="print the environment and (with --data) a dataset summary")
    p.add_argument("--data", default=None, help="dataset name or folder")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("quickstart", help="build the demo set and train a small model on it")
    p.add_argument("--task", default="12")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    p.set_defaults(func=_cmd_quickstart)

    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
            continue
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python utils.py`` (README)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
