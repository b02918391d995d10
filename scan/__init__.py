"""Scanning collections of images: ``dif detect`` on this machine, ``dif scan`` on a Ray cluster.

Both score with the service's ``Detector`` and decision rule and write the same row per image
(``scan.rows``); only the engine that moves the files differs. Ray is imported only by
``scan.cluster`` (the ``scan`` extra), so ``dif detect`` works without it.
"""
