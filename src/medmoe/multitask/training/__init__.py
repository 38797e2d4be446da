"""Training of the fundus model: its losses, the backbone's gradient balancing between tasks,
and the training loop on :func:`medmoe.train.engine.fit`."""
