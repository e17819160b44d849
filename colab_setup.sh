#!/usr/bin/env bash
# audio-course bootstrap for Google Colab and local machines. Safe to re-run.
#
#   bash colab_setup.sh [DATA_DIR]
#
# 1. keeps a working torch/torchaudio pair (never reinstalls it), repairs a broken one with the
#    pinned pair from requirements.txt; installs only the other packages that are missing;
# 2. downloads and verifies Speech Commands v0.02 (2.4 GB, resumable) into DATA_DIR
#    (default: $AUDIO_COURSE_DATA or ./data; point it at a mounted Google Drive folder to survive
#    runtime resets);
# 3. reports versions, the dataset and the GPU (or how to get one).
#
# Environment: PYTHON (interpreter), AUDIO_COURSE_DATASET (registry name, or "none" to skip the
# download), AUDIO_COURSE_URL + AUDIO_COURSE_SHA256 (a mirror of the archive).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ -n "${PYTHON:-}" ]; then PY="$PYTHON"
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3; fi
DATA_DIR="${1:-${AUDIO_COURSE_DATA:-data}}"
DATASET="${AUDIO_COURSE_DATASET:-speech_commands_v0.02}"
pin() { grep -E "^$1==" requirements.txt | head -n1; }
say() { printf '\n== %s\n' "$*"; }

say "1/3 Python packages ($("$PY" --version 2>&1))"
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

missing=()
while read -r module spec; do
  "$PY" -c "import $module" 2>/dev/null || missing+=("$(grep -iE "^${spec}([<>=~ ]|$)" requirements.txt | head -n1)")
done <<'MODS'
numpy numpy
scipy scipy
soundfile soundfile
matplotlib matplotlib
tqdm tqdm
IPython ipython
PIL pillow
espeakng_loader espeakng-loader
librosa librosa
torchinfo torchinfo
onnx onnx
onnxruntime onnxruntime
MODS
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing missing: ${missing[*]}"
  "$PY" -m pip install -q "${missing[@]}"
else
  echo "all other packages present"
fi

say "2/3 dataset"
if [ "$DATASET" = "none" ]; then
  echo "skipped (AUDIO_COURSE_DATASET=none); the synthetic demo set needs no download: python utils.py demo"
else
  args=(download --root "$DATA_DIR")
  if [ -n "${AUDIO_COURSE_URL:-}" ]; then
    args+=(--url "$AUDIO_COURSE_URL" --sha256 "${AUDIO_COURSE_SHA256:?set AUDIO_COURSE_SHA256 too}" --dataset "$DATASET")
  else
    args+=(--dataset "$DATASET")
  fi
  if ! "$PY" utils.py "${args[@]}"; then
    echo "warning: the dataset is not ready (see the error above); re-run this script to resume." >&2
    echo "         Offline, the notebooks work on the synthetic demo set (DATASET = \"demo\")." >&2
  fi
fi

say "3/3 report"
AUDIO_COURSE_DATA="$DATA_DIR" DATASET="$DATASET" "$PY" - <<'PY'
import os
from pathlib import Path

import torch

from audiocourse.env import env_report

print(env_report())
folder = Path(os.environ["AUDIO_COURSE_DATA"]) / os.environ["DATASET"]
if os.environ["DATASET"] == "none":
    print("dataset: download skipped")
elif (folder / ".complete").exists():
    from audiocourse.data import build_index

    print(f"dataset: {folder.resolve()} ({len(build_index(folder)):,} clips)")
else:
    print(f"dataset: not downloaded ({folder})")
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print(f"GPU: {p.name}, {p.total_memory / 2**30:.1f} GiB - training uses it automatically")
else:
    print("GPU: none. In Colab: Runtime > Change runtime type > T4 GPU, then re-run this cell.\n"
          "     On CPU everything still runs, but full-dataset training (notebook 05) takes hours\n"
          "     instead of minutes; the notebooks' FAST settings and the demo set stay quick.")
PY
