"""Fundus data: IDRiD and synthetic photographs, their splits and torch datasets, normalisation,
lesion-mask resizing and training augmentation."""
