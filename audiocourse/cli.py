"""The command line behind ``python utils.py ...`` (README; each notebook names its command)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
from pathlib import Path

import torch

from . import data, env, infer, train

__all__ = ["main"]

# Modules that add their own sub-commands through ``add_commands(subparsers)``.
_COMMAND_MODULES = ("audiocourse.train",)


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


# --- 06: predict, stream, export ---
# (and evaluate, a training-side command moved here from train.py's add_commands)


def _print_top(name: str, top: list) -> None:
    print(f"{name}: " + ", ".join(f"{word} {100 * prob:.1f}%" for word, prob in top))


def _cmd_predict(args: argparse.Namespace) -> int:
    model = infer.load_inference_model(args.checkpoint, device=args.device)[:2]
    status = 0
    for f in args.files:
        try:
            if not args.all:
                _print_top(f, infer.predict(f, model, top_k=args.top_k))
                continue
            res = infer.stream(f, model, hop_ms=250, smooth_ms=250)  # every window, unsmoothed
            for t, probs in zip(res.times, res.posteriors, strict=True):
                top = sorted(zip(model[1], probs, strict=True), key=lambda wp: -wp[1])[: args.top_k]
                _print_top(f"{f} [{max(t - 0.5, 0):6.2f}-{t + 0.5:6.2f} s]", top)
        except data.AudioError as e:
            print(f"error: {e}")
            status = 1
    return status


def _cmd_stream(args: argparse.Namespace) -> int:
    model = infer.load_inference_model(args.checkpoint, device=args.device)[:2]
    x, name = infer.as_audio(args.file)
    res = infer.stream(x, model, sample_rate=data.SAMPLE_RATE, hop_ms=args.hop_ms,
                       smooth_ms=args.smooth_ms, threshold=args.threshold,
                       refractory_ms=args.refractory_ms)  # fmt: skip
    print(f"{name}: {len(x) / data.SAMPLE_RATE:.2f} s, {len(res.times)} windows, "
          f"{len(res.detections)} detections (threshold {args.threshold})")  # fmt: skip
    for d in res.detections:
        print(f"{d.time_s:8.2f} s  {d.word:<10} {d.score:.3f}")
    if args.plot:
        fig = infer.plot_stream(res, model[1], threshold=args.threshold, title=name)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    formats = ["torchscript", "onnx"] if args.format == "all" else [args.format]
    rep = infer.export_model(args.checkpoint, args.out or args.checkpoint.parent / "export",
                             formats, parity_audio=args.data, latency_runs=args.runs,
                             latency_threads=args.threads, exporter=args.exporter)  # fmt: skip
    print(rep.summary())
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else env.get_device()
    model, meta = train.load_model(args.checkpoint, device)
    classes = list(meta["classes"])
    task = args.task or (meta.get("config") or {}).get("task")
    task = task or next((t for t, c in data.TASKS.items() if list(c) == classes), None)
    if task is None:
        raise ValueError(f"cannot tell the task of {args.checkpoint}; pass --task")
    root = data.resolve_dataset(args.data)
    split = data.load_split(root, task, "test", assign="test" if args.split == "all" else "auto",
                            cache_dir=args.cache_dir, progress=not args.quiet)  # fmt: skip
    if list(split.classes) != classes:
        raise ValueError(f"the data's classes {split.classes} differ from the model's {classes}")
    res = train.evaluate(model, split, device=device, batch_size=args.batch_size, classes=classes)
    which = "every clip" if args.split == "all" else "the test split"
    print(f"{args.checkpoint} on {root} ({which}, task {task}):")
    print(res.report())
    print(res.confusion_text())
    if args.json:
        d = {"checkpoint": str(args.checkpoint), "data": str(root), "split": args.split,
             "task": task, **res.to_dict()}  # fmt: skip
        args.json.write_text(json.dumps(d, indent=2))
        print(f"wrote {args.json}")
    return 0


def _add_infer_commands(sub: argparse._SubParsersAction) -> None:
    """predict, stream, export (notebook 06) and evaluate (notebook 05)."""
    p = sub.add_parser("predict", help="top-k words of audio files (any rate/channels/length)")
    p.add_argument("checkpoint", type=Path, help="best.pt written by train")
    p.add_argument("files", nargs="+", help="WAV/FLAC/OGG files")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--all", action="store_true", help="every 1-s window, 250 ms apart")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("stream", help="keyword spotting over a long recording")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("file", type=Path, help="a long WAV/FLAC/OGG recording")
    p.add_argument("--threshold", type=float, default=0.6, help="smoothed posterior to fire")
    p.add_argument("--hop-ms", type=float, default=100.0)
    p.add_argument("--smooth-ms", type=float, default=300.0)
    p.add_argument("--refractory-ms", type=float, default=1000.0)
    p.add_argument("--plot", type=Path, default=None, help="save the posterior plot (PNG)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_cmd_stream)

    p = sub.add_parser("export", help="ONNX / TorchScript export, parity, latency, model card")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", choices=["onnx", "torchscript", "all"], default="all")
    p.add_argument("--out", type=Path, default=None, help="default: CHECKPOINT_DIR/export")
    p.add_argument("--data", default=None, help="parity clips (default: the checkpoint's data)")
    p.add_argument("--runs", type=int, default=100, help="latency runs per runtime (0: skip)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the latency runs")
    p.add_argument("--exporter", choices=["auto", "dynamo", "legacy"], default="auto")
    p.set_defaults(func=_cmd_export)

    if "evaluate" in sub.choices:  # still registered by train.add_commands: drop this guard then
        return
    p = sub.add_parser("evaluate", help="accuracy, per-class figures, confusion of a checkpoint")
    p.add_argument("checkpoint", type=Path, help="a best.pt / last.pt written by train")
    p.add_argument("--data", required=True, help="dataset name or folder (Speech Commands layout)")
    p.add_argument("--split", choices=["test", "all"], default="test",
                   help="test: the test split; all: every clip (the test-set archive)")  # fmt: skip
    p.add_argument("--task", default=None, help="default: the checkpoint's task")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--device", default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--cache-dir", type=Path, default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)


# --- end 06 ---


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
    _add_infer_commands(sub)
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
