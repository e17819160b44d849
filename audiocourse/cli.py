"""The command line behind ``python utils.py ...`` (README; each notebook names its command)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from .data import SAMPLE_RATE, AudioError, build_index, load_split, resolve_dataset
from .demo import make_demo_dataset
from .download import DATASETS, download_dataset
from .env import data_dir, env_report, get_device
from .infer import as_audio, export_model, load_inference_model, plot_stream, predict, stream
from .models import MODELS
from .train import LAST, evaluate, load_model, train_task

__all__ = ["main"]


def _cmd_download(args: argparse.Namespace) -> int:
    if args.url and not args.sha256:
        raise ValueError("--url needs --sha256 so that the archive can be verified")
    name = None if args.url and args.dataset == "speech_commands_v0.02" else args.dataset
    path = download_dataset(name, args.root, url=args.url, sha256=args.sha256)
    print(f"dataset ready: {path}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    t0 = time.perf_counter()
    path = make_demo_dataset(args.root, n_speakers=args.speakers, seed=args.seed)
    print(f"synthetic demo dataset ready: {path} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    print(env_report())
    if args.data:
        root = resolve_dataset(args.data)
        clips = build_index(root)
        splits = Counter(c.split for c in clips)
        print(f"dataset: {root}\nclips: {len(clips)} | words: {len({c.word for c in clips})} | "
              f"speakers: {len({c.speaker for c in clips})} | "
              + " | ".join(f"{s}: {splits[s]}" for s in ("train", "validation", "test")))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device) if args.device else get_device()
    print(env_report(device))
    out = args.out or Path("runs") / f"{args.model}_{args.task}"
    options = {"epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
               "weight_decay": args.weight_decay, "optimizer": args.optimizer,
               "warmup_epochs": args.warmup_epochs, "label_smoothing": args.label_smoothing}
    options = {k: v for k, v in options.items() if v is not None}
    words = args.words.split(",") if args.words else None
    t0 = time.perf_counter()
    res = train_task(
        args.data, "all" if words else args.task, args.model, out=out, noise_dir=args.noise,
        words=words, test_data=args.test_data, carve_out=args.carve_out, width=args.width,
        normalise=args.normalise, recipe=f"{args.model}_paper" if args.paper else None,
        seed=args.seed, device=device, amp=not args.no_amp, compile=args.compile,
        resume=not args.no_resume, progress=not args.quiet, **options,
    )
    m = res.metrics
    print(res.test.report())
    print(f"test accuracy {100 * m['test_accuracy']:.2f} % on {m['n_test']} clips | "
          f"{m['params']:,} parameters | {m['epochs']} epochs, {m['train_seconds']:.0f} s of "
          f"training, {time.perf_counter() - t0:.0f} s in all")
    print(f"wrote {out / LAST}, {out / 'best.pt'}, {out / 'metrics.json'}")
    return 0


def _cmd_quickstart(args: argparse.Namespace) -> int:
    """README's first command: 240 synthetic speakers and notebook 04's 1-D MFCC CNN, end to end
    (``benchmarks/bench_quickstart.py`` measures its time and accuracy)."""
    t0 = time.perf_counter()
    root = make_demo_dataset(data_dir() / "speech_commands_demo_240", n_speakers=240)
    argv = ["train", "--data", str(root), "--task", "12", "--model", "mfcc1d_plus", "--epochs",
            str(args.epochs), "--seed", str(args.seed), "--out", str(args.out), "--no-resume"]
    code = main(argv + (["--quiet"] if args.quiet else []))
    print(f"quickstart finished in {time.perf_counter() - t0:.0f} s (demo set included); "
          "accuracy on the SYNTHETIC demo set says little about real speech (notebook 05)")
    return code


def _cmd_evaluate(args: argparse.Namespace) -> int:
    device = torch.device(args.device) if args.device else get_device()
    infer, meta = load_model(args.checkpoint, device)
    task = args.task or meta["config"].get("task")
    if task is None:
        raise ValueError(f"cannot tell the task of {args.checkpoint}; pass --task")
    root = resolve_dataset(args.data)
    split = load_split(root, task, "test", assign="test" if args.split == "all" else "auto",
                       progress=not args.quiet)
    if list(split.classes) != list(meta["classes"]):
        raise ValueError(f"the data's classes {split.classes} differ from the model's "
                         f"{meta['classes']}")
    res = evaluate(infer, split, device=device)
    print(f"{args.checkpoint} on {root} ({'every clip' if args.split == 'all' else 'test split'},"
          f" task {task}):\n{res.report()}")
    if args.json:
        info = {"checkpoint": str(args.checkpoint), "data": str(root), "task": task}
        args.json.write_text(json.dumps({**info, **res.to_dict()}, indent=2))
        print(f"wrote {args.json}")
    return 0


def _add_data_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("download", help="download and verify a dataset (resumable)")
    p.add_argument("--dataset", default="speech_commands_v0.02",
                   help=f"{', '.join(DATASETS)}, or the folder name of --url's archive")
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


def _add_train_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("quickstart", help="build the demo set and train a small model on it")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_quickstart)
    p = sub.add_parser("train", help="train a model on a task, test it once (writes best.pt, "
                       "last.pt, metrics.json; resumes from last.pt)")
    p.add_argument("--data", default="demo", help="demo, speech_commands_v0.02 or a folder")
    p.add_argument("--task", default="12", choices=["yesno", "10", "12", "35", "all"],
                   help="all: every word folder of --data")
    p.add_argument("--words", default=None, help="comma-separated words, e.g. yes,no,up")
    p.add_argument("--noise", type=Path, default=None, help="folder of background-noise WAVs "
                   "(default: the dataset's _background_noise_)")
    p.add_argument("--test-data", default=None, help="test on every clip of this dataset or "
                   "folder (e.g. speech_commands_test_set_v0.02, your own recordings)")
    p.add_argument("--carve-out", action="store_true", help="with --test-data: train on every "
                   "clip of --data but a 10 %% speaker validation carve-out")
    p.add_argument("--model", default="bcresnet", choices=list(MODELS))
    p.add_argument("--out", type=Path, default=None, help="output folder (runs/MODEL_TASK)")
    p.add_argument("--width", type=float, default=None, help="BC-ResNet width (tau)")
    for name, kind in (("epochs", int), ("batch-size", int), ("lr", float),
                       ("weight-decay", float), ("warmup-epochs", float),
                       ("label-smoothing", float)):
        p.add_argument(f"--{name}", type=kind, default=None, help="default: the model's recipe")
    p.add_argument("--optimizer", choices=["adamw", "adam", "sgd"], default=None)
    p.add_argument("--normalise", choices=["band", "clip"], default=None, help="features per "
                   "band with training statistics, or each clip on its own (default: recipe's)")
    p.add_argument("--paper", action="store_true", help="bcresnet: the paper's recipe (SGD, 200 "
                   "epochs, batch 100) instead of the course's fast one")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda, mps or cpu (default: the best)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for PyTorch")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--no-amp", action="store_true", help="full fp32 on CUDA")
    p.add_argument("--no-resume", action="store_true", help="start over even if last.pt exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_train)
    p = sub.add_parser("evaluate", help="accuracy, per-class figures and confusion of a model")
    p.add_argument("checkpoint", type=Path, help="a best.pt / last.pt written by train")
    p.add_argument("--data", required=True, help="dataset name or folder")
    p.add_argument("--split", choices=["test", "all"], default="test",
                   help="all: every clip (e.g. the official test-set archive)")
    p.add_argument("--task", default=None, help="default: the checkpoint's task")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_evaluate)


# --- 06: predict, stream, export ---
def _print_top(name: str, top: list) -> None:
    print(f"{name}: " + ", ".join(f"{word} {100 * prob:.1f}%" for word, prob in top))


def _cmd_predict(args: argparse.Namespace) -> int:
    model = load_inference_model(args.checkpoint, device=args.device)[:2]
    status = 0
    for f in args.files:
        try:
            if not args.all:
                _print_top(f, predict(f, model, top_k=args.top_k))
                continue
            res = stream(f, model, hop_ms=250, smooth_ms=250)  # every window, unsmoothed
            for t, probs in zip(res.times, res.posteriors, strict=True):
                top = sorted(zip(model[1], probs, strict=True), key=lambda wp: -wp[1])[: args.top_k]
                _print_top(f"{f} [{max(t - 0.5, 0):6.2f}-{t + 0.5:6.2f} s]", top)
        except AudioError as e:
            print(f"error: {e}")
            status = 1
    return status


def _cmd_stream(args: argparse.Namespace) -> int:
    model = load_inference_model(args.checkpoint, device=args.device)[:2]
    x, name = as_audio(args.file)
    res = stream(x, model, sample_rate=SAMPLE_RATE, hop_ms=args.hop_ms, smooth_ms=args.smooth_ms,
                 threshold=args.threshold, refractory_ms=args.refractory_ms)
    print(f"{name}: {len(x) / SAMPLE_RATE:.2f} s, {len(res.times)} windows, "
          f"{len(res.detections)} detections (threshold {args.threshold})")
    for d in res.detections:
        print(f"{d.time_s:8.2f} s  {d.word:<10} {d.score:.3f}")
    if args.plot:
        fig = plot_stream(res, model[1], threshold=args.threshold, title=name)
        fig.savefig(args.plot, dpi=120, bbox_inches="tight")
        print(f"wrote {args.plot}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    rep = export_model(args.checkpoint, args.out or args.checkpoint.parent / "export",
                       [args.format], parity_audio=args.data, latency_runs=args.runs,
                       latency_threads=args.threads, exporter=args.exporter)
    print(rep.summary())
    return 0


def _add_infer_commands(sub: argparse._SubParsersAction) -> None:
    """predict, stream, export (notebook 06)."""
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

    p = sub.add_parser("export", help="ONNX export, parity, latency, model card")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--format", choices=["onnx"], default="onnx", help="(TorchScript is deprecated)")
    p.add_argument("--out", type=Path, default=None, help="default: CHECKPOINT_DIR/export")
    p.add_argument("--data", default=None, help="parity clips (default: the checkpoint's data)")
    p.add_argument("--runs", type=int, default=100, help="latency runs per runtime (0: skip)")
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the latency runs")
    p.add_argument("--exporter", choices=["auto", "dynamo", "legacy"], default="auto")
    p.set_defaults(func=_cmd_export)


def build_parser() -> argparse.ArgumentParser:
    """Every sub-command of ``python utils.py`` (README)."""
    parser = argparse.ArgumentParser(
        prog="python utils.py", description="audio-course: data, training, inference.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_data_commands(sub)
    _add_train_commands(sub)
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
