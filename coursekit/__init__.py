"""Exercise 2 (PyTorch) as an nbgrader course: hidden checks, hardening and the grading pipeline."""

__version__ = "0.1.0"
