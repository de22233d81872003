"""Video I/O, the synthetic benchmark and datasets."""
