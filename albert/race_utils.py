"""The original release's `race_utils` module name, for users' scripts.

RACE shares the classification package with GLUE: `albert.tasks.classification.race` reads the
passages and builds the four-choice features; the task, metrics and runner are shared.
"""

from albert.tasks.classification.metrics import race_scores
from albert.tasks.classification.race import (
                                              ALL_FILE,
                                              LEVELS,
                                              RaceExample,
                                              check_lengths,
                                              convert_example,
                                              examples_of_passage,
                                              level_directories,
                                              passages,
                                              read_race_examples,
)
from albert.tasks.classification.task import NUM_CHOICES, RaceTask

__all__ = ["ALL_FILE", "LEVELS", "NUM_CHOICES", "RaceExample", "RaceTask", "check_lengths", "convert_example",
           "examples_of_passage", "level_directories", "passages", "race_scores", "read_race_examples"]
