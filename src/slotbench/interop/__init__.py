"""Interoperability with other implementations: importing checkpoints of the original
SlotDiffusion code (:mod:`slotbench.interop.original`)."""
