"""slotbench: unsupervised object-centric learning on videos (SAVi, STEVE, SlotDiffusion on MOVi)."""

__version__ = "0.1.0"
