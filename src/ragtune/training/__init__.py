"""ragtune.training

Importing the package bounds oneDNN's kernel cache (``memory.bound_kernel_cache``, unless the user set its
variable): oneDNN reads the variable once, when the process builds its first kernel, and that happens long
before a Trainer exists (MiniLM's GELU is a oneDNN kernel, so encoding an index or the questions is enough).
Set from the Trainer alone, the bound never applied in runs that encoded first: the 60-minute SQuAD benchmark
among them.
"""
from ragtune.training import memory as _memory

_memory.bound_kernel_cache()
