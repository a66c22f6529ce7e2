"""Classification: GLUE and RACE data, features, tasks, metrics, serving and one runner for both."""
