"""Incremental runs: delta facts, changed periods, patched cells."""
