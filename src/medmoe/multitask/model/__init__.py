"""The fundus model: ResNet-50 backbone, experts, top-p routing, task heads, the multi-task MoE
(:mod:`~medmoe.multitask.model.moe`) and its files on disk
(:mod:`~medmoe.multitask.model.artifact`)."""
