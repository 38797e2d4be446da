"""Names and numbers shared by the fundus data, model, training and evaluation.

The lowest module of :mod:`medmoe.multitask`: it imports nothing, so that everything else can
import from it without a circle.
"""

from __future__ import annotations

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LESIONS = (
    "MA",
    "HE",
    "EX",
    "SE",
    "OD",
)  # microaneurysms, haemorrhages, hard/soft exudates, optic disc

GRADE_TASKS = ("dr", "dme")  # diabetic retinopathy grade, diabetic macular edema risk
TASKS = (*GRADE_TASKS, "seg")  # the grades and the lesion segmentation
