"""nerwin: a window-classifier NER trainer whose every gradient is derived by hand."""

__version__ = "0.1.0"
