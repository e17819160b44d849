"""audio-course's shared module: everything the notebooks import, plus the command line.

Use it from a notebook (``import utils``) or from a shell (``python utils.py --help``).
The code lives in the small package ``audiocourse/``, one module per stage of the course, in the
order the notebooks need it; this file re-exports their public names so learners have one import.
"""

from __future__ import annotations

import sys

# 01: where the course, data and runs live (Drive in Colab: 05), device, seed, report
from audiocourse.env import (  # noqa: F401
    repo_root,
    data_dir,
    runs_dir,
    use_drive,
    in_colab,
    get_device,
    set_seed,
    env_report,
)

# setup: verified, resumable dataset download
from audiocourse.download import DATASETS, DownloadError, download_dataset  # noqa: F401

# 01: the synthetic (eSpeak NG) offline demo dataset
from audiocourse.demo import make_demo_dataset  # noqa: F401

# 01-05: audio I/O, dataset index, speaker splits, task views, cached int16 arrays
from audiocourse.data import (  # noqa: F401
    SAMPLE_RATE,
    CLIP_SAMPLES,
    COMMANDS_10,
    TASKS,
    AudioError,
    Clip,
    SplitData,
    load_audio,
    resample,
    fix_length,
    which_set,
    build_index,
    load_split,
    load_task,
    background_noise,
    resolve_dataset,
)

# 02-05: feature front-ends (the one registry), augmentation, PNG export
from audiocourse.features import (  # noqa: F401
    LogMel,
    Mfcc,
    DbSpectrogram,
    FRONTENDS,
    make_frontend,
    frontend_config,
    time_shift,
    mix_noise,
    speed_perturb,
    spec_augment,
    batch_logmel,
    loop_logmel,
    compare_with_librosa,
    spectrogram_db_range,
    export_spectrogram_pngs,
    export_spectrogram_pngs_matplotlib,
)

# 01-02: plots with labelled axes, units and colour bars
from audiocourse.plots import (  # noqa: F401
    plot_waveform,
    plot_waveforms,
    plot_sampling,
    plot_spectrum,
    plot_spectrogram,
    plot_mel_filterbank,
    plot_feature_trio,
    plot_png_grid,
    mel_band_centres,
)

# 03-05: the CNNs of notebooks 03/04 and the model registry
from audiocourse.models import (  # noqa: F401
    CNNetOriginal,
    CNNet,
    MfccCnn1d,
    build_model,
    model_frontend,
)

# 03: the PNG-image (ImageFolder) route
from audiocourse.images import (  # noqa: F401
    SpectrogramImageFolder,
    image_loader,
    export_split_images,
    pixels_from_audio,
    leaky_split_data,
    speaker_overlap,
    subset_split,
)

# 05: BC-ResNet
from audiocourse.bcresnet import (  # noqa: F401
    SubSpectralNorm,
    BCResNet,
)

# 03-05: the one training loop, evaluation, checkpoints, recipes
from audiocourse.train import (  # noqa: F401
    Pipeline,
    amp_dtype,
    fit,
    evaluate,
    record_test,
    load_checkpoint,
    load_model,
    plot_history,
    plot_confusion,
    count_parameters,
    model_summary,
    RECIPES,
    default_recipe,
    train_task,
)

# 06: predict, record, stream, export
from audiocourse.infer import (  # noqa: F401
    FILLER_CLASSES,
    load_inference_model,
    as_audio,
    predict,
    predict_proba,
    classify_batch,
    RECORDER_JS,
    get_recording,
    stream,
    detect,
    make_sentence,
    detection_scores,
    plot_stream,
    exportable,
    measure_latency,
    export_model,
)

_MODULES = (
    "audiocourse.env",
    "audiocourse.data",
    "audiocourse.download",
    "audiocourse.demo",
    "audiocourse.features",
    "audiocourse.plots",
    "audiocourse.models",
    "audiocourse.images",
    "audiocourse.bcresnet",
    "audiocourse.train",
    "audiocourse.infer",
)

if __name__ == "__main__":
    from audiocourse.cli import main

    sys.exit(main())
