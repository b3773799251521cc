"""Scale out on existing engines: dask.distributed batch prediction (:mod:`.batch`), one huge image
split into blocks over the workers (:mod:`.blocks`).

Multi-process training under ``torchrun`` lives in :mod:`napari_poregrain.training.distributed`.
Needs the ``scale`` extra (``pip install napari-poregrain[scale]``).
"""
