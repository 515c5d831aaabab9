"""This repository's experiment, apart from the library: the reference runs, the lambda
sweep, the from-scratch study and their rules (METHODS.md section 2)."""
