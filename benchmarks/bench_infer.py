"""Issue 6 figures: export parity, CPU latency per 1-s clip, streaming precision/recall.

    .venv/bin/python benchmarks/bench_infer.py [--checkpoint runs/x/best.pt] [--data real]
        [--model mfcc1d_plus --epochs 20] [--runs 200] [--threads 1] [--out DIR]

Without ``--checkpoint`` a small model (default: the 1-D MFCC CNN, which learns in minutes on a
CPU; ``--model bcresnet`` for the course's KWS model) is trained first with the shared loop on
``--data`` (default 'real' = $AUDIO_COURSE_REAL_DATA, the real Speech Commands test-set clips,
speaker-disjoint 65/15/20 split) into ``runs/bench_infer_<model>_<task>`` (resumed if present).
Then, on that split's test clips:

1. export ONNX (features inside the graph) and print the max abs difference of
   logits / probabilities against eager PyTorch, with top-1 agreement;
2. batch-1 CPU latency per 1-s clip for eager PyTorch and onnxruntime (median and
   90th percentile of ``--runs``, ``--threads`` threads for every runtime);
3. streaming: ``--sentences`` long recordings made of test clips (10 command words and ~20 %
   other words) with background noise in between, scored at several thresholds;
4. a detector's figures: the threshold reaching ``--fa-per-hour`` false alarms per hour on
   ``--free-minutes`` of keyword-free validation audio (``_unknown_`` words + background noise),
   then on the test split's: the miss rate, false alarms per hour, and the emission latency
   (end of the detection's last window minus the end of the word);
5. int8: ``onnxruntime.quantization.quantize_dynamic`` of the ONNX file's network (the frontend
   kept float): size, batch-1 latency and test accuracy, float32 vs int8.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from audiocourse import infer  # noqa: E402
from audiocourse.data import (  # noqa: E402
    COMMANDS_10,
    background_noise,
    load_task,
    resolve_dataset,
)


def get_checkpoint(args: argparse.Namespace, root: Path) -> Path:
    if args.checkpoint:
        return Path(args.checkpoint)
    from audiocourse.train import train_task

    out = Path(args.out_runs) / f"bench_infer_{args.model}_{args.task}"
    kwargs = {"width": args.width} if args.model == "bcresnet" else {}
    print(
        f"no --checkpoint: training {args.model} {kwargs} for {args.epochs} epochs on {root} "
        f"into {out} (resumes if present)\n  = python utils.py train --data {args.data} "
        f"--task {args.task} --model {args.model} --epochs {args.epochs} --out {out}"
        + (f" --width {args.width}" if kwargs else "")
    )
    t0 = time.perf_counter()
    res = train_task(
        root, args.task, args.model, epochs=args.epochs, out=out, progress=False, **kwargs
    )
    print(
        f"  trained in {time.perf_counter() - t0:.0f} s: test accuracy "
        f"{100 * res.metrics['test_accuracy']:.2f} % on {res.metrics['n_test']} clips"
    )
    return out / "best.pt"


def _detector_audio(split, noise, minutes: float, n_sent: int, seed: int):
    """Keyword sentences (8 clips each) and keyword-free audio (_unknown_ words + noise)."""
    rng = np.random.default_rng(seed)
    audio = np.asarray(split.audio, dtype=np.float32) / 32768.0
    kw_ids = [i for i, c in enumerate(split.classes) if c in COMMANDS_10]
    kw = rng.permutation(np.flatnonzero(np.isin(split.labels, kw_ids)))
    sents = [infer.make_sentence(audio[kw[8 * k : 8 * k + 8]],
                                 [split.classes[split.labels[r]] for r in kw[8 * k : 8 * k + 8]],
                                 noise, seed=seed + k) for k in range(n_sent)]  # fmt: skip
    unk = np.flatnonzero(split.labels == list(split.classes).index("_unknown_")
                         ) if "_unknown_" in split.classes else []  # fmt: skip
    pick = rng.choice(unk, int(minutes * 60 / 2.5)) if len(unk) else []
    free, _ = infer.make_sentence(audio[pick], ["_unknown_"] * len(pick), noise,
                                  gap_s=(1.0, 2.0), seed=seed)  # fmt: skip
    bed = 0.5 * np.asarray(noise, np.float32).reshape(-1)[: int(minutes * 60 * 16000) // 4]
    return sents, np.concatenate([free, bed])


def _sweep(model, classes, sents, free, thresholds):
    runs = [(infer.stream(a, model, sample_rate=16000), t) for a, t in sents]
    free_res = infer.stream(free, model, sample_rate=16000)
    hours = len(free) / 16000 / 3600
    out = {}
    for thr in thresholds:
        dets = [infer.detect(r.times, r.posteriors, classes, thr, 1.0) for r, _ in runs]
        sc = [infer.detection_scores(d, t) for d, (_, t) in zip(dets, runs, strict=True)]
        late = [_latency_s(r, d, t, classes, thr) for (r, t), d in zip(runs, dets, strict=True)]
        out[thr] = {"miss": sum(x.fn for x in sc) / max(1, sum(x.tp + x.fn for x in sc)),
                    "fa_per_hour": len(infer.detect(free_res.times, free_res.posteriors, classes,
                                                    thr, 1.0)) / hours,
                    "latency_s": [x for lst in late for x in lst]}  # fmt: skip
    return out, hours


def _latency_s(res, dets, truth, classes, thr) -> list[float]:
    """Emission (end of the stretch's last window, 0.5 s after its centre) minus the word's end."""
    keep = [i for i, c in enumerate(classes) if c not in infer.FILLER_CLASSES]
    score, best = res.posteriors[:, keep].max(1), res.posteriors[:, keep].argmax(1)
    out = []
    for d in dets:
        f = end = int(np.argmin(np.abs(res.times - d.time_s)))
        while end + 1 < len(score) and score[end + 1] >= thr and best[end + 1] == best[f]:
            end += 1
        spans = [e for w, s, e in truth if w == d.word and s - 0.25 <= d.time_s <= e + 0.25]
        if spans:
            out.append(float(res.times[min(end + 1, len(score) - 1)] + 0.5 - spans[0]))
    return out


def detector_figures(args, root, module, classes) -> dict:
    thresholds = [round(t, 2) for t in np.arange(0.05, 1.0, 0.05)]
    splits = load_task(root, args.task, progress=False)
    figs = {}
    for name, seed in (("validation", 10), ("test", 20)):
        sents, free = _detector_audio(splits[name], background_noise(root, name),
                                      args.free_minutes, args.sentences, seed)  # fmt: skip
        figs[name], hours = _sweep((module, classes), classes, sents, free, thresholds)
        print(f"  {name}: {len(sents)} keyword sentences, {60 * hours:.1f} min keyword-free audio")
    ok = [t for t in thresholds if figs["validation"][t]["fa_per_hour"] <= args.fa_per_hour]
    thr = ok[0] if ok else thresholds[-1]
    f = figs["test"][thr]
    lat = np.asarray(f["latency_s"])
    print(f"\n== detector: threshold {thr} (validation: <= {args.fa_per_hour:g} false alarms/hour"
          f"{'' if ok else ' not reached'}) -> test: miss rate {100 * f['miss']:.1f} %, "
          f"{f['fa_per_hour']:.0f} false alarms/hour; emission latency after the word's end: "
          + (f"median {np.median(lat):.2f} s, max {lat.max():.2f} s ({len(lat)} hits)"
             if len(lat) else "no hits"))  # fmt: skip
    return {"threshold": thr, "target_fa_per_hour": args.fa_per_hour,
            "test": {str(t): {k: v for k, v in d.items() if k != "latency_s"}
                     for t, d in figs["test"].items()},
            "median_latency_s": float(np.median(lat)) if len(lat) else None}  # fmt: skip


def int8_vs_float(onnx_file: Path, audio: np.ndarray, labels: np.ndarray, runs: int) -> dict:
    import logging

    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)  # quantize_dynamic's pre-processing advice
    q = onnx_file.with_name("model.int8.onnx")
    net = [n.name for n in onnx.load(str(onnx_file)).graph.node if n.name.startswith("/model/")]
    quantize_dynamic(str(onnx_file), str(q), weight_type=QuantType.QInt8,
                     op_types_to_quantize=["Conv", "MatMul", "Gemm"], nodes_to_quantize=net)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.log_severity_level = 1, 3
    out = {}
    print("\n== int8 (dynamic, the network only; frontend float) vs float32, onnxruntime, 1 thread")
    for name, f in (("float32", onnx_file), ("int8", q)):
        sess = ort.InferenceSession(str(f), opts, providers=["CPUExecutionProvider"])
        logits = np.concatenate([sess.run(None, {"audio": audio[i : i + 256]})[0]
                                 for i in range(0, len(audio), 256)])  # fmt: skip
        lat = infer.measure_latency(lambda s=sess: s.run(None, {"audio": audio[:1]}), runs)
        out[name] = {"kB": f.stat().st_size / 1e3, "median_ms": lat["median_ms"],
                     "accuracy": float((logits.argmax(1) == labels).mean())}  # fmt: skip
        print(f"  {name:>7}: {out[name]['kB']:7.0f} kB, {lat['median_ms']:6.2f} ms per clip, "
              f"test accuracy {100 * out[name]['accuracy']:.2f} % ({len(audio)} clips)")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--data", default="real", help="dataset name or folder (default: real)")
    ap.add_argument("--task", default="12")
    ap.add_argument("--model", default="mfcc1d_plus", help="model trained when no --checkpoint")
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--runs", type=int, default=200, help="latency runs per runtime")
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for latency runs")
    ap.add_argument("--sentences", type=int, default=4)
    ap.add_argument("--words", type=int, default=20, help="clips per sentence")
    ap.add_argument("--fa-per-hour", type=float, default=30.0)
    ap.add_argument("--free-minutes", type=float, default=10.0, help="keyword-free audio per split")
    ap.add_argument("--out-runs", default="runs")
    ap.add_argument("--out", default=None, help="export folder (default CHECKPOINT_DIR/export)")
    args = ap.parse_args()
    if args.data == "real" and not os.environ.get("AUDIO_COURSE_REAL_DATA"):
        default = Path(__file__).resolve().parents[2] / "shared/data/speech_commands_test_v0.02"
        if default.is_dir():
            os.environ["AUDIO_COURSE_REAL_DATA"] = str(default)

    print(infer.__name__, "| torch", torch.__version__, "| cores", os.cpu_count())
    root = resolve_dataset(args.data)
    ckpt = get_checkpoint(args, root)
    module, classes, meta = infer.load_inference_model(str(ckpt), device="cpu")
    metrics = meta.get("metrics") or {}
    print(
        f"\ncheckpoint {ckpt}: {meta.get('model_name')} {meta.get('model_kwargs')}, "
        f"classes {classes}"
    )
    if metrics.get("test_accuracy") is not None:
        print(
            f"  stored test accuracy {100 * metrics['test_accuracy']:.2f} % "
            f"({metrics.get('n_test')} clips, data {metrics.get('data')})"
        )

    test = load_task(root, args.task, progress=False)["test"]
    if list(test.classes) != classes:
        raise SystemExit(f"the data's classes {test.classes} differ from the model's {classes}")
    audio = np.asarray(test.audio, dtype=np.float32) / 32768.0

    # 1 + 2: export, parity, latency -------------------------------------------------------
    out = Path(args.out) if args.out else ckpt.parent / "export"
    n_par = min(len(audio), 256)
    print(
        f"\n== export to {out} (parity on {n_par} test clips; latency: {args.runs} runs, "
        f"batch 1, {args.threads} thread(s))"
    )
    t0 = time.perf_counter()
    rep = infer.export_model(
        (module, meta),
        out,
        parity_audio=audio[:n_par],
        latency_runs=args.runs,
        latency_threads=args.threads,
    )
    print(rep.summary())
    print(f"  (export + checks took {time.perf_counter() - t0:.1f} s)")
    print(
        f"  = python utils.py export {ckpt} --out {out} --runs {args.runs} --threads {args.threads}"
    )

    # 3: streaming ---------------------------------------------------------------------------
    print(f"\n== streaming: {args.sentences} sentences of {args.words} test clips each")
    noise = background_noise(root, "test")
    rng = np.random.default_rng(0)
    probs_iso = infer.classify_batch((module, classes), test.audio)
    iso_ok = probs_iso.argmax(1) == test.labels
    print(f"  isolated-clip accuracy on the whole test split: {100 * iso_ok.mean():.2f} %")
    kw = [i for i, c in enumerate(classes) if c in COMMANDS_10]
    kw_rows = np.flatnonzero(np.isin(test.labels, kw))
    unk = classes.index("_unknown_") if "_unknown_" in classes else None
    unk_rows = np.flatnonzero(test.labels == unk) if unk is not None else np.array([], int)
    thresholds = (0.5, 0.6, 0.7, 0.8, 0.9)
    totals = {t: [0, 0, 0] for t in thresholds}
    seconds = stream_s = 0.0
    for s in range(args.sentences):
        n_unk = min(len(unk_rows), round(0.2 * args.words))
        rows = list(rng.choice(kw_rows, args.words - n_unk, replace=False))
        rows += list(rng.choice(unk_rows, n_unk, replace=False)) if n_unk else []
        rows = list(rng.permutation(rows))
        labels = [classes[test.labels[r]] for r in rows]
        sent, truth = infer.make_sentence(
            [audio[r] for r in rows], labels, noise, gap_s=(0.5, 1.0), seed=s, noise_gain=0.05
        )
        seconds += len(sent) / 16000
        t0 = time.perf_counter()
        res = infer.stream(sent, (module, classes), sample_rate=16000, threshold=min(thresholds))
        stream_s += time.perf_counter() - t0
        for t in thresholds:
            dets = infer.detect(res.times, res.posteriors, classes, t, 1.0, infer.FILLER_CLASSES)
            sc = infer.detection_scores(dets, truth, tolerance=0.25)
            totals[t][0] += sc.tp
            totals[t][1] += sc.fp
            totals[t][2] += sc.fn
        if s == 0:
            iso = np.mean([iso_ok[r] for r in rows])
            print(
                f"  sentence 0: {len(sent) / 16000:.1f} s, {len(rows)} clips "
                f"({100 * iso:.0f} % classified right in isolation)"
            )
    print(
        f"  streamed {seconds:.0f} s of audio in {stream_s:.2f} s "
        f"({seconds / stream_s:.0f}x real time; hop 100 ms, smoothing 300 ms, refractory 1 s)"
    )
    summary = {}
    for t, (tp, fp, fn) in totals.items():
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        summary[t] = {"precision": p, "recall": r, "f1": f1, "tp": tp, "fp": fp, "fn": fn}
        fa_min = fp / (seconds / 60)
        print(
            f"  threshold {t:.1f}: precision {100 * p:5.1f} %, recall {100 * r:5.1f} %, "
            f"F1 {100 * f1:5.1f} % ({tp} hits, {fp} false alarms = {fa_min:.1f}/min, "
            f"{fn} missed)"
        )
    detector = detector_figures(args, root, module, classes)
    int8 = int8_vs_float(rep.files["onnx"], audio, test.labels, args.runs)
    (out / "bench_infer.json").write_text(
        json.dumps(
            {
                "detector": detector,
                "int8": int8,
                "checkpoint": str(ckpt),
                "parity": rep.parity,
                "latency": rep.latency,
                "streaming": {str(k): v for k, v in summary.items()},
                "streamed_seconds": seconds,
                "stream_wall_s": stream_s,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {out / 'bench_infer.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
