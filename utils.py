"""audio-course's shared module: everything the notebooks import, plus the command line.

Use it from a notebook (``import utils``) or from a shell (``python utils.py --help``).
The code lives in the small package ``audiocourse/``, one module per stage of the course, in the
order the notebooks need it; this file re-exports their public names so learners have one import.
"""

from __future__ import annotations

import sys

# 01: device, seed, environment report
from audiocourse.env import (  # noqa: F401
    repo_root,
    data_dir,
    in_colab,
    get_device,
    set_seed,
    env_report,
)

# 01-05: audio I/O, dataset index, speaker splits, cached int16 arrays
from audiocourse.data import (  # noqa: F401
    SAMPLE_RATE,
    CLIP_SAMPLES,
    WORDS_V2,
    COMMANDS_10,
    TASKS,
    AudioError,
    Clip,
    SplitData,
    load_audio,
    resample,
    fix_length,
    speaker_of,
    which_set,
    build_index,
    task_classes,
    load_split,
    load_task,
    background_noise,
    resolve_dataset,
)

# setup: verified, resumable dataset download
from audiocourse.download import (  # noqa: F401
    DatasetInfo,
    DATASETS,
    DEFAULT_DATASET,
    DownloadError,
    download_file,
    extract_archive,
    download_dataset,
)

# setup: the synthetic (eSpeak NG) offline demo dataset
from audiocourse.demo import (  # noqa: F401
    make_demo_dataset,
    synthesize_word,
)

# 02: spectrogram, log-mel, MFCC, augmentation, PNG export
from audiocourse.features import (  # noqa: F401
    LogMel,
    Mfcc,
    FRONTENDS,
    build_frontend,
    compute_deltas,
    frontend_spec,
    time_shift,
    mix_noise,
    speed_perturb,
    spec_augment,
    spec_augment_preview,
    tone,
    chirp,
    quantize,
    rms_dbfs,
    measured_snr_db,
    to_db,
    natural_log_to_db,
    power_spectrogram,
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
    MfccCnn1dPlus,
    MODELS,
    build_model,
    default_frontend,
)

# 03: the PNG-image (ImageFolder) route
from audiocourse.images import (  # noqa: F401
    IMAGE_MODES,
    SpectrogramImageFolder,
    load_spectrogram_png,
    image_loader,
    export_split_images,
    pixels_from_audio,
    leaky_random_split,
    leaky_split_data,
    random_split_indices,
    speaker_overlap,
    subset_split,
)

# 03-05: feature front-ends by name
from audiocourse.frontends import (  # noqa: F401
    DbSpectrogram,
    FRONTEND_KINDS,
    make_frontend,
    frontend_config,
)

# 05: BC-ResNet
from audiocourse.bcresnet import (  # noqa: F401
    PointwiseConv2d,
    SubSpectralNorm,
    BCResBlock,
    BCResNet,
    bcresnet_frontend,
    stage_channels,
)

# 03-05: the one training loop, evaluation, checkpoints
from audiocourse.train import (  # noqa: F401
    Normaliser,
    Pipeline,
    History,
    EvalResult,
    RunResult,
    RECIPES,
    default_recipe,
    fit,
    evaluate,
    train_task,
    load_checkpoint,
    load_model,
    plot_history,
    plot_confusion,
    count_parameters,
    model_summary,
    amp_dtype,
    add_commands,
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
    "audiocourse.frontends",
    "audiocourse.bcresnet",
    "audiocourse.train",
    "audiocourse.infer",
)

if __name__ == "__main__":
    from audiocourse.cli import main

    sys.exit(main())
