"""eval_suites: one manifest runs LAPE and HEAR tasks for any HEAR-compatible model."""
import os
import warnings


def quiet_heareval_imports() -> None:
    """heareval's modules (scoring, the protocols) pull in TensorFlow and pkg_resources: keep
    their start-up chatter out of a command's results (called by the commands only)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
