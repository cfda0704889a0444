"""dait-edge: distil a frozen vision-language model into a lightweight classifier and ship it."""

__version__ = "0.1.0"
