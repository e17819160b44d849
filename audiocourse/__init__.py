"""audio-course: the shared code behind the notebooks. Import it through the top-level ``utils``."""

__version__ = "0.1.0"
