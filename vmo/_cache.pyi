# The CPU data cache of a non-coherent kernel (docs/cache-model.md): C-level only (cimport
# vmo._cache); no Python-level names.
