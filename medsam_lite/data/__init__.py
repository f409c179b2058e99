"""Training data: ``preprocess`` (scans → dataset folder), the dataset's safe reader, the embedding
store and ``embed`` (the frozen encoder once per slice)."""
