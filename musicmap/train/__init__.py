"""The trainer: main.py (the torchrun job, the loop top to bottom), batches.py and validate.py
(its pieces), model.py (LightGCN), foldin.py (how a playlist outside the graph gets a vector),
checkpoint.py, export.py (the model stage)
and launch.py (torchrun locally). It reads the graph spark_jobs commits and never imports it."""
