"""audio-course's shared module: everything the notebooks import, plus the command line.

From a notebook: ``import utils``. From a shell: ``python utils.py --help`` (README). The code
lives in the package ``audiocourse/``, one module per stage (env, download, demo, data,
features, plots, images, bcresnet, models, train, infer, cli); this file re-exports the names
the notebooks use, grouped under the notebook that introduces them.
"""

from __future__ import annotations

import sys

# 01 - audio data: the environment, loading audio, the dataset and its speaker-disjoint splits
from audiocourse.env import (  # noqa: F401
    repo_root, data_dir, in_colab, get_device, set_seed, env_report,
)
from audiocourse.demo import make_demo_dataset  # noqa: F401
from audiocourse.data import (  # noqa: F401
    SAMPLE_RATE, CLIP_SAMPLES, COMMANDS_10, AudioError, Clip, load_audio, resample, fix_length,
    which_set, build_index, resolve_dataset,
)
from audiocourse.plots import plot_waveform, plot_waveforms, plot_sampling  # noqa: F401

# 02 - transforms: spectrogram, mel, MFCC, augmentation, PNG export
from audiocourse.data import background_noise  # noqa: F401
from audiocourse.features import (  # noqa: F401
    LogMel, Mfcc, time_shift, mix_noise, spec_augment, batch_logmel, loop_logmel,
    compare_with_librosa, spectrogram_db_range, export_spectrogram_pngs,
    export_spectrogram_pngs_matplotlib,
)
from audiocourse.plots import (  # noqa: F401
    plot_spectrum, plot_spectrogram, plot_mel_filterbank, plot_feature_trio, plot_png_grid,
)

# 03 - a CNN on spectrogram images: splits as arrays, the image route, the original model
from audiocourse.data import SplitData, load_split, load_task, subset_split  # noqa: F401
from audiocourse.images import (  # noqa: F401
    SpectrogramImageFolder, image_loader, export_split_images, pixels_from_audio,
)
from audiocourse.models import CNNetOriginal, build_model  # noqa: F401
from audiocourse.train import evaluate, count_parameters  # noqa: F401

# 03b - the fixed CNN: the one training loop, its plots, the leaky split
from audiocourse.data import pool_splits, leaky_split_data, speaker_overlap  # noqa: F401
from audiocourse.models import CNNet, model_frontend  # noqa: F401
from audiocourse.train import fit, plot_history, plot_confusion, model_summary  # noqa: F401

# 04 - a 1-D CNN on MFCC features
from audiocourse.models import MfccCnn1d  # noqa: F401

# 05 - keyword spotting: the full dataset, BC-ResNet, the device-resident pipeline, recipes
from audiocourse.env import runs_dir, use_drive  # noqa: F401
from audiocourse.download import DATASETS, DownloadError, download_dataset  # noqa: F401
from audiocourse.bcresnet import SubSpectralNorm, BCResNet  # noqa: F401
from audiocourse.train import (  # noqa: F401
    Pipeline, amp_dtype, record_test, load_checkpoint, load_model, RECIPES, default_recipe,
    train_task,
)

# 06 - using the model: files, microphone, streaming, export
from audiocourse.infer import (  # noqa: F401
    FILLER_CLASSES, load_inference_model, as_audio, predict, predict_proba, classify_batch,
    RECORDER_JS, get_recording, stream, detect, make_sentence, detection_scores, plot_stream,
    exportable, measure_latency, export_model,
)

_MODULES = tuple(f"audiocourse.{m}" for m in (
    "env", "download", "demo", "data", "features", "plots", "images", "bcresnet", "models",
    "train", "infer",
))  # fmt: skip

if __name__ == "__main__":
    from audiocourse.cli import main

    sys.exit(main())
