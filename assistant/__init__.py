"""The self-tuning chat assistant: serving, controls, and the glue to feedback and training."""

__version__ = "0.1.0"
