"""The Spark side: the build_graph job (build_graph.py, run by spark_jobs/build_graph.py under
spark-submit; graph.py, its steps; datasources.py, the MPD reader and the committed Parquet
writer). It writes the graph stage of the storage contract (musicmap.schemas)."""
