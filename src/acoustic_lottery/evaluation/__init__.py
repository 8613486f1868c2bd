"""Evaluation: model + features -> prediction files (`predict`), predictions -> metrics."""
