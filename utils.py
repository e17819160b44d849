"""audio-course's shared module: everything the notebooks import, plus the command line.

Use it from a notebook (``import utils``) or from a shell (``python utils.py --help``).
The code lives in the small package ``audiocourse/``, one module per stage of the course, in the
order the notebooks need it; this file re-exports the public names so learners have one import.
"""

from __future__ import annotations

import importlib
import sys

# The stages of the course, in notebook order; each module lists its public names in __all__.
_MODULES = (
    "audiocourse.env",  # 01: device, seed, environment report
    "audiocourse.data",  # 01-05: audio I/O, index, splits, cached arrays
    "audiocourse.download",  # setup: verified, resumable dataset download
    "audiocourse.demo",  # setup: the synthetic offline demo dataset
    "audiocourse.features",  # 02: spectrogram, log-mel, MFCC, augmentation, PNG export
    "audiocourse.plots",  # 01-02: labelled plots
    "audiocourse.models",  # 03-05: CNNs and BC-ResNet
    "audiocourse.images",  # 03: the PNG (ImageFolder) route
    "audiocourse.frontends",  # 03-05: feature front-ends by name
    "audiocourse.bcresnet",  # 05: BC-ResNet
    "audiocourse.train",  # 03-05: the training loop, evaluation, checkpoints
    "audiocourse.infer",  # 06: predict, stream, export
)


def __getattr__(name: str):
    # TEMPORARY during development: resolve names from the stage modules.
    for mod in _MODULES:
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError:
            continue
        if name in getattr(m, "__all__", ()):
            return getattr(m, name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")


if __name__ == "__main__":
    from audiocourse.cli import main

    sys.exit(main())
