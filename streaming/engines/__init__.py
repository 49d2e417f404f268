"""Recognition engines behind one small, batch-shaped interface (DESIGN §5)."""
