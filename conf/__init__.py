"""The YAML configs. A package only so that default.yaml ships inside wheels and the Spark
py-files archive, where musicmap.config finds it with importlib.resources."""
