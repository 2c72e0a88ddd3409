"""Learn PyTorch by writing microgpt in it: thirteen exercises, each checked against the scalar engine.

    python scripts/exercise.py --list
    python scripts/exercise.py mlp                                   # checks docs/exercises/mlp.py
    python scripts/exercise.py mlp --file docs/exercises/answers/mlp.py

`tutorial.exercises` holds the list of steps and the command; `tutorial.model_steps` and
`tutorial.training_steps` the checks; `tutorial.scalar_side` what the scalar engine computes for
them; `tutorial.verdict` how a difference is put in the learner's terms.
"""
