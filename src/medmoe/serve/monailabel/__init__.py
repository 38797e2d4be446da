"""The MONAI Label API of ``medmoe serve``: the subset 3D Slicer's MONAILabel module and OHIF use.

:mod:`.router` registers the routes (:func:`~.router.monailabel_router`): the app's ``/info/``
and ``/auth/``, the datastore and temporary images (:mod:`.datastore_routes` over
:mod:`.datastore` and :mod:`.temp_images`) and inference (:mod:`.deepgrow`, answering with
:mod:`.labelfile` files). Request bodies are ``multipart/form-data`` (:mod:`.multipart`),
streamed to disk by :mod:`.uploads`.
"""
