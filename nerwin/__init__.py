"""nerwin: a window-classifier NER trainer whose every gradient is derived by hand."""

from nerwin.threads import apply_default_if_numpy_not_loaded

# The one BLAS default (one thread), for the command line and library use alike; it must
# come before numpy is loaded (see nerwin/threads.py).
apply_default_if_numpy_not_loaded()

__version__ = "0.1.0"
