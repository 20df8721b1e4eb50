"""One dynamic partition per dataset folder under ``data/``."""

import dagster as dg

dataset_partitions = dg.DynamicPartitionsDefinition(name="dataset")
