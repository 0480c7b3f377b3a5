"""The batch recommend job and the second stage: what it loads (context), the recommenders behind
one interface (recommenders: LightGCN and the baselines; yardsticks: RP3beta and EASE^R tuned on
validation), the re-ranker's candidates and features (features), the ranker that serves (ranker)
and the command that fits it (fit_ranker), `similar`, and the job itself (main). It reads what
spark_jobs and train commit and imports train (the graph, the model, fold-in), never a tool."""
