"""The scalar engine and GPT of microgpt, standard library only."""

__version__ = "0.2.0"  # of the whole distribution, microgpt-bridge; compare and microgpt_torch share it
