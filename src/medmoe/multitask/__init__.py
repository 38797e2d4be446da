"""The multi-task MoE for fundus photographs: DR grade, DME risk and five lesion masks.

Sub-packages, from the bottom up (each imports only those before it):

- :mod:`~medmoe.multitask.constants`: ImageNet mean/std, the lesion and task names.
- :mod:`~medmoe.multitask.data`: IDRiD and synthetic photographs, splits, torch datasets,
  normalisation and augmentation.
- :mod:`~medmoe.multitask.model`: ResNet-50 backbone, experts, top-p routing, task heads, the
  model and its files on disk.
- :mod:`~medmoe.multitask.training`: losses, gradient balancing, the training loop.
- :mod:`~medmoe.multitask.evaluation`: metrics, evaluation of a split, result tables and
  prediction on one photograph.
"""
