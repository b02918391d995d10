"""Deep Image Fingerprint core: residual extraction, fingerprints, correlation scoring.

Shared by the offline ``training`` module and the ``app`` inference service.
"""

__version__ = "0.1.0"
