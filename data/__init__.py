"""Data room: the data model, readers/writers of every format, MinHash dedup, export."""
