"""Speed harnesses; each prints one JSON object per measurement, one per line."""
