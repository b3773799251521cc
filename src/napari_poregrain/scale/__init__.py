"""Scale out on existing engines: dask.distributed batch prediction (:mod:`.batch`).

Multi-process training under ``torchrun`` lives in :mod:`napari_poregrain.training.distributed`.
Needs the ``scale`` extra (``pip install napari-poregrain[scale]``).
"""
