"""spark-submit entry of the graph build, where the product's command line points:

    spark-submit [--py-files dist/musicmap-dist.zip] spark_jobs/build_graph.py --root URI ...

The job is musicmap/spark_jobs/build_graph.py (its steps: musicmap/spark_jobs/graph.py); this
file only runs it, so it works from a checkout, an installed wheel or the --py-files zip alike.
"""
import sys

from musicmap.spark_jobs.build_graph import main

if __name__ == "__main__":
    sys.exit(main())
