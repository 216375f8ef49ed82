"""synthset: synthetic image-classification datasets from off-the-shelf diffusion models.

Stages (each reads the last one's files in a run directory and writes its own):
plan -> generate -> build -> push. See `synthset --help`.
"""

__version__ = "0.1.0"
