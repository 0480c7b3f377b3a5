"""The torch side, installed as musicmap.train: training (main.py, loop.py, model.py,
checkpoint.py, export.py), the recommenders behind one interface (recommenders.py, scoring.py,
ranker.py, features.py), and the jobs that read a trained model (context.py, recommend.py,
evaluate.py, similar.py, map.py, tune.py). It reads the graph that spark_jobs/ commits and never
imports spark_jobs."""
