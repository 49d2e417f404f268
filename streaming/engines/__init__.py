"""Recognition engines behind one small, batch-shaped interface (docs/design.md §5)."""
