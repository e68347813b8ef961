"""ragtune.distributed: running across processes. ``torch_ddp``: data-parallel training under torchrun."""
