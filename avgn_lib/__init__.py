"""avgn_lib: Audio-Visual Grouping Network (CVPR 2023) and the tooling around it."""

__version__ = "0.1.0"
