"""The batch recommend job and the second stage: what it loads (context), the recommenders behind
one interface (recommenders: LightGCN and the baselines), the baselines fitted by name and tuned
on validation (baselines), the graph playlists' methods (graph_playlists), the re-ranker's
candidates and features (features), the ranker that serves (ranker) and the command that fits it
(fit_ranker), `similar`, and the job itself (main). It reads what spark_jobs and train commit and
imports train for the model and fold-in only, never a tool."""
