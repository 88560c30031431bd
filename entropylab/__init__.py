"""entropylab: entropy and information in machine learning and physics, in JAX.

Layers (imports only point down): ``runner`` > ``rl`` > ``production`` > ``models`` >
``coupling`` > ``info``. See ``DESIGN.md`` in the project's shared folder.
"""

__version__ = "0.1.0"
