#!/usr/bin/env bash
# audio-course bootstrap for Google Colab and local machines. Safe to re-run.
#
#   bash colab_setup.sh                   # packages + GPU report: what every notebook's setup runs
#   bash colab_setup.sh --download [DIR]  # also fetch and verify Speech Commands v0.02 (2.4 GB)
#
# 1. keeps a working torch/torchaudio pair (never reinstalls it), repairs a broken one with the
#    pinned pair from requirements.txt; installs only the other packages that are missing (one
#    quick look-up, nothing imported);
# 2. only with --download: downloads (resumable) and verifies the dataset into DIR (default:
#    data_dir(), i.e. $AUDIO_COURSE_DATA, or data/ of the course folder). Notebooks never need
#    this: each fetches its DATASET itself when it asks for it;
# 3. reports versions, the GPU and the precision training will use on it, or why there is none.
#
# Environment: PYTHON (interpreter), AUDIO_COURSE_DATASET (registry name for --download),
# AUDIO_COURSE_URL + AUDIO_COURSE_SHA256 (a mirror of the archive).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
DOWNLOAD=0 DATA_DIR=""
if [ "${1:-}" = "--download" ]; then DOWNLOAD=1 DATA_DIR="${2:-}"; fi
DATASET="${AUDIO_COURSE_DATASET:-speech_commands_v0.02}"
pin() { grep -iE "^$1([<>=~ ]|$)" requirements.txt | head -n1; }
say() { printf '\n== %s\n' "$*"; }

say "packages ($("$PY" --version 2>&1))"
pair_ok() {
  "$PY" - <<'PY' 2>/dev/null
import torch, torchaudio
torchaudio.transforms.MelSpectrogram(16000)(torch.zeros(1, 1600))  # loads torchaudio's kernels
print(f"torch {torch.__version__} + torchaudio {torchaudio.__version__}: working pair, kept")
PY
}
if ! pair_ok; then
  echo "torch/torchaudio missing or mismatched: installing the pinned pair $(pin torch) $(pin torchaudio)"
  "$PY" -m pip install -q "$(pin torch)" "$(pin torchaudio)"
  pair_ok || { echo "error: torch/torchaudio still do not import; see the messages above" >&2; exit 1; }
fi

# module -> requirement name; find_spec looks a module up without importing it (fast)
absent=$("$PY" - <<'PY'
from importlib.util import find_spec

wanted = {"numpy": "numpy", "scipy": "scipy", "soundfile": "soundfile", "matplotlib": "matplotlib",
          "tqdm": "tqdm", "IPython": "ipython", "PIL": "pillow", "librosa": "librosa",
          "espeakng_loader": "espeakng-loader", "torchinfo": "torchinfo", "onnx": "onnx",
          "onnxruntime": "onnxruntime"}
print(" ".join(req for module, req in wanted.items() if find_spec(module) is None))
PY
)
if [ -n "$absent" ]; then
  missing=()
  for req in $absent; do missing+=("$(pin "$req")"); done
  echo "installing missing: ${missing[*]}"
  "$PY" -m pip install -q "${missing[@]}"
else
  echo "all other packages present"
fi

if [ "$DOWNLOAD" = 1 ]; then
  say "dataset $DATASET"
  args=(download --dataset "$DATASET")
  if [ -n "$DATA_DIR" ]; then args+=(--root "$DATA_DIR"); fi
  if [ -n "${AUDIO_COURSE_URL:-}" ]; then
    args+=(--url "$AUDIO_COURSE_URL" --sha256 "${AUDIO_COURSE_SHA256:?set AUDIO_COURSE_SHA256 too}")
  fi
  if ! "$PY" utils.py "${args[@]}"; then
    echo "warning: the dataset is not ready (see the error above); re-run this script to resume." >&2
    echo "         Offline, the notebooks work on the synthetic demo set (DATASET = \"demo\")." >&2
  fi
fi

say "report"
DATA_DIR="$DATA_DIR" DATASET="$DATASET" DOWNLOAD="$DOWNLOAD" "$PY" - <<'PY'
import os
import shutil
import subprocess
from pathlib import Path

import torch

from audiocourse.env import data_dir, env_report

print(env_report())
if os.environ["DOWNLOAD"] == "1":
    folder = Path(os.environ["DATA_DIR"] or data_dir()) / os.environ["DATASET"]
    done = (folder / ".complete").exists()
    print(f"dataset: {folder.resolve()}" + ("" if done else " - not downloaded"))
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    amp = "bf16" if p.major >= 8 else "fp16 with a GradScaler (this GPU has no bf16)"
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB, compute capability {p.major}.{p.minor};"
          f" torch sees CUDA {torch.version.cuda}. Training uses it automatically, in {amp}.")
else:
    smi = shutil.which("nvidia-smi")
    gpus = subprocess.run([smi, "-L"], capture_output=True, text=True).stdout if smi else ""
    if gpus.strip():
        print(f"GPU: {gpus.splitlines()[0]} is present, but torch {torch.__version__} (built for\n"
              f"     CUDA {torch.version.cuda}) cannot use it: usually a driver older than that CUDA\n"
              "     needs. See README, 'On a local GPU', for the wheel that matches your driver.")
    else:
        print("GPU: none - torch sees no CUDA device, training runs on the CPU.\n"
              "     In Colab: Runtime > Change runtime type > T4 GPU, then run the setup cell again.\n"
              "     On a CPU everything still runs, but full-dataset training (notebook 05) takes\n"
              "     hours instead of minutes; the notebooks' FAST settings and the demo set stay quick.")
PY
