"""Evaluation of a fundus model: metrics, evaluation of a split, the report's result tables,
and prediction on one photograph."""
