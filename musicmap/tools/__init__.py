"""The tools around the jobs: evaluate (the challenge metrics beside the baselines), tune (a
bounded search on validation) and map (the music map: a web page of the embedding)."""
