"""The Spark side, installed as musicmap.spark_jobs: the build_graph job (build_graph.py, the
spark-submit entry; graph.py, the job's steps; datasources.py, the MPD reader and the committed
Parquet writer). It writes the graph stage of the storage contract (musicmap.schemas)."""
