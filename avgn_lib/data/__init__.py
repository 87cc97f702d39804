"""Raw data: asset fetching, archive readers, datasets."""
