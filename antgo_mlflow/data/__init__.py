"""Data layer: shard readers/writers (TFRecord, LMDB), manifests, datasets, samplers and transforms."""
